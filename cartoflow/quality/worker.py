"""The gates' Great Expectations work in a helper process, off the round's own process.

:func:`run_suite` and :func:`build_data_docs` are :mod:`cartoflow.quality.runner`'s, run in one
long-lived helper (``python -m cartoflow.quality.worker``, a :class:`cartoflow.helpers.Helper`):

- Great Expectations' import (about 5 s on a 2-core machine) happens in the helper, which
  :func:`start` launches while the round's process imports torch and Prefect, instead of in the
  round's process right before its first gate;
- a validation holds the interpreter lock of the helper, not of the round: the work that runs
  beside the gates (embeddings, artifacts, the Data Docs render during the retraining) no
  longer takes turns with it;
- the helper runs at a lower CPU priority (``nice`` 5): a round validates every gate beside a
  stage (tasks/gates.py, ``GateRuns``) and waits for them only at its barriers, so the stages
  and figures the round does wait for take the cores first. (In one A/B of warm demo rounds,
  4 each, the time outside training and metrics fell from 4.9 s to 4.5 s, median.)

The frame travels pickled (a few milliseconds for a 20k-row frame). The results, the stored
validations and the Data Docs pages are the same as :mod:`cartoflow.quality.runner` makes in
this process, which is also where they are made when the helper cannot start or dies.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from cartoflow.helpers import Helper, serve
from cartoflow.quality import runner

__all__ = ["build_data_docs", "run_suite", "start", "stop"]

_HELPER = Helper(
    "cartoflow.quality.worker",
    {"run_suite": runner.run_suite, "build_data_docs": runner.build_data_docs},
)


def start() -> None:
    """Launch the helper now (it imports Great Expectations); returns at once."""
    _HELPER.start()


def run_suite(name: str, frame: Any = None, /, **kwargs: Any) -> dict[str, Any]:
    """:func:`cartoflow.quality.runner.run_suite`, run in the helper."""
    result: dict[str, Any] = _HELPER.call("run_suite", name, frame, **kwargs)
    return result


def build_data_docs(data_docs_dir: Path | str) -> Path:
    """:func:`cartoflow.quality.runner.build_data_docs`, run in the helper (whose stored
    validations it renders)."""
    return Path(_HELPER.call("build_data_docs", data_docs_dir))


def stop() -> None:
    """Stop the helper; a later call starts it again."""
    _HELPER.stop()


atexit.register(stop)


if __name__ == "__main__":
    serve(_HELPER.functions, warm_up=runner.preload, nice=5)
