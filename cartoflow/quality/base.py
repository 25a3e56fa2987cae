"""Building blocks of the suites: checks, expectation specs, batches and the plan that ties them.

A suite declares its checks once (:class:`Check`); a builder makes them concrete for one input
through a :class:`Plan`, which wraps each in an :class:`ExpectationSpec` (a built-in Great
Expectations expectation plus the check's name, severity and description) and returns a
:class:`SuiteBatch`. The helpers derive the columns that let built-in expectations express
checks no built-in covers. Great Expectations itself is imported on first use only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from cartoflow.datasets import id_keys

__all__ = [
    "EXAMPLE_COLUMN",
    "RANGE_TOLERANCE",
    "SEVERITIES",
    "Check",
    "ExpectationSpec",
    "Plan",
    "Severity",
    "Suite",
    "SuiteBatch",
]

Severity = Literal["error", "warning"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning")

EXAMPLE_COLUMN = "example_id"
"""Column of the validated frame whose values name the examples of a failed expectation."""

# Float metrics are computed in float32/float64; a mathematically closed bound such as
# variability <= 0.5 may be exceeded by rounding, so range checks widen bounds by this much.
RANGE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Check:
    """One named check of a suite, as ``cartoflow checks list`` prints it."""

    name: str
    severity: Severity
    description: str


@dataclass(frozen=True)
class ExpectationSpec:
    """A check made concrete for one validation: the GX expectation that implements it.

    Attributes:
        name: stable, human-readable check name (``"id_unique"``).
        expectation: a ``great_expectations.expectations.Expectation`` instance.
        severity: ``"error"`` stops the round; ``"warning"`` is reported only.
        description: what the check asserts, in words.
    """

    name: str
    expectation: Any
    severity: Severity
    description: str


@dataclass(frozen=True)
class SuiteBatch:
    """What one suite validates: a frame (the batch) and the expectations run on it.

    Attributes:
        suite: the suite name.
        frame: the frame handed to GX; a copy of the input with derived columns, or a compact
            derived frame (dynamics, model). Holds :data:`EXAMPLE_COLUMN`.
        expectations: one spec per check that applies to this input, in declaration order.
        skipped: check name -> why it did not run (optional column absent, parameter not
            given, or a required column missing, which ``required_columns`` reports).
    """

    suite: str
    frame: pd.DataFrame
    expectations: list[ExpectationSpec]
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """A registered suite: its declared checks and the builder that makes them concrete."""

    name: str
    description: str
    checks: tuple[Check, ...]
    build: Callable[..., SuiteBatch]
    needs_frame: bool = True

    def check(self, name: str) -> Check:
        """The declared check called ``name``; ValueError listing the valid names otherwise."""
        for check in self.checks:
            if check.name == name:
                return check
        raise ValueError(
            f"Expected a check of suite `{self.name}` among "
            f"{', '.join(c.name for c in self.checks)}, but got {name!r}."
        )


def great_expectations() -> Any:
    """The ``great_expectations`` module, imported on first use (about 3 s, 300 MB)."""
    try:
        import great_expectations as gx
    except ImportError as exc:  # pragma: no cover - GX is a declared dependency
        raise ImportError(
            "cartoflow's data-quality gates need Great Expectations 1.x: "
            "pip install 'great-expectations>=1.3,<2'"
        ) from exc
    return gx


def gx_expectations() -> Any:
    """``great_expectations.expectations``, imported on first use."""
    return great_expectations().expectations


class Plan:
    """Collects the specs of one build and checks every declared check is accounted for."""

    def __init__(self, suite: str, checks: Sequence[Check], frame: pd.DataFrame | None) -> None:
        self.suite = suite
        self.checks = {c.name: c for c in checks}
        self.columns = set() if frame is None else {str(c) for c in frame.columns}
        self.specs: list[ExpectationSpec] = []
        self.skipped: dict[str, str] = {}

    def add(self, name: str, expectation: Any) -> None:
        check = self.checks[name]
        self.specs.append(ExpectationSpec(name, expectation, check.severity, check.description))

    def skip(self, reason: str, *names: str) -> None:
        for name in names:
            self.skipped[name] = reason

    def need(self, columns: str | Sequence[str], *names: str) -> bool:
        """True when every column is present; else mark ``names`` skipped and return False."""
        wanted = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in wanted if c not in self.columns]
        if missing:
            self.skip(f"column {', '.join(f'`{c}`' for c in missing)} missing", *names)
        return not missing

    def batch(self, frame: pd.DataFrame) -> SuiteBatch:
        declared = list(self.checks)
        done = {s.name for s in self.specs} | set(self.skipped)
        if set(declared) != done:  # pragma: no cover - a builder bug, caught by the tests
            raise AssertionError(f"suite {self.suite}: checks {set(declared) ^ done} unhandled")
        order = {name: i for i, name in enumerate(declared)}
        specs = sorted(self.specs, key=lambda s: order[s.name])
        return SuiteBatch(self.suite, frame, specs, dict(self.skipped))


def only_where(mask: Any, values: Any) -> np.ndarray:
    """``values`` where ``mask`` holds, None elsewhere: the rows a derived check applies to."""
    out = np.array(values, dtype=object)
    out[~np.asarray(mask, dtype=bool)] = None
    return out


def example_ids(frame: pd.DataFrame, column: str = "id") -> np.ndarray:
    """``str(id)`` per row, or ``<row i>`` (0-based position) where the id is missing."""
    if column not in frame.columns:
        return np.array([f"<row {i}>" for i in range(len(frame))], dtype=object)
    out = id_keys(frame[column]).to_numpy(copy=True)
    missing = np.flatnonzero(frame[column].isna().to_numpy())
    out[missing] = [f"<row {i}>" for i in missing]
    return out


def value_set(values: Collection[Any], column: pd.Series) -> list[Any]:
    """``values`` as the column may store them: text columns also match their string forms.

    A label set of ints ``[0, 1]`` then accepts ``"0"`` in a string column read from CSV,
    and an object column holding ints still matches the ints themselves.
    """
    accepted = set(values)
    if pd.api.types.is_string_dtype(column.dtype) or column.dtype == object:
        accepted |= {str(v) for v in values}
    return sorted(accepted, key=lambda v: (str(type(v)), str(v)))


def widen(low: float, high: float) -> tuple[float, float]:
    return low - RANGE_TOLERANCE, high + RANGE_TOLERANCE
