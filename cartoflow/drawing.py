"""Draw figures in helper processes, so the caller's next steps do not wait for them.

Drawing with matplotlib holds the interpreter lock, so a thread would only take turns with the
caller's own Python work. :func:`draw` hands the figure to a free one of two long-lived helper
processes (``python -m cartoflow.drawing``, which imports only matplotlib, pandas and
:mod:`cartoflow.datamap`) and waits for its file, so the drawing runs on another core while
other threads of the caller go on. :func:`start` boots the helpers ahead of the first figure.

The helper is a plain subprocess speaking one JSON line per request, not a
``multiprocessing`` pool: a spawned pool re-runs the caller's ``__main__`` module, which for a
script that starts a round at top level would start the round again. Where the helper cannot
start, or fails, the figure is drawn in the calling process, so the file (or the error, with
its message) is the same either way.

Figures (each reads Parquet files and writes a PNG; returns the PNG path):

- ``data_map``: :func:`cartoflow.datamap.plot_data_map` of a metrics file;
- ``before_after``: :func:`cartoflow.datamap.plot_before_after` of two metrics files.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

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


class _Helper:
    """One helper process, one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._failed = False

    def _running(self) -> subprocess.Popen[str] | None:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._process = None
        if self._failed:
            return None
        package_root = str(Path(__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "cartoflow.drawing"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                env=env,
            )
        except OSError:
            self._failed = True
        return self._process

    def start(self) -> None:
        with self._lock:
            self._running()

    def busy(self) -> bool:
        return self._lock.locked()

    def draw(self, figure: str, args: tuple[str, ...]) -> Path:
        with self._lock:
            process = self._running()
            if process is not None and process.stdin is not None and process.stdout is not None:
                try:
                    process.stdin.write(json.dumps({"figure": figure, "args": args}) + "\n")
                    process.stdin.flush()
                    reply = json.loads(process.stdout.readline() or "{}")
                except (OSError, ValueError):
                    reply = {}
                if "path" in reply:
                    return Path(reply["path"])
                if "error" not in reply:  # the helper died: draw here from now on
                    self._stop()
                    self._failed = True
        # No helper, or the figure failed there: draw it here, which raises its error if any.
        return Path(FIGURES[figure](*args))

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def stop(self) -> None:
        with self._lock:
            self._stop()
            self._failed = False


_HELPERS = (_Helper(), _Helper())
"""Two, so the two figures a round draws at its end are drawn at the same time."""


def _free_helper() -> _Helper:
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
    return _free_helper().draw(figure, tuple(str(a) for a in args))


def stop() -> None:
    """Stop the helper processes (a later :func:`draw` starts them again)."""
    for helper in _HELPERS:
        helper.stop()


atexit.register(stop)


def _serve() -> None:
    """The helper's loop: one JSON request per line on stdin, one JSON reply per line."""
    import cartoflow.datamap  # noqa: F401  (import before the first request)

    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"path": FIGURES[request["figure"]](*request["args"])}
        except Exception as error:  # reported, then redrawn (and raised) by the caller
            reply = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    # Every figure is written and closed; skip tearing down matplotlib and pandas (~0.4 s
    # that the round's process would otherwise wait for at its exit).
    os._exit(0)


if __name__ == "__main__":
    _serve()
