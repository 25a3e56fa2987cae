"""Draw figures in helper processes, so the caller's next steps do not wait for them.

Drawing with matplotlib holds the interpreter lock, so a thread would only take turns with the
caller's own Python work. :func:`draw` hands the figure to a free one of two long-lived helper
processes (``python -m cartoflow.drawing``, which imports only matplotlib, pandas and
:mod:`cartoflow.datamap`) and waits for its file, so the drawing runs on another core while
other threads of the caller go on. :func:`start` boots the helpers ahead of the first figure.

The helpers are :class:`cartoflow.helpers.Helper` processes at the caller's priority: a round
draws a figure either where a core is free anyway (the baseline's data map while the model
retrains) or where it is what the round waits for (the last two, at its end). Where a helper
cannot start, or dies, the figure is drawn in the calling process, so the file (or the error,
with its type and message) is the same either way.

Figures (each reads Parquet files and writes a PNG; returns the PNG path):

- ``data_map``: :func:`cartoflow.datamap.plot_data_map` of a metrics file;
- ``before_after``: :func:`cartoflow.datamap.plot_before_after` of two metrics files.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from pathlib import Path

from cartoflow.helpers import Helper, serve

__all__ = ["FIGURES", "draw", "start", "stop"]


def _data_map(metrics_path: str, png: str, title: str) -> str:
    import pandas as pd

    from cartoflow.datamap import plot_data_map

    return str(plot_data_map(pd.read_parquet(metrics_path), png, title=title))


def _before_after(before_path: str, after_path: str, png: str) -> str:
    import pandas as pd

    from cartoflow.datamap import plot_before_after

    before, after = pd.read_parquet(before_path), pd.read_parquet(after_path)
    return str(plot_before_after(before, after, png))


FIGURES: dict[str, Callable[..., str]] = {"data_map": _data_map, "before_after": _before_after}
"""Figure name -> function of string arguments that writes the file and returns its path."""


_HELPERS = (Helper("cartoflow.drawing", FIGURES), Helper("cartoflow.drawing", FIGURES))
"""Two, so the two figures a round draws at its end are drawn at the same time."""


def _free_helper() -> Helper:
    for helper in _HELPERS:
        if not helper.busy():
            return helper
    return _HELPERS[0]


def start() -> None:
    """Boot the helper processes now (each takes about a second to import matplotlib)."""
    for helper in _HELPERS:
        helper.start()


def draw(figure: str, *args: str) -> Path:
    """Draw ``FIGURES[figure](*args)`` in the helper process and return the file's path.

    Raises:
        KeyError: an unknown figure.
        Whatever the figure function raises (re-raised from drawing it in this process).
    """
    if figure not in FIGURES:
        raise KeyError(f"Expected a figure among {', '.join(FIGURES)}, but got {figure!r}.")
    return Path(_free_helper().call(figure, *(str(a) for a in args)))


def stop() -> None:
    """Stop the helper processes (a later :func:`draw` starts them again)."""
    for helper in _HELPERS:
        helper.stop()


atexit.register(stop)


def _import_datamap() -> None:
    import cartoflow.datamap  # noqa: F401  (imported before the first request)


if __name__ == "__main__":
    serve(FIGURES, warm_up=_import_datamap)
