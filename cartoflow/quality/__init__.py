"""Data-quality gates: one Great Expectations 1.x suite per stage contract of a round.

>>> result = run_suite("dataset", frame, labels=["0", "1", "2"], data_docs_dir=run_dir / "docs")
>>> raise_for_failures(result)  # DataQualityError naming each failed error-severity check

Suites are code (:mod:`cartoflow.quality.suites`); :func:`run_suite` validates one of them
(:mod:`cartoflow.quality.runner`) and returns plain dicts. Great Expectations is imported on
the first validation, not by this package, and its context is ephemeral and cached per
process. No Prefect here: the tasks in ``tasks/`` turn results into gates and artifacts.
"""

from __future__ import annotations

from cartoflow.quality.base import (
    EXAMPLE_COLUMN,
    Check,
    ExpectationSpec,
    Severity,
    Suite,
    SuiteBatch,
)
from cartoflow.quality.runner import (
    MAX_EXAMPLES,
    build_data_docs,
    failure_rows,
    preload,
    raise_for_failures,
    run_suite,
)
from cartoflow.quality.suites import (
    SUITES,
    dynamics_summary,
    format_suites_table,
    get_suite,
    list_suites,
)

__all__ = [
    "EXAMPLE_COLUMN",
    "MAX_EXAMPLES",
    "SUITES",
    "Check",
    "ExpectationSpec",
    "Severity",
    "Suite",
    "SuiteBatch",
    "build_data_docs",
    "dynamics_summary",
    "failure_rows",
    "format_suites_table",
    "get_suite",
    "list_suites",
    "preload",
    "raise_for_failures",
    "run_suite",
]
