"""The data-quality suites, as code: one per stage contract of ``DESIGN.md``.

Every suite is a list of named checks declared once (name, severity, description) and a
builder. A builder takes the stage's frame plus the context it is judged in (label set,
number of epochs, budgets, training ids...) and returns a :class:`SuiteBatch`: the frame that
Great Expectations validates and one :class:`ExpectationSpec` per check, each wrapping a
built-in GX expectation. Checks no built-in can express (probabilities summing to one, row
arithmetic of a new version, ...) first derive a helper column on a *copy* of the frame, then
apply a built-in expectation to it, so every check runs through GX and reports the same way:
unexpected count, example ids, Data Docs.

Builders never modify their inputs. Great Expectations is imported lazily, inside the
builders, so importing this module (and ``cartoflow checks list``) costs nothing.

Example ids are the values of the frame's ``id`` column, copied into ``example_id``
(``<row i>`` where the id itself is missing). The dynamics suite is the exception: it runs on a
compact per-epoch frame, so its examples are epochs, named like their directories
(``epoch=3``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cartoflow.datasets import id_keys, objects, pick
from cartoflow.errors import DataValidationError, describe_items
from cartoflow.quality.base import (
    EXAMPLE_COLUMN,
    Check,
    Plan,
    Suite,
    SuiteBatch,
    example_ids,
    gx_expectations,
    only_where,
    value_set,
    widen,
)

__all__ = [
    "ACTIONS",
    "POOL_NAMES",
    "REMOVE",
    "SKIP",
    "SUITES",
    "build_annotations_suite",
    "build_dataset_suite",
    "build_dynamics_suite",
    "build_metrics_suite",
    "build_model_suite",
    "build_new_version_suite",
    "build_pools_suite",
    "dynamics_summary",
    "format_suites_table",
    "get_suite",
    "list_suites",
]

POOL_NAMES = ("relabel", "hard", "very_hard")
ACTIONS = ("fix", "remove", "add", "keep", "skip")
"""Label decisions of a new dataset version (``cartoflow.versions``)."""

# The annotation markers are owned by cartoflow.annotate; these copies are the contract's
# values, used only when that module cannot be imported (see _annotation_markers).
REMOVE = "<remove>"
SKIP = "<skip>"

# --------------------------------------------------------------------------- dataset
DATASET_COLUMNS = ("id", "text", "label")
DATASET_CHECKS = (
    Check("required_columns", "error", "columns id, text and label are present"),
    Check("has_rows", "error", "the dataset has at least one row"),
    Check("id_not_null", "error", "every row has an id"),
    Check("id_unique", "error", "ids are unique"),
    Check("text_not_null", "error", "every row has a text"),
    Check("text_is_string", "error", "text values are strings"),
    Check("text_not_blank", "error", "texts are not empty or whitespace only"),
    Check("text_length", "error", "text length within [min_text_length, max_text_length]"),
    Check("label_not_null", "error", "every row has a label"),
    Check("label_in_set", "error", "labels belong to the label set"),
    Check("class_share_min", "error", "no class holds less than min_class_share of the rows"),
    Check("group_not_null", "error", "every row has a group (when the column is present)"),
)


def build_dataset_suite(
    frame: pd.DataFrame,
    *,
    labels: Collection[Any] | None = None,
    min_class_share: float = 0.01,
    min_text_length: int = 1,
    max_text_length: int = 100_000,
) -> SuiteBatch:
    """Dataset contract: ``id`` (unique), ``text`` (non-empty), ``label`` [, ``group``].

    Args:
        frame: a normalised dataset frame (``cartoflow.datasets.Dataset.frame``), N rows.
        labels: the label set (class names); ``label_in_set`` is skipped when None.
        min_class_share: smallest share of rows a present class may hold; 0 skips the check.
            A class of the label set with no row at all is not seen by this check.
        min_text_length: shortest accepted text, in characters.
        max_text_length: longest accepted text; a huge text usually means a broken quote
            swallowed the rows after it.
    """
    gxe = gx_expectations()
    plan = Plan("dataset", DATASET_CHECKS, frame)
    derived: dict[str, Any] = {EXAMPLE_COLUMN: example_ids(frame)}
    plan.add(
        "required_columns",
        gxe.ExpectTableColumnsToMatchSet(column_set=list(DATASET_COLUMNS), exact_match=False),
    )
    plan.add("has_rows", gxe.ExpectTableRowCountToBeBetween(min_value=1))
    if plan.need("id", "id_not_null", "id_unique"):
        plan.add("id_not_null", gxe.ExpectColumnValuesToNotBeNull(column="id"))
        plan.add("id_unique", gxe.ExpectColumnValuesToBeUnique(column="id"))
    text_checks = ("text_not_null", "text_is_string", "text_not_blank", "text_length")
    if plan.need("text", *text_checks):
        plan.add("text_not_null", gxe.ExpectColumnValuesToNotBeNull(column="text"))
        # ExpectColumnValuesToBeInTypeList never passes on pandas-3 string columns.
        plan.add("text_is_string", gxe.ExpectColumnValuesToBeOfType(column="text", type_="str"))
        plan.add(
            "text_not_blank", gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex=r"^\s*$")
        )
        plan.add(
            "text_length",
            gxe.ExpectColumnValueLengthsToBeBetween(
                column="text", min_value=min_text_length, max_value=max_text_length
            ),
        )
    if plan.need("label", "label_not_null", "label_in_set", "class_share_min"):
        plan.add("label_not_null", gxe.ExpectColumnValuesToNotBeNull(column="label"))
        if labels is None:
            plan.skip("no label set given", "label_in_set")
        else:
            values = value_set(labels, frame["label"])
            plan.add(
                "label_in_set", gxe.ExpectColumnValuesToBeInSet(column="label", value_set=values)
            )
        if min_class_share <= 0:
            plan.skip("min_class_share is 0", "class_share_min")
        else:
            shares = frame["label"].value_counts(normalize=True, dropna=True)
            derived["class_share"] = frame["label"].map(shares).astype("float64").to_numpy()
            plan.add(
                "class_share_min",
                gxe.ExpectColumnValuesToBeBetween(column="class_share", min_value=min_class_share),
            )
    if "group" in plan.columns:
        plan.add("group_not_null", gxe.ExpectColumnValuesToNotBeNull(column="group"))
    else:
        plan.skip("no group column", "group_not_null")
    return plan.batch(frame.assign(**derived))


# --------------------------------------------------------------------------- dynamics
DYNAMICS_COLUMNS = ("sample", "epoch", "gold_prob", "correct", "margin", "pred")
DYNAMICS_CHECKS = (
    Check("required_columns", "error", "columns sample, epoch, gold_prob, correct, margin, pred"),
    Check("has_epochs", "error", "at least one epoch was recorded"),
    Check("epochs_contiguous", "error", "epochs are 0, 1, ..., E-1 with no gap"),
    Check("epoch_count", "error", "exactly num_epochs epochs were recorded"),
    Check("no_missing_samples", "error", "per epoch: every training sample has a row"),
    Check("no_duplicate_rows", "error", "per epoch: no training sample has two rows"),
    Check("sample_in_range", "error", "sample indices within [0, num_samples)"),
    Check("gold_prob_in_unit_interval", "error", "gold_prob within [0, 1] (NaN fails)"),
    Check("probs_in_unit_interval", "error", "every probs entry within [0, 1] (NaN fails)"),
    Check("probs_sum_to_one", "error", "each probs row sums to 1 within prob_tolerance"),
    Check("margin_finite", "error", "margin is finite (no NaN or inf)"),
)


_MAX_SEEN_CELLS = 1 << 28  # 256 MB of (epoch, sample) flags


def _numbers(frame: pd.DataFrame | pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64, nulls as NaN (exact for sample indices below 2**53)."""
    if isinstance(frame, pa.Table):
        return np.asarray(frame.column(name).to_numpy(), dtype=np.float64)
    return frame[name].to_numpy(dtype=np.float64, na_value=np.nan)


def _as_arrow(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    if isinstance(values, pa.Array):
        return values
    return pa.array(values)  # pandas: object column of arrays/lists, or ArrowDtype


def _probs_row_stats(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a list column of probabilities: (entries outside [0, 1] or NaN, row sum).

    Null rows count as one bad entry and sum to NaN, so they fail both checks.
    """
    arr = _as_arrow(values)
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    if not (
        pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
    ):
        # Not a list column at all (all null, or scalars): every row breaks the contract.
        return np.ones(n, dtype=np.int64), np.full(n, np.nan)
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
        flat = arr.values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        start = arr.offset * width
        matrix = flat[start : start + n * width].reshape(n, width)
        bad = (~((matrix >= 0) & (matrix <= 1))).sum(axis=1)
        sums = matrix.sum(axis=1)
    else:
        offsets = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        flat = arr.values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        flat = flat[: offsets[-1]]
        row_of = np.repeat(np.arange(n), np.diff(offsets))
        entries = flat[offsets[0] :]
        bad = np.bincount(row_of, weights=~((entries >= 0) & (entries <= 1)), minlength=n)
        sums = np.bincount(row_of, weights=np.nan_to_num(entries, nan=0.0), minlength=n)
        sums[np.bincount(row_of, weights=np.isnan(entries), minlength=n) > 0] = np.nan
    bad = np.where(nulls, 1, bad)
    sums = np.where(nulls, np.nan, sums)
    return np.asarray(bad, dtype=np.int64), np.asarray(sums, dtype=np.float64)


def dynamics_summary(
    frame: pd.DataFrame | pa.Table,
    *,
    num_samples: int,
    prob_tolerance: float = 1e-3,
) -> pd.DataFrame:
    """Compact per-epoch frame the dynamics suite validates instead of the N x E rows.

    Pushing 10M dynamics rows through GX would cost far more than the training it checks, so
    the counts are computed here with vectorised numpy (O(N x E) time, one byte per sample and
    epoch for the duplicate check) and GX validates one row per epoch.

    Args:
        frame: long dynamics rows (one per sample and epoch), as a DataFrame or an Arrow table
            (read the ``dynamics/`` directory with pyarrow to skip the pandas conversion).
        num_samples: N, the number of training samples of the dataset version.
        prob_tolerance: how far a probs row sum may be from 1.

    Returns:
        One row per recorded epoch, sorted: ``example_id`` (``epoch=E``), ``epoch``,
        ``position`` (0, 1, ... in sorted order), ``rows``, ``missing_samples``,
        ``duplicate_rows``, ``samples_out_of_range``, ``gold_prob_out_of_range``,
        ``margin_nonfinite``, ``probs_out_of_range`` and ``probs_sum_off`` (rows whose sum is
        off by more than the tolerance; both only with ``probs``), ``missing_columns``.
        Columns whose source column is absent are left out. When ``sample`` or ``epoch``
        is absent there is one row, ``example_id`` = ``all epochs``.
    """
    names = {str(c) for c in (frame.column_names if isinstance(frame, pa.Table) else frame)}
    missing = ", ".join(c for c in DYNAMICS_COLUMNS if c not in names)
    if "sample" not in names or "epoch" not in names:
        return pd.DataFrame({EXAMPLE_COLUMN: ["all epochs"], "missing_columns": [missing]})

    epoch_values = _numbers(frame, "epoch")
    # A missing epoch becomes epoch -1, which epochs_contiguous then reports.
    epoch_values = np.where(np.isnan(epoch_values), -1, epoch_values).astype(np.int64)
    epochs, inverse = np.unique(epoch_values, return_inverse=True)
    k = len(epochs)

    def per_epoch(flags: np.ndarray) -> np.ndarray:
        return np.bincount(inverse, weights=flags, minlength=k).astype(np.int64)

    sample = _numbers(frame, "sample")
    in_range = (sample >= 0) & (sample < num_samples)
    rows = np.bincount(inverse, minlength=k).astype(np.int64)
    out_of_range = per_epoch(~in_range)
    cell_epoch, cell_sample = inverse[in_range], sample[in_range].astype(np.int64)
    if k * num_samples <= _MAX_SEEN_CELLS:
        # One flag per (epoch, sample) cell: k x N bytes (20 MB at 1M samples x 20 epochs),
        # O(rows) time, where sorting the row keys would cost O(rows log rows).
        seen = np.zeros((k, num_samples), dtype=bool)
        seen[cell_epoch, cell_sample] = True
        distinct = seen.sum(axis=1, dtype=np.int64)
    else:  # garbage epoch values: do not allocate a flag per cell
        keys = np.unique(cell_epoch.astype(np.int64) * num_samples + cell_sample)
        distinct = np.bincount(keys // num_samples, minlength=k).astype(np.int64)
    summary: dict[str, Any] = {
        EXAMPLE_COLUMN: [f"epoch={e}" for e in epochs],
        "epoch": epochs,
        "position": np.arange(k, dtype=np.int64),
        "rows": rows,
        "missing_samples": num_samples - distinct,
        "duplicate_rows": rows - out_of_range - distinct,
        "samples_out_of_range": out_of_range,
    }
    if "gold_prob" in names:
        gold = _numbers(frame, "gold_prob")
        summary["gold_prob_out_of_range"] = per_epoch(~((gold >= 0) & (gold <= 1)))
    if "margin" in names:
        margin = _numbers(frame, "margin")
        summary["margin_nonfinite"] = per_epoch(~np.isfinite(margin))
    if "probs" in names:
        probs = frame.column("probs") if isinstance(frame, pa.Table) else frame["probs"]
        bad, sums = _probs_row_stats(probs)
        summary["probs_out_of_range"] = per_epoch(bad > 0)
        summary["probs_sum_off"] = per_epoch(~(np.abs(sums - 1.0) <= prob_tolerance))
    summary["missing_columns"] = [missing] * k
    return pd.DataFrame(summary)


def build_dynamics_suite(
    frame: pd.DataFrame | pa.Table,
    *,
    num_samples: int,
    num_epochs: int | None = None,
    prob_tolerance: float = 1e-3,
) -> SuiteBatch:
    """Dynamics contract: one row per training sample per epoch, valid probabilities.

    Runs on :func:`dynamics_summary` (one row per epoch), so unexpected counts are epochs and
    example ids are ``epoch=E``.

    Args:
        frame: long dynamics rows ``sample``, ``epoch``, ``gold_prob``, ``correct``,
            ``margin``, ``pred`` [, ``probs``], as a DataFrame or an Arrow table.
        num_samples: N, the number of training samples of the dataset version.
        num_epochs: E, the number of epochs trained; ``epoch_count`` is skipped when None.
        prob_tolerance: how far a probs row sum may be from 1.
    """
    gxe = gx_expectations()
    summary = dynamics_summary(frame, num_samples=num_samples, prob_tolerance=prob_tolerance)
    plan = Plan("dynamics", DYNAMICS_CHECKS, summary)
    plan.add(
        "required_columns",
        gxe.ExpectColumnValuesToBeInSet(column="missing_columns", value_set=[""]),
    )
    per_epoch = {  # check -> (count column of the summary, source column)
        "no_missing_samples": ("missing_samples", "sample"),
        "no_duplicate_rows": ("duplicate_rows", "sample"),
        "sample_in_range": ("samples_out_of_range", "sample"),
        "gold_prob_in_unit_interval": ("gold_prob_out_of_range", "gold_prob"),
        "probs_in_unit_interval": ("probs_out_of_range", "probs"),
        "probs_sum_to_one": ("probs_sum_off", "probs"),
        "margin_finite": ("margin_nonfinite", "margin"),
    }
    if plan.need("epoch", "has_epochs", "epochs_contiguous", "epoch_count", *per_epoch):
        plan.add("has_epochs", gxe.ExpectTableRowCountToBeBetween(min_value=1))
        plan.add(
            "epochs_contiguous",
            gxe.ExpectColumnPairValuesToBeEqual(column_A="epoch", column_B="position"),
        )
        if num_epochs is None:
            plan.skip("num_epochs not given", "epoch_count")
        else:
            plan.add("epoch_count", gxe.ExpectTableRowCountToEqual(value=num_epochs))
        for name, (column, source) in per_epoch.items():
            if column in plan.columns:
                plan.add(name, gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[0]))
            elif source == "probs":
                plan.skip("no probs column (recorded with record_probs=False)", name)
            else:
                plan.skip(f"column `{source}` missing", name)
    return plan.batch(summary)


# --------------------------------------------------------------------------- metrics
METRICS_COLUMNS = (
    "sample",
    "id",
    "confidence",
    "variability",
    "correctness",
    "forgetfulness",
    "never_learnt",
    "threshold_closeness",
)
# Contract columns that must hold no NaN when present.
METRICS_VALUE_COLUMNS = (
    *METRICS_COLUMNS,
    "label",
    "corr_frac",
    "aum",
    "el2n",
    "aleatoric",
    "region",
    "suggested_label",
    "suggested_prob",
)
METRICS_CHECKS = (
    Check("required_columns", "error", "columns " + ", ".join(METRICS_COLUMNS)),
    Check("row_count", "error", "one row per training sample (num_samples rows)"),
    Check("sample_unique", "error", "sample indices are unique"),
    Check("id_unique", "error", "ids are unique"),
    Check("label_in_set", "error", "labels belong to the label set"),
    Check("confidence_range", "error", "confidence within [0, 1]"),
    Check("variability_range", "error", "variability within [0, 0.5]"),
    Check("correctness_range", "error", "correctness within [0, E]"),
    Check("corr_frac_range", "error", "corr_frac within [0, 1]"),
    Check("threshold_closeness_range", "error", "threshold_closeness within [0, 0.25]"),
    Check("forgetfulness_range", "error", "forgetfulness within [0, floor(E / 2)]"),
    Check("never_learnt_iff_zero_correctness", "error", "never_learnt iff correctness == 0"),
    Check("no_nan", "error", "no NaN or missing value in the contract columns"),
)


def build_metrics_suite(
    frame: pd.DataFrame,
    *,
    num_epochs: int,
    num_samples: int | None = None,
    labels: Collection[Any] | None = None,
) -> SuiteBatch:
    """Metrics contract: one row per sample, every score within its mathematical range.

    Args:
        frame: ``cartoflow.metrics.compute_metrics`` output, N rows.
        num_epochs: E, the number of epochs the metrics were computed over.
        num_samples: N; ``row_count`` is skipped when None.
        labels: the label set (indices or names, as the ``label`` column holds them);
            ``label_in_set`` is skipped when None.
    """
    if num_epochs < 1:
        raise ValueError(f"Expected num_epochs >= 1, but got {num_epochs}.")
    gxe = gx_expectations()
    plan = Plan("metrics", METRICS_CHECKS, frame)
    derived: dict[str, Any] = {EXAMPLE_COLUMN: example_ids(frame)}
    plan.add(
        "required_columns",
        gxe.ExpectTableColumnsToMatchSet(column_set=list(METRICS_COLUMNS), exact_match=False),
    )
    if num_samples is None:
        plan.skip("num_samples not given", "row_count")
    else:
        plan.add("row_count", gxe.ExpectTableRowCountToEqual(value=num_samples))
    if plan.need("sample", "sample_unique"):
        plan.add("sample_unique", gxe.ExpectColumnValuesToBeUnique(column="sample"))
    if plan.need("id", "id_unique"):
        plan.add("id_unique", gxe.ExpectColumnValuesToBeUnique(column="id"))
    if labels is None:
        plan.skip("no label set given", "label_in_set")
    elif plan.need("label", "label_in_set"):
        values = value_set(labels, frame["label"])
        plan.add("label_in_set", gxe.ExpectColumnValuesToBeInSet(column="label", value_set=values))
    ranges = {
        "confidence_range": ("confidence", 0.0, 1.0),
        "variability_range": ("variability", 0.0, 0.5),
        "correctness_range": ("correctness", 0.0, float(num_epochs)),
        "corr_frac_range": ("corr_frac", 0.0, 1.0),
        "threshold_closeness_range": ("threshold_closeness", 0.0, 0.25),
        "forgetfulness_range": ("forgetfulness", 0.0, float(num_epochs // 2)),
    }
    for name, (column, low, high) in ranges.items():
        if plan.need(column, name):
            low, high = widen(low, high)
            plan.add(
                name,
                gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high),
            )
    if plan.need(("never_learnt", "correctness"), "never_learnt_iff_zero_correctness"):
        correctness = pd.to_numeric(frame["correctness"], errors="coerce")
        is_zero = (correctness == 0).to_numpy(dtype=bool)
        derived["correctness_is_zero"] = only_where(correctness.notna().to_numpy(), is_zero)
        plan.add(
            "never_learnt_iff_zero_correctness",
            # NaN rows are no_nan's finding, not this check's.
            gxe.ExpectColumnPairValuesToBeEqual(
                column_A="never_learnt",
                column_B="correctness_is_zero",
                ignore_row_if="either_value_is_missing",
            ),
        )
    present = [c for c in METRICS_VALUE_COLUMNS if c in plan.columns]
    derived["has_nan"] = frame[present].isna().any(axis=1).to_numpy()
    plan.add("no_nan", gxe.ExpectColumnValuesToBeInSet(column="has_nan", value_set=[False]))
    return plan.batch(frame.assign(**derived))


# --------------------------------------------------------------------------- pools
POOLS_COLUMNS = ("sample", "id", "label", "pool", "rule")
POOLS_CHECKS = (
    Check("required_columns", "error", "columns " + ", ".join(POOLS_COLUMNS)),
    Check("id_unique", "error", "a sample is in at most one pool (ids unique across pools)"),
    Check("group_unique", "error", "a group is in at most one pool (when groups are used)"),
    Check("id_in_training", "error", "pooled ids are training ids"),
    Check("pool_known", "error", "pool is relabel, hard or very_hard (or a budgeted pool)"),
    Check("pool_within_budget", "error", "each pool holds at most its budget"),
    Check("label_in_set", "error", "labels belong to the label set"),
    Check("rule_not_null", "error", "every row names the rule that picked it"),
)


def build_pools_suite(
    frame: pd.DataFrame,
    *,
    training_ids: Collection[Any] | None = None,
    labels: Collection[Any] | None = None,
    budgets: Mapping[str, int | None] | None = None,
    pools: Sequence[str] = POOL_NAMES,
) -> SuiteBatch:
    """Pools contract: disjoint pools of training samples, each within its budget.

    Args:
        frame: ``cartoflow.pools.select_pools`` output, one row per selected sample.
        training_ids: ids of the dataset version the pools were picked from;
            ``id_in_training`` is skipped when None.
        labels: the label set; ``label_in_set`` is skipped when None.
        budgets: pool -> maximum rows (None: unbounded); ``pool_within_budget`` is skipped
            when None.
        pools: the valid pool names (budgeted pools are added).
    """
    gxe = gx_expectations()
    plan = Plan("pools", POOLS_CHECKS, frame)
    derived: dict[str, Any] = {EXAMPLE_COLUMN: example_ids(frame)}
    plan.add(
        "required_columns",
        gxe.ExpectTableColumnsToMatchSet(column_set=list(POOLS_COLUMNS), exact_match=False),
    )
    if plan.need("id", "id_unique", "id_in_training"):
        plan.add("id_unique", gxe.ExpectColumnValuesToBeUnique(column="id"))
        if training_ids is None:
            plan.skip("no training ids given", "id_in_training")
        else:
            # A derived flag, not value_set=training_ids: a 1M-id set would be copied into the
            # expectation config, the stored results and the Data Docs page.
            derived["in_training"] = id_keys(frame["id"]).isin(id_keys(training_ids))
            plan.add(
                "id_in_training",
                gxe.ExpectColumnValuesToBeInSet(column="in_training", value_set=[True]),
            )
    if "group" in plan.columns:
        plan.add("group_unique", gxe.ExpectColumnValuesToBeUnique(column="group"))
    else:
        plan.skip("no group column", "group_unique")
    if plan.need("pool", "pool_known", "pool_within_budget"):
        names = sorted({*pools, *(budgets or {})})
        plan.add("pool_known", gxe.ExpectColumnValuesToBeInSet(column="pool", value_set=names))
        if budgets is None:
            plan.skip("no budgets given", "pool_within_budget")
        else:
            pool = frame["pool"].astype(object)
            derived["pool_size"] = pool.map(pool.value_counts()).astype("float64").to_numpy()
            limits = {k: (math.nan if v is None else float(v)) for k, v in budgets.items()}
            derived["pool_budget"] = pool.map(limits).astype("float64").to_numpy()
            plan.add(
                "pool_within_budget",
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="pool_budget",
                    column_B="pool_size",
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",  # unbounded pool
                ),
            )
    if labels is None:
        plan.skip("no label set given", "label_in_set")
    elif plan.need("label", "label_in_set"):
        values = value_set(labels, frame["label"])
        plan.add("label_in_set", gxe.ExpectColumnValuesToBeInSet(column="label", value_set=values))
    if plan.need("rule", "rule_not_null"):
        plan.add("rule_not_null", gxe.ExpectColumnValuesToNotBeNull(column="rule"))
    return plan.batch(frame.assign(**derived))


# --------------------------------------------------------------------------- annotations
ANNOTATIONS_COLUMNS = ("id", "new_label")
ANNOTATIONS_CHECKS = (
    Check("required_columns", "error", "columns id and new_label"),
    Check("id_not_null", "error", "every annotation row has an id"),
    Check("id_unique", "error", "no id is annotated twice"),
    Check("id_in_batch", "error", "annotated ids belong to the exported batch"),
    Check("new_label_valid", "error", "new labels are in the label set, or <remove> / <skip>"),
    Check("coverage", "warning", "at least min_coverage of the batch got a label or <remove>"),
)


def _annotation_markers() -> tuple[str, str]:
    """REMOVE and SKIP from ``cartoflow.annotate``, the contract's values if it is absent."""
    try:
        annotate = importlib.import_module("cartoflow.annotate")
    except ModuleNotFoundError as exc:
        if exc.name != "cartoflow.annotate":
            raise
        return REMOVE, SKIP
    return str(annotate.REMOVE), str(annotate.SKIP)


def build_annotations_suite(
    frame: pd.DataFrame,
    *,
    batch_ids: Collection[Any] | None = None,
    labels: Collection[Any] | None = None,
    min_coverage: float = 1.0,
) -> SuiteBatch:
    """Annotations contract: one answer per exported id, each a known label or a marker.

    A blank ``new_label`` is an unanswered row: it is not an error, it lowers coverage.
    Markers match case-insensitively (``<REMOVE>`` is ``<remove>``).
    Batch ids absent from the file are appended to the validated frame as unanswered rows, so
    ``coverage`` names them among its examples. Coverage counts labels and ``<remove>``;
    ``<skip>`` is an explicit non-answer.

    Args:
        frame: the annotation file read as text (``id``, ``new_label``, ...).
        batch_ids: ids of the exported batch; ``id_in_batch`` is skipped when None and
            coverage is then measured over the file's rows.
        labels: the label set (class names); ``new_label_valid`` is skipped when None.
        min_coverage: share of the batch that must be answered for ``coverage`` to pass.
    """
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"Expected min_coverage within [0, 1], but got {min_coverage}.")
    gxe = gx_expectations()
    remove, skip = _annotation_markers()
    plan = Plan("annotations", ANNOTATIONS_CHECKS, frame)
    derived: dict[str, Any] = {EXAMPLE_COLUMN: example_ids(frame)}
    plan.add(
        "required_columns",
        gxe.ExpectTableColumnsToMatchSet(column_set=list(ANNOTATIONS_COLUMNS), exact_match=False),
    )
    extra = pd.DataFrame()
    if plan.need("id", "id_not_null", "id_unique", "id_in_batch"):
        plan.add("id_not_null", gxe.ExpectColumnValuesToNotBeNull(column="id"))
        plan.add("id_unique", gxe.ExpectColumnValuesToBeUnique(column="id"))
        if batch_ids is None:
            plan.skip("no batch ids given", "id_in_batch")
        else:
            batch = id_keys(batch_ids).unique()
            ids = id_keys(frame["id"])
            # A missing id is id_not_null's finding, not this check's.
            derived["in_batch"] = ids.isin(batch) | ids.isna()
            plan.add(
                "id_in_batch", gxe.ExpectColumnValuesToBeInSet(column="in_batch", value_set=[True])
            )
            absent = batch.difference(ids.dropna(), sort=False)
            extra = pd.DataFrame(
                {"id": absent.to_numpy(dtype=object), EXAMPLE_COLUMN: absent.to_numpy(dtype=object)}
            )
    if plan.need("new_label", "new_label_valid", "coverage"):
        answer = frame["new_label"].astype("string").str.strip()
        answer = answer.mask(answer == "")
        # Markers are matched case-insensitively, as cartoflow.annotate reads them.
        lowered = answer.str.lower()
        answer = answer.mask(lowered == remove.lower(), remove).mask(lowered == skip.lower(), skip)
        derived["answer"] = objects(answer)
        answered = (answer.notna() & (answer != skip)).fillna(False).to_numpy(dtype=bool)
        derived["answered"] = answered
        if "in_batch" in derived:
            # Rows outside the batch are id_in_batch's finding; they do not count as coverage.
            derived["answered"] = only_where(derived["in_batch"], answered)
        if labels is None:
            plan.skip("no label set given", "new_label_valid")
        else:
            values = sorted({str(v) for v in labels} | {remove, skip})
            plan.add(
                "new_label_valid",
                gxe.ExpectColumnValuesToBeInSet(column="answer", value_set=values),
            )
        plan.add(
            "coverage",
            gxe.ExpectColumnValuesToBeInSet(
                column="answered", value_set=[True], mostly=min_coverage
            ),
        )
        if len(extra):
            extra["answered"] = False
    else:
        extra = extra.iloc[0:0]
    validated = frame.assign(**derived)
    if len(extra):
        validated = pd.concat([validated, extra], ignore_index=True)
    return plan.batch(validated)


# --------------------------------------------------------------------------- new version
NEW_VERSION_COLUMNS = ("id", "text", "label")
NEW_VERSION_CHECKS = (
    Check("required_columns", "error", "columns id, text and label"),
    Check("row_arithmetic", "error", "rows = parent rows - removed + added"),
    Check("id_not_null", "error", "every row has an id"),
    Check("id_unique", "error", "ids are unique"),
    Check("label_in_set", "error", "labels belong to the label set"),
    Check("action_known", "error", "decisions are fix, remove, add, keep or skip"),
    Check("removed_rows_absent", "error", "no removed id is still in the new version"),
    Check("new_rows_added", "error", "every id not in the parent was added by a decision"),
    Check("fixed_labels_applied", "error", "a fixed row holds the decided new label"),
    Check("unchanged_rows_identical", "error", "rows not fixed are identical to the parent"),
)


def _same(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Element-wise equality where two missing values are equal; never raises on pd.NA."""
    a = a.reset_index(drop=True)
    b = b.reset_index(drop=True)
    try:
        equal = (a == b).astype("boolean").fillna(False).to_numpy(dtype=bool)
    except (TypeError, ValueError):  # incomparable dtypes: nothing is equal
        equal = np.zeros(len(a), dtype=bool)
    return equal | (a.isna().to_numpy() & b.isna().to_numpy())


def build_new_version_suite(
    frame: pd.DataFrame,
    *,
    parent: pd.DataFrame,
    decisions: pd.DataFrame,
    labels: Collection[Any] | None = None,
    mutable_columns: Collection[str] = (),
) -> SuiteBatch:
    """New dataset version: exactly the parent with the decisions applied, nothing else.

    Args:
        frame: the new version (dataset contract), validated row by row.
        parent: the version the round started from.
        decisions: one row per decision, with ``id`` (or ``sample_id``), ``action`` (fix /
            remove / add / keep / skip) and optionally ``new_label``. The last decision of an
            id counts.
        labels: the label set; the parent's labels when None.
        mutable_columns: columns allowed to differ from the parent on unchanged rows.

    Raises:
        DataValidationError: ``parent`` or ``decisions`` lack the columns named above.
    """
    key = "id" if "id" in decisions.columns else "sample_id"
    for name, table, needed in (
        ("parent", parent, ("id",)),
        ("decisions", decisions, (key, "action")),
    ):
        absent = [c for c in needed if c not in table.columns]
        if absent:
            raise DataValidationError(
                f"Expected the {name} frame to have columns {', '.join(needed)}, but "
                f"{describe_items(absent)} are missing (it has {describe_items(table.columns)})."
            )
    gxe = gx_expectations()
    plan = Plan("new_version", NEW_VERSION_CHECKS, frame)
    derived: dict[str, Any] = {EXAMPLE_COLUMN: example_ids(frame)}
    plan.add(
        "required_columns",
        gxe.ExpectTableColumnsToMatchSet(column_set=list(NEW_VERSION_COLUMNS), exact_match=False),
    )
    decided_ids = id_keys(decisions[key])
    last = ~decided_ids.duplicated(keep="last")
    decided_ids = decided_ids[last]
    actions = objects(decisions["action"])[last]
    parent_ids = id_keys(parent["id"])
    removed = int(((actions == "remove") & decided_ids.isin(parent_ids)).sum())
    added = int((actions == "add").sum())
    plan.add("row_arithmetic", gxe.ExpectTableRowCountToEqual(value=len(parent) - removed + added))

    row_checks = (
        "id_not_null",
        "id_unique",
        "action_known",
        "removed_rows_absent",
        "new_rows_added",
        "fixed_labels_applied",
        "unchanged_rows_identical",
    )
    if plan.need("id", *row_checks):
        ids = id_keys(frame["id"])
        decision = decided_ids.get_indexer(ids)
        action = pick(actions, decision)
        in_parent = ids.isin(parent_ids)
        derived["action"] = action
        origin = np.where(in_parent, "parent", np.where(action == "add", "added", "unexplained"))
        # A row without an id is id_not_null's finding, not an unexplained addition.
        derived["origin"] = only_where(ids.notna(), origin)
        plan.add("id_not_null", gxe.ExpectColumnValuesToNotBeNull(column="id"))
        plan.add("id_unique", gxe.ExpectColumnValuesToBeUnique(column="id"))
        plan.add(
            "action_known",
            gxe.ExpectColumnValuesToBeInSet(column="action", value_set=list(ACTIONS)),
        )
        plan.add(
            "removed_rows_absent",
            gxe.ExpectColumnValuesToNotBeInSet(column="action", value_set=["remove"]),
        )
        plan.add(
            "new_rows_added",
            gxe.ExpectColumnValuesToBeInSet(column="origin", value_set=["parent", "added"]),
        )
        is_fix = action == "fix"
        if "new_label" in decisions.columns and "label" in plan.columns:
            new_labels = id_keys(decisions["new_label"]).to_numpy()[last]
            derived["decided_label"] = only_where(is_fix, pick(new_labels, decision))
            derived["label_text"] = only_where(is_fix, id_keys(frame["label"]).to_numpy())
            plan.add(
                "fixed_labels_applied",
                gxe.ExpectColumnPairValuesToBeEqual(
                    column_A="label_text",
                    column_B="decided_label",
                    ignore_row_if="either_value_is_missing",
                ),
            )
        else:
            plan.skip("no new_label in decisions, or no label column", "fixed_labels_applied")

        compared = [
            c
            for c in frame.columns
            if c in parent.columns and c != "id" and c not in set(mutable_columns)
        ]
        first = ~parent_ids.duplicated(keep="first")
        position = parent_ids[first].get_indexer(ids)
        # Rows not in the parent borrow parent row 0 here; the check does not apply to them.
        matched = parent[first].iloc[np.maximum(position, 0)] if first.any() else parent
        same = np.ones(len(frame), dtype=bool)
        for column in compared if first.any() else []:
            equal = _same(frame[column], matched[column])
            if column == "label":
                equal |= is_fix  # a fix changes the label and nothing else
            same &= equal
        applies = in_parent & (action != "add")
        derived["matches_parent"] = only_where(applies, same)
        plan.add(
            "unchanged_rows_identical",
            gxe.ExpectColumnValuesToBeInSet(column="matches_parent", value_set=[True]),
        )
    if labels is None and "label" not in parent.columns:
        plan.skip("no label set given and no parent labels", "label_in_set")
    elif plan.need("label", "label_in_set"):
        values = labels if labels is not None else parent["label"].dropna().unique().tolist()
        plan.add(
            "label_in_set",
            gxe.ExpectColumnValuesToBeInSet(
                column="label", value_set=value_set(values, frame["label"])
            ),
        )
    return plan.batch(frame.assign(**derived))


# --------------------------------------------------------------------------- model
MODEL_CHECKS = (
    Check("macro_f1_not_worse", "error", "retrained macro-F1 >= baseline macro-F1 - tolerance"),
    Check("accuracy_not_worse", "warning", "retrained accuracy >= baseline accuracy - tolerance"),
)


def build_model_suite(
    frame: pd.DataFrame | None = None,
    *,
    baseline_macro_f1: float,
    retrained_macro_f1: float,
    tolerance: float = 0.0,
    baseline_accuracy: float | None = None,
    retrained_accuracy: float | None = None,
    candidate: str = "retrained",
) -> SuiteBatch:
    """Model gate: the retrained model is not worse than the baseline, within a tolerance.

    The comparison is a computed check on a one-row frame (``example_id`` = ``candidate``),
    so it reports through GX like the data suites. NaN scores fail.

    Args:
        frame: unused; the scores come as parameters. Must be None.
        baseline_macro_f1: macro-F1 on the eval set of the model trained on the parent.
        retrained_macro_f1: macro-F1 of the model trained on the new version.
        tolerance: how much worse the new model may be and still be promoted.
        baseline_accuracy, retrained_accuracy: accuracies; ``accuracy_not_worse`` (a
            warning) is skipped unless both are given.
        candidate: name of the candidate, used as the example id.
    """
    if frame is not None:
        raise ValueError("The model suite takes scores as parameters, not a frame; pass None.")
    if tolerance < 0:
        raise ValueError(f"Expected tolerance >= 0, but got {tolerance}.")
    gxe = gx_expectations()
    row: dict[str, Any] = {
        EXAMPLE_COLUMN: [candidate],
        "macro_f1": [float(retrained_macro_f1)],
        "min_macro_f1": [float(baseline_macro_f1) - tolerance],
    }
    if baseline_accuracy is not None and retrained_accuracy is not None:
        row["accuracy"] = [float(retrained_accuracy)]
        row["min_accuracy"] = [float(baseline_accuracy) - tolerance]
    scores = pd.DataFrame(row)
    plan = Plan("model", MODEL_CHECKS, scores)
    plan.add(
        "macro_f1_not_worse",
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="macro_f1", column_B="min_macro_f1", or_equal=True, ignore_row_if="neither"
        ),
    )
    if "accuracy" in plan.columns:
        plan.add(
            "accuracy_not_worse",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="accuracy", column_B="min_accuracy", or_equal=True, ignore_row_if="neither"
            ),
        )
    else:
        plan.skip("accuracies not given", "accuracy_not_worse")
    return plan.batch(scores)


# --------------------------------------------------------------------------- registry
SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite("dataset", "a loaded dataset version", DATASET_CHECKS, build_dataset_suite),
        Suite("dynamics", "recorded training dynamics", DYNAMICS_CHECKS, build_dynamics_suite),
        Suite("metrics", "per-sample metrics", METRICS_CHECKS, build_metrics_suite),
        Suite("pools", "selected pools", POOLS_CHECKS, build_pools_suite),
        Suite("annotations", "an annotation file", ANNOTATIONS_CHECKS, build_annotations_suite),
        Suite("new_version", "a new dataset version", NEW_VERSION_CHECKS, build_new_version_suite),
        Suite("model", "retrained vs baseline model", MODEL_CHECKS, build_model_suite, False),
    )
}
"""Suite name -> :class:`Suite`, in the order of the round's stages."""


def get_suite(name: str) -> Suite:
    """The registered suite ``name``; ValueError listing the valid names otherwise."""
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"Expected a suite among {', '.join(SUITES)}, but got {name!r}.") from None


def list_suites() -> list[tuple[str, str, str, str]]:
    """Every declared check as ``(suite, expectation name, severity, description)``."""
    return [(s.name, c.name, c.severity, c.description) for s in SUITES.values() for c in s.checks]


def format_suites_table() -> str:
    """The suites as a plain-text table, for ``cartoflow checks list``."""
    rows = [("suite", "expectation", "severity", "description"), *list_suites()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[j].ljust(widths[j]) for j in range(3)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
        if i == 0:
            lines.append("  ".join(["-" * w for w in widths] + ["-" * len(row[3])]))
    return "\n".join(lines)
