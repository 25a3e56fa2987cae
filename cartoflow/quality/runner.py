"""Run a suite through Great Expectations and turn its result into plain, picklable dicts.

One validation per suite call: a single ExpectationSuite holding every check, over one batch
(the frame the suite's builder returns), in two passes: all checks in GX's cheap BASIC result
format, then those with unexpected rows or a failure again, for their example ids. GX objects
never leave this module; results are plain dicts (GX's own cannot be pickled, so they could
not cross a Prefect task boundary).

The GX context is ephemeral and cached per process and per Data Docs folder. With a Data
Docs folder, the context stores its validation results as JSON under ``<folder>/.gx_results``
and renders the HTML site into the folder itself; because the results are on disk, a later
process (a resumed round) adds its pages to the same index instead of deleting the earlier
ones, as a purely in-memory store would make GX do.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartoflow.errors import DataQualityError, describe_items
from cartoflow.quality.base import (
    EXAMPLE_COLUMN,
    SEVERITIES,
    ExpectationSpec,
    Severity,
    SuiteBatch,
    great_expectations,
)
from cartoflow.quality.suites import get_suite

__all__ = [
    "MAX_EXAMPLES",
    "build_data_docs",
    "failure_rows",
    "preload",
    "raise_for_failures",
    "run_suite",
]

MAX_EXAMPLES = 20
"""Example ids kept per failed expectation."""

_SITE = "cartoflow"
_RESULTS_STORE = "cartoflow_validation_results"
_RESULTS_DIR = ".gx_results"
_DATASOURCE = "cartoflow"
# First pass: counts, percentages and observed values, without the example ids.
_FIRST_PASS_FORMAT: dict[str, Any] = {"result_format": "BASIC"}
# Second pass, for expectations with unexpected rows or a failure.
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    # Twice the examples kept: a duplicated id shows up once per row.
    "partial_unexpected_count": 2 * MAX_EXAMPLES,
    "unexpected_index_column_names": [EXAMPLE_COLUMN],
    "return_unexpected_index_query": False,
}


@dataclass
class _Context:
    """A cached GX context with its pandas datasource and one batch definition per suite."""

    context: Any
    datasource: Any
    docs_dir: Path | None
    batch_definitions: dict[str, Any] = field(default_factory=dict)
    # Results stored by this process and not rendered yet; None until the first full build,
    # which also renders what earlier processes stored (a resumed round).
    unrendered: list[Any] | None = None
    site_builder: Any = None

    def site(self) -> Any:
        """The Data Docs site builder, kept: its page views keep their compiled templates.

        ``context.build_data_docs`` builds a new one per call, compiling GX's Jinja templates
        again each time (most of a build's time).
        """
        if self.site_builder is None:
            from great_expectations.render.renderer.site_builder import SiteBuilder

            assert self.docs_dir is not None
            self.site_builder = SiteBuilder(
                data_context=self.context,
                site_name=_SITE,
                runtime_environment={"root_directory": self.context.root_directory},
                **_site_config(self.docs_dir),
            )
        return self.site_builder

    def batch_definition(self, suite: str) -> Any:
        if suite not in self.batch_definitions:
            asset = self.datasource.add_dataframe_asset(name=suite)
            self.batch_definitions[suite] = asset.add_batch_definition_whole_dataframe("frame")
        return self.batch_definitions[suite]


_LOCK = threading.RLock()
_CONTEXTS: dict[Path | None, _Context] = {}


def _site_config(docs_dir: Path) -> dict[str, Any]:
    return {
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        # Suites are rebuilt per call with that call's parameters; the validation pages show
        # each expectation with its kwargs, which is what a reader needs.
        "site_section_builders": {"expectations": "None", "profiling": "None"},
    }


def _new_context(docs_dir: Path | None) -> _Context:
    gx = great_expectations()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # tqdm bars per validation would flood task logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if docs_dir is not None:
        context.add_store(
            _RESULTS_STORE,
            {
                "class_name": "ValidationResultsStore",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir / _RESULTS_DIR),
                },
            },
        )
        context.validation_results_store_name = _RESULTS_STORE
        context.add_data_docs_site(_SITE, {"class_name": "SiteBuilder", **_site_config(docs_dir)})
    datasource = context.data_sources.add_pandas(_DATASOURCE)
    return _Context(context, datasource, docs_dir)


def _context(docs_dir: Path | None) -> _Context:
    key = None if docs_dir is None else docs_dir.resolve()
    if key not in _CONTEXTS:
        if key is not None:
            key.mkdir(parents=True, exist_ok=True)
        _CONTEXTS[key] = _new_context(key)
    return _CONTEXTS[key]


def _plain(value: Any) -> Any:
    """JSON-ready Python values: numpy scalars unwrapped, NaN and pd.NA as None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _unique(values: Iterable[Any], limit: int = MAX_EXAMPLES) -> list[Any]:
    out: list[Any] = []
    seen: set[str] = set()
    for value in values:
        plain = _plain(value)
        key = repr(plain)
        if key not in seen:
            seen.add(key)
            out.append(plain)
        if len(out) == limit:
            break
    return out


def _exception_message(info: Any) -> str | None:
    """The first raised exception message in GX's ``exception_info`` (flat or per metric)."""
    if not isinstance(info, Mapping):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    for nested in info.values():
        message = _exception_message(nested)
        if message:
            return message
    return None


def _item(spec: ExpectationSpec, validation: Any) -> dict[str, Any]:
    """One GX expectation result as the plain dict ``run_suite`` reports."""
    result: Mapping[str, Any] = validation.result or {}
    config = validation.expectation_config
    exception = _exception_message(validation.exception_info)
    success = bool(validation.success) and exception is None
    observed = result.get("observed_value")
    examples: list[Any] = []
    if "unexpected_count" in result:
        unexpected = int(result["unexpected_count"] or 0)
        rows = result.get("partial_unexpected_index_list") or []
        examples = _unique(r.get(EXAMPLE_COLUMN) if isinstance(r, Mapping) else r for r in rows)
    elif config.type == "expect_table_columns_to_match_set":
        missing = (result.get("details") or {}).get("mismatched", {}).get("missing") or []
        unexpected = len(missing)
        examples = _unique(missing)
    elif config.type == "expect_table_row_count_to_equal" and observed is not None:
        unexpected = abs(int(observed) - int(config.kwargs["value"]))
    else:
        unexpected = 0 if success else 1
    return {
        "expectation": spec.name,
        "severity": spec.severity,
        "success": success,
        "unexpected_count": unexpected,
        "unexpected_percent": _plain(result.get("unexpected_percent")),
        "examples": examples,
        "unexpected_values": _unique(result.get("partial_unexpected_list") or []),
        "observed_value": _plain(observed),
        "description": spec.description,
        "expectation_type": str(config.type),
        "exception": exception,
    }


def _check_params(name: str, build: Any, params: Mapping[str, Any]) -> None:
    accepted = [
        p.name
        for p in inspect.signature(build).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"Expected parameters of suite `{name}` among {', '.join(accepted)}, but got "
            f"{', '.join(unknown)}."
        )


def _with_severities(
    batch: SuiteBatch, suite_name: str, severities: Mapping[str, str] | None
) -> list[ExpectationSpec]:
    if not severities:
        return batch.expectations
    suite = get_suite(suite_name)
    for check, severity in severities.items():
        suite.check(check)  # ValueError naming the valid checks
        if severity not in SEVERITIES:
            raise ValueError(
                f"Expected severity 'error' or 'warning' for `{check}`, but got {severity!r}."
            )
    chosen: dict[str, Severity] = {
        k: "error" if v == "error" else "warning" for k, v in severities.items()
    }
    return [
        ExpectationSpec(s.name, s.expectation, chosen.get(s.name, s.severity), s.description)
        for s in batch.expectations
    ]


def _docs_text(spec: ExpectationSpec) -> str:
    """What Data Docs shows for a check: its cartoflow name and severity, then the GX call.

    GX renders ``description`` instead of its own sentence, so the call's kwargs are kept.
    """
    config = spec.expectation.configuration
    kwargs = ", ".join(f"{k}={v!r}" for k, v in config.kwargs.items())
    if len(kwargs) > 300:
        kwargs = kwargs[:297] + "..."
    return f"{spec.name} ({spec.severity}): {spec.description}. [{config.type}({kwargs})]"


def _check_name(validation: Any) -> Any:
    return (validation.expectation_config.meta or {}).get("cartoflow_check")


def _needs_detail(validation: Any) -> bool:
    """Whether a BASIC result may differ from the detailed one in what ``_item`` reports.

    A passing expectation with no unexpected row has no example to list; anything else
    (unexpected rows, a failure, an exception) is validated again in the detailed format.
    """
    result = validation.result or {}
    return (
        not validation.success
        or bool(result.get("unexpected_count"))
        or _exception_message(validation.exception_info) is not None
    )


_MEMO = threading.local()


def _memoizing(original: Any) -> property:
    """GX's ``Expectation.configuration`` property, memoized per object inside
    :func:`_configurations_memoized` (and unchanged outside it, and in other threads)."""

    def configuration(self: Any) -> Any:
        entries: dict[int, tuple[Any, Any]] | None = getattr(_MEMO, "entries", None)
        if entries is None:
            return original(self)
        hit = entries.get(id(self))
        if hit is None:  # the object is kept with its configuration: its id stays its own
            hit = entries[id(self)] = (self, original(self))
        return hit[1]

    configuration.cartoflow_memoizing = True  # type: ignore[attr-defined]
    return property(configuration)


@contextmanager
def _configurations_memoized() -> Iterator[None]:
    """Build each expectation's configuration once per validation, not once per lookup.

    GX 1.x rebuilds ``Expectation.configuration`` (a pydantic ``dict()``, a regex and a new
    ``ExpectationConfiguration``) on every access, and its validator reads it once per kwarg
    of every expectation and metric: about 700 rebuilds per suite, a third of a validation's
    time. Nothing mutates an expectation during a validation (both of its passes), so within
    one the configuration is the same object each time; the memo is dropped when it ends.
    """
    from great_expectations.expectations.expectation import Expectation

    current = Expectation.__dict__["configuration"]
    if not getattr(current.fget, "cartoflow_memoizing", False):
        setattr(Expectation, "configuration", _memoizing(current.fget))  # noqa: B010
    _MEMO.entries = {}
    try:
        yield
    finally:
        _MEMO.entries = None


def _run_validator(validator: Any, suite_name: str, expectations: list[Any]) -> Any:
    """Validate in two passes over the validator's batch, loaded once.

    First every expectation in GX's BASIC format, then only those :func:`_needs_detail` picks
    in the detailed one, whose example ids and value counts cost about as much again as the
    rest of the validation. The merged result is the one a single detailed pass returns, but
    for the empty lists of example ids and value counts of passing expectations.
    """
    gx = great_expectations()
    validator.result_format = _FIRST_PASS_FORMAT
    validation = validator.validate_expectation_suite(
        gx.ExpectationSuite(name=suite_name, expectations=expectations)
    )
    detail = {_check_name(r) for r in validation.results if _needs_detail(r)}
    if not detail:
        return validation
    validator.result_format = _RESULT_FORMAT
    again = [e for e in expectations if e.meta["cartoflow_check"] in detail]
    detailed = {
        _check_name(r): r
        for r in validator.validate_expectation_suite(
            gx.ExpectationSuite(name=suite_name, expectations=again)
        ).results
    }
    validation.results = [detailed.get(_check_name(r), r) for r in validation.results]
    evaluated = len(validation.results)
    successful = sum(bool(r.success) for r in validation.results)
    validation.success = successful == evaluated
    validation.statistics.update(
        successful_expectations=successful,
        unsuccessful_expectations=evaluated - successful,
        success_percent=successful / evaluated * 100,
    )
    return validation


def _widened(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its narrow numeric columns (float32, int8/16/32, uint8/16/32) widened to
    float64 / int64, the same values; other columns untouched.

    GX 1.x checks ``column_values.between`` (every range check of the suites) vectorised only
    when the column's dtype equals ``int`` or ``float``; a float32 score or an int16 prediction
    went through a Python function per row instead (60k calls for one metrics gate).
    """
    widen = {
        column: "float64" if dtype.kind == "f" else "int64"
        for column, dtype in frame.dtypes.items()
        if isinstance(dtype, np.dtype) and dtype.kind in "fiu" and dtype.itemsize < 8
    }
    return frame.astype(widen) if widen else frame


def _validate(
    gx_context: _Context,
    suite_name: str,
    frame: pd.DataFrame,
    specs: list[ExpectationSpec],
    *,
    render: bool,
) -> tuple[Any, str | None]:
    """Run one validation; with a docs folder also store the result (and render its page)."""
    from great_expectations.validator.v1_validator import Validator

    expectations = []
    for spec in specs:
        expectation = spec.expectation
        expectation.meta = {"cartoflow_check": spec.name, "severity": spec.severity}
        expectation.description = _docs_text(spec)
        expectations.append(expectation)
    # Batch.validate would load (and fingerprint) the frame again for each of the two passes.
    validator = Validator(
        batch_definition=gx_context.batch_definition(suite_name),
        batch_parameters={"dataframe": _widened(frame)},
    )
    with _configurations_memoized():
        validation = _run_validator(validator, suite_name, expectations)
    if gx_context.docs_dir is None:
        return validation, None

    from great_expectations.constants import DATAFRAME_REPLACEMENT_STR
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    # What ValidationDefinition.run records, without storing a suite and a definition per
    # call only to look them up again.
    run_id = RunIdentifier(run_name=suite_name, run_time=dt.datetime.now(dt.UTC))
    validation.meta.update(
        validation_id=None,
        checkpoint_id=None,
        run_id=run_id,
        validation_time=run_id.run_time,
        batch_parameters={"dataframe": DATAFRAME_REPLACEMENT_STR},
    )
    key = ValidationResultIdentifier(
        batch_identifier=validator.active_batch_id,
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
        run_id=run_id,
    )
    context = gx_context.context
    context.validation_results_store.set(key, validation)
    if render:
        gx_context.site().build(resource_identifiers=[key])
    elif gx_context.unrendered is not None:
        gx_context.unrendered.append(key)
    urls = context.get_docs_sites_urls(
        resource_identifier=key, site_name=_SITE, only_if_exists=False
    )
    return validation, urls[0]["site_url"] if urls else None


def preload() -> None:
    """Import Great Expectations and build the cached context now, once per process.

    The import takes seconds; a flow can call this from a background thread while it trains,
    so the first gate does not pay for it.
    """
    with _LOCK:
        _context(None)


def build_data_docs(data_docs_dir: Path | str) -> Path:
    """Render the Data Docs pages of the validations stored under ``data_docs_dir``.

    For gates run with ``render_docs=False``. The first build in a process renders every
    stored result (also those of earlier processes: a resumed round), compiling GX's page
    templates once instead of once per gate; later builds render only the results stored
    since, plus the index. A round can so render the gates it has run while it retrains, and
    only the last ones at its end.

    Returns:
        The path of the site's ``index.html``.
    """
    docs_dir = Path(data_docs_dir)
    index = docs_dir.resolve() / "index.html"
    with _LOCK:
        gx_context = _context(docs_dir)
        pending, gx_context.unrendered = gx_context.unrendered, []
        if pending is None or pending or not index.exists():
            # None (and an empty list) renders every stored result.
            gx_context.site().build(resource_identifiers=pending or None)
    return index


def run_suite(
    name: str,
    frame: Any = None,
    /,
    *,
    data_docs_dir: Path | str | None = None,
    render_docs: bool = True,
    severities: Mapping[str, str] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Validate ``frame`` against the suite ``name`` and report every check as plain data.

    Args:
        name: a key of :data:`cartoflow.quality.SUITES`.
        frame: the stage output (a DataFrame; the dynamics suite also takes an Arrow table;
            the model suite takes None). Never modified.
        data_docs_dir: when given, the validation is stored and rendered as Great
            Expectations Data Docs (HTML, ``index.html``) under this folder.
        render_docs: False stores the result under ``data_docs_dir`` without rendering
            HTML; :func:`build_data_docs` renders every stored result later, in one go
            (rendering costs more than validating a 20k-row frame).
        severities: check name -> ``"error"`` or ``"warning"``, overriding the declared one.
        **params: the suite builder's keyword parameters (label set, num_epochs, budgets...).

    Returns:
        ``{"suite", "success", "statistics", "results", "skipped", "data_docs",
        "data_docs_page"}``. ``success`` is False when any error-severity check failed;
        failed warnings do not change it. Each of ``results`` is ``{"expectation",
        "severity", "success", "unexpected_count", "unexpected_percent", "examples" (up to
        20 example ids), "unexpected_values", "observed_value", "description",
        "expectation_type", "exception"}``. ``skipped`` lists checks that did not apply
        with the reason. ``data_docs`` is the index page path, ``data_docs_page`` the URL of
        this validation's page (both None without ``data_docs_dir``).

    Raises:
        ValueError: unknown suite, parameter, check or severity.
    """
    started = time.perf_counter()
    suite = get_suite(name)
    _check_params(name, suite.build, params)
    if suite.needs_frame and frame is None:
        raise ValueError(f"Expected a frame to validate with suite `{name}`, but got None.")
    batch = suite.build(frame, **params)
    specs = _with_severities(batch, name, severities)
    docs_dir = None if data_docs_dir is None else Path(data_docs_dir)
    with _LOCK:
        validation, page = _validate(
            _context(docs_dir), name, batch.frame, specs, render=render_docs
        )
    by_name = {
        (r.expectation_config.meta or {}).get("cartoflow_check"): r for r in validation.results
    }
    results = [_item(spec, by_name[spec.name]) for spec in specs]
    failed = [r for r in results if not r["success"]]
    errors = sum(r["severity"] == "error" for r in failed)
    skipped = [
        {
            "expectation": check.name,
            "severity": check.severity,
            "description": check.description,
            "reason": batch.skipped[check.name],
        }
        for check in suite.checks
        if check.name in batch.skipped
    ]
    return {
        "suite": name,
        "success": errors == 0,
        "statistics": {
            "evaluated": len(results),
            "successful": len(results) - len(failed),
            "failed_errors": errors,
            "failed_warnings": len(failed) - errors,
            "skipped": len(skipped),
            "rows": len(batch.frame),
            "seconds": round(time.perf_counter() - started, 3),
        },
        "results": results,
        "skipped": skipped,
        "data_docs": None if docs_dir is None else str(docs_dir.resolve() / "index.html"),
        "data_docs_page": page,
    }


def _describe(item: Mapping[str, Any]) -> str:
    text = f"{item['expectation']} ({item['description']}): "
    if item.get("exception"):
        return text + f"could not be evaluated: {item['exception']}"
    text += f"{item['unexpected_count']} unexpected"
    # Flags of derived checks (True/False/None) say nothing the check name does not, and the
    # values of a uniqueness failure are the example ids themselves.
    values = [
        repr(v) if isinstance(v, str) else str(v)
        for v in item.get("unexpected_values") or []
        if v is not None and not isinstance(v, bool)
    ]
    if values and item.get("expectation_type") != "expect_column_values_to_be_unique":
        text += f"; unexpected values: {describe_items(values, limit=5)}"
    if item.get("examples"):
        text += f"; example ids: {describe_items(item['examples'], limit=MAX_EXAMPLES)}"
    elif item.get("observed_value") is not None:
        text += f"; observed: {item['observed_value']}"
    return text


def failure_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Failed checks (errors and warnings) as flat rows, e.g. for a Prefect table artifact."""
    return [
        {
            "suite": result["suite"],
            "expectation": item["expectation"],
            "severity": item["severity"],
            "unexpected_count": item["unexpected_count"],
            "examples": ", ".join(str(e) for e in item["examples"]),
            "description": item["description"],
        }
        for item in result["results"]
        if not item["success"]
    ]


def raise_for_failures(result: Mapping[str, Any]) -> None:
    """Raise :class:`DataQualityError` when an error-severity check of ``result`` failed.

    The message names each failed error check with its unexpected count and up to 20 example
    ids; failed warnings are listed after them but never raise on their own.
    ``DataQualityError.failures`` holds the failed error-severity result dicts.
    """
    failed = [r for r in result["results"] if not r["success"]]
    errors = [r for r in failed if r["severity"] == "error"]
    if not errors:
        return
    noun = "check" if len(errors) == 1 else "checks"
    lines = [f"Data-quality gate `{result['suite']}` failed {len(errors)} error {noun}:"]
    lines += [f"  - {_describe(r)}" for r in errors]
    warnings = [r for r in failed if r["severity"] == "warning"]
    if warnings:
        lines.append("Warnings (reported, not blocking):")
        lines += [f"  - {_describe(r)}" for r in warnings]
    if result.get("data_docs"):
        lines.append(f"Data Docs: {result['data_docs']}")
    raise DataQualityError("\n".join(lines), errors)
