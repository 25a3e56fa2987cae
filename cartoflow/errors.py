"""Exceptions raised by cartoflow, and the helpers that make their messages specific.

Every error says what was expected and what came, and names the file, column and rows when
there are any, so the person reading it can fix the input without opening a debugger.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class CartoflowError(Exception):
    """Base class of every error cartoflow raises on purpose."""


class DataValidationError(CartoflowError, ValueError):
    """An input file or frame breaks its contract (missing column, duplicate id, bad label...)."""


class DynamicsError(CartoflowError, ValueError):
    """Training dynamics are inconsistent (sample seen twice, missing, non-finite logits...)."""


class TrainingError(CartoflowError, RuntimeError):
    """Training had to stop (wrong-shaped logits, NaN loss); the message names epoch and batch."""


class TrainingStopped(TrainingError):
    """The caller asked a training to stop (``stop`` of :func:`cartoflow.train.train_classifier`
    returned a reason); the message names the epoch, the batch and the reason."""


class DataQualityError(CartoflowError):
    """A data-quality gate failed; ``failures`` holds one plain dict per failed expectation."""

    def __init__(self, message: str, failures: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


def describe_items(items: Iterable[Any], *, limit: int = 5) -> str:
    """Render at most ``limit`` items and how many more there are: ``"17, 204 (and 3 more)"``."""
    items = list(items)
    shown = ", ".join(str(item) for item in items[:limit])
    rest = len(items) - limit
    return f"{shown} (and {rest} more)" if rest > 0 else shown


def describe_rows(rows: Iterable[Any], *, limit: int = 5) -> str:
    """``"row 3"`` or ``"rows 17, 204 (and 3 more)"``; rows are given as the user sees them."""
    rows = list(rows)
    noun = "row" if len(rows) == 1 else "rows"
    return f"{noun} {describe_items(rows, limit=limit)}"
