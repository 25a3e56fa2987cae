"""Annotation batches: export them for people, simulate an annotator, read the answers back.

A batch is a CSV (UTF-8) and a Parquet file with the columns ``id``, ``text``, ``label`` (the
current class name), ``suggested_label`` (the model's suggestion, a class name), ``pool``,
``rule`` (what picked the sample) and an empty ``new_label`` (plus ``group`` when the dataset
has groups). Annotators fill ``new_label`` with a class name, :data:`REMOVE` to drop the sample,
or leave it empty / :data:`SKIP` to keep the current label.

:class:`SimulatedAnnotator` answers from a hidden column (``true_label`` of the demo data), with
an optional error rate, for demos, tests and experiments; a person replaces it in production.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from cartoflow.datasets import (
    Dataset,
    LabelMap,
    _atomic_write,
    _reader,
    _Rows,
    _to_names,
    _to_strings,
)
from cartoflow.errors import DataValidationError, describe_items

__all__ = [
    "BATCH_COLUMNS",
    "REMOVE",
    "SKIP",
    "SimulatedAnnotator",
    "annotation_coverage",
    "annotations_from_mapping",
    "export_batch",
    "read_annotations",
    "read_batch",
]

REMOVE = "<remove>"
"""``new_label`` marker: drop the sample from the dataset."""
SKIP = "<skip>"
"""``new_label`` marker (same as leaving it empty): keep the current label."""
MARKERS = (REMOVE, SKIP)

BATCH_COLUMNS = ("id", "text", "label", "suggested_label", "pool", "rule", "new_label")


def _names_of(values: pd.Series, label_map: LabelMap | None) -> pd.Series:
    """Class names of a column holding names or (with a map) class indices; '' where null."""
    values = values.reset_index(drop=True)
    if pd.api.types.is_integer_dtype(values.dtype) and label_map is not None:
        names = pd.Series(label_map.decode(values.to_numpy(dtype=np.int64)), dtype="str")
    else:
        names = _to_names(values)
    return names.fillna("")


def export_batch(
    pools: pd.DataFrame,
    dataset: Dataset | pd.DataFrame,
    path_stem: str | os.PathLike[str],
    *,
    label_map: LabelMap | None = None,
) -> tuple[Path, Path]:
    """Write the annotation batch for the selected samples as ``<stem>.csv`` and ``.parquet``.

    Args:
        pools: one row per selected sample (as :func:`cartoflow.pools.select_pools` returns),
            with ``id`` (or ``sample``, a row position in ``dataset``), ``pool``, and optionally
            ``rule`` and ``suggested_label`` (class index or name). Row order is kept.
        dataset: the dataset version the samples come from (a :class:`Dataset` or its
            normalised frame); text, current label and group are taken from it by id.
        path_stem: output path without suffix, e.g. ``runs/r1/batch``.
        label_map: decodes integer ``suggested_label`` values; defaults to the dataset's map
            (or, for a bare frame, the map of its labels).

    Returns:
        ``(csv_path, parquet_path)``, both written atomically.

    Raises:
        DataValidationError: pools without ``id``/``sample`` or ``pool``, ids that are not in
            the dataset, or a sample selected twice.
    """
    frame = dataset.frame if isinstance(dataset, Dataset) else dataset
    if label_map is None:
        if isinstance(dataset, Dataset):
            label_map = dataset.label_map
        elif "label" in frame.columns:
            label_map = LabelMap.from_labels(frame["label"].dropna().tolist())
    if "pool" not in pools.columns or not {"id", "sample"} & set(pools.columns):
        raise DataValidationError(
            f"Expected the pools to have a `pool` column and an `id` or `sample` column, but "
            f"they have {list(map(str, pools.columns))}."
        )
    pools = pools.reset_index(drop=True)
    frame = frame.reset_index(drop=True)
    if "id" in pools.columns:
        ids, _ = _to_strings(pools["id"])
        position = pd.Index(frame["id"].astype(str)).get_indexer(pd.Index(ids))
        unknown = np.flatnonzero(position < 0)
        if unknown.size:
            raise DataValidationError(
                f"Expected every selected id to be in the dataset, but ids "
                f"{describe_items(ids.iloc[unknown].tolist())} are not. Fix: select the pools "
                "from the metrics of this dataset version."
            )
    else:
        position = pools["sample"].to_numpy(dtype=np.int64)
        bad = np.flatnonzero((position < 0) | (position >= len(frame)))
        if bad.size:
            raise DataValidationError(
                f"Expected `sample` positions in [0, {len(frame)}), but pools rows "
                f"{describe_items(bad.tolist())} hold {describe_items(position[bad].tolist())}."
            )
    repeated = pd.Series(position).duplicated(keep=False).to_numpy()
    if repeated.any():
        shown = frame["id"].iloc[position[repeated]].unique().tolist()
        raise DataValidationError(
            f"Expected each sample at most once in a batch, but ids {describe_items(shown)} "
            "are selected more than once. Fix: keep one pool per sample (select_pools does)."
        )
    rows = frame.iloc[position].reset_index(drop=True)
    batch = pd.DataFrame(
        {
            "id": rows["id"].astype("str"),
            "text": rows["text"].astype("str"),
            "label": _names_of(rows["label"], None)
            if "label" in rows.columns
            else pd.Series([""] * len(rows), dtype="str"),
            "suggested_label": _names_of(pools["suggested_label"], label_map)
            if "suggested_label" in pools.columns
            else pd.Series([""] * len(rows), dtype="str"),
            "pool": pools["pool"].astype("str"),
            "rule": pools["rule"].astype("str").fillna("")
            if "rule" in pools.columns
            else pd.Series([""] * len(rows), dtype="str"),
        }
    )
    if "group" in rows.columns:
        batch["group"] = rows["group"].astype("str")
    batch["new_label"] = pd.Series([""] * len(batch), dtype="str")
    stem = Path(path_stem)
    csv_path = stem.with_name(stem.name + ".csv")
    parquet_path = stem.with_name(stem.name + ".parquet")
    _atomic_write(csv_path, lambda tmp: batch.to_csv(tmp, index=False, encoding="utf-8"))
    _atomic_write(parquet_path, lambda tmp: batch.to_parquet(tmp, index=False))
    return csv_path, parquet_path


def read_batch(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a batch that :func:`export_batch` wrote (CSV cells as strings, '' not NaN)."""
    resolved = Path(path)
    frame, _ = _reader(resolved)(resolved)
    return frame


class SimulatedAnnotator(BaseModel):
    """An annotator that answers from a hidden column, wrong on an exact share of the rows.

    Exactly ``round(error_rate * n)`` of a batch's ``n`` rows, chosen with ``seed``, get a label
    drawn uniformly from the *other* classes of ``label_names``; the rest get the hidden value.
    Deterministic: the same batch, truth and settings give the same answers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(default="true_label", description="Column holding the true class.")
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of wrong answers.")
    seed: int = Field(default=0, description="Seed choosing the wrong answers.")
    label_names: list[str] = Field(
        default_factory=list,
        description="Valid classes; empty: the classes found in the truth.",
    )

    def answers(self, batch: pd.DataFrame, truth: pd.Series | pd.DataFrame) -> pd.DataFrame:
        """Per batch row: ``id``, ``new_label`` (the answer) and ``wrong`` (bool, an error)."""
        ids, _ = _to_strings(batch["id"])
        lookup = self._lookup(truth)
        position = pd.Index(lookup.index).get_indexer(pd.Index(ids))
        missing = np.flatnonzero(position < 0)
        if missing.size:
            raise DataValidationError(
                f"The simulated annotator answers from column `{self.column}`, but batch ids "
                f"{describe_items(ids.iloc[missing].tolist())} are not in the truth it was "
                "given. Fix: pass a truth covering every batch row (e.g. train and unlabeled)."
            )
        true = lookup.iloc[position].reset_index(drop=True)
        null = np.flatnonzero(true.isna().to_numpy())
        if null.size:
            raise DataValidationError(
                f"The simulated annotator answers from column `{self.column}`, but it is empty "
                f"for batch ids {describe_items(ids.iloc[null].tolist())}."
            )
        names = self.label_names or LabelMap.from_labels(lookup.dropna().tolist()).names
        code = pd.Index(names).get_indexer(pd.Index(true.to_numpy(dtype=object)))
        unknown = np.flatnonzero(code < 0)
        if unknown.size:
            raise DataValidationError(
                f"Expected column `{self.column}` to hold one of {names}, but batch ids "
                f"{describe_items(ids.iloc[unknown].tolist())} hold "
                f"{describe_items(sorted(set(true.iloc[unknown])))}."
            )
        n = len(ids)
        wrong_count = int(np.floor(self.error_rate * n + 0.5))
        if wrong_count and len(names) < 2:
            raise ValueError(f"Expected at least 2 classes to make errors, but got {names}.")
        rng = np.random.default_rng(self.seed)
        wrong = np.zeros(n, dtype=bool)
        wrong[rng.choice(n, size=wrong_count, replace=False)] = True
        shift = rng.integers(1, max(len(names), 2), size=n)
        answer = np.where(wrong, (code + shift) % len(names), code)
        return pd.DataFrame(
            {
                "id": ids,
                "new_label": pd.Series(np.asarray(names, dtype=object)[answer], dtype="str"),
                "wrong": wrong,
            }
        )

    def annotate(self, batch: pd.DataFrame, truth: pd.Series | pd.DataFrame) -> pd.DataFrame:
        """The batch with ``new_label`` filled in.

        Args:
            batch: an exported batch (at least an ``id`` column).
            truth: the hidden answers: a Series indexed by id, or a frame with ``id`` and
                :attr:`column`.

        Raises:
            DataValidationError: a batch id without a (valid) true label.
        """
        filled = batch.copy()
        filled["new_label"] = self.answers(batch, truth)["new_label"].to_numpy()
        filled["new_label"] = filled["new_label"].astype("str")
        return filled

    def _lookup(self, truth: pd.Series | pd.DataFrame) -> pd.Series:
        if isinstance(truth, pd.DataFrame):
            if "id" not in truth.columns or self.column not in truth.columns:
                raise DataValidationError(
                    f"Expected the truth frame to have `id` and `{self.column}` columns, but it "
                    f"has {list(map(str, truth.columns))}."
                )
            index, _ = _to_strings(truth["id"])
            values = truth[self.column]
        else:
            index, _ = _to_strings(pd.Series(truth.index))
            values = truth
        series = pd.Series(_to_names(values).to_numpy(dtype=object), index=index.to_numpy())
        duplicated = series.index.duplicated()
        if duplicated.any():
            raise DataValidationError(
                f"Expected one true label per id, but ids "
                f"{describe_items(series.index[duplicated].unique().tolist())} appear twice."
            )
        return series


def _validate_annotations(
    raw: pd.DataFrame,
    rows: _Rows,
    *,
    batch: pd.DataFrame,
    label_map: LabelMap,
) -> pd.DataFrame:
    """Check annotator output against its batch; returns ``id``, ``new_label`` (markers kept)."""
    source = rows.source
    missing = [c for c in ("id", "new_label") if c not in raw.columns]
    if missing:
        raise DataValidationError(
            f"{source}: expected the columns {missing}, but it has "
            f"{list(map(str, raw.columns))}. Fix: fill `new_label` in the exported batch file "
            "and keep its `id` column."
        )
    raw = raw.reset_index(drop=True)
    ids, _ = _to_strings(raw["id"])
    blank = np.flatnonzero((ids.isna() | (ids.str.strip() == "")).to_numpy())
    if blank.size:
        raise DataValidationError(
            f"{source}: column `id` is empty on {rows.describe(blank)} ({rows.convention}). "
            "Fix: keep the id of every annotated row."
        )
    repeated = ids.duplicated(keep=False).to_numpy()
    if repeated.any():
        shown = ids[repeated].unique().tolist()
        raise DataValidationError(
            f"{source}: expected each id once, but ids {describe_items(shown)} appear on "
            f"{rows.describe(np.flatnonzero(repeated))} ({rows.convention}). Fix: keep one "
            "answer per sample."
        )
    batch_ids, _ = _to_strings(batch["id"])
    # Object dtype: pandas 3's Arrow-backed strings check isin with a Python loop.
    unknown = np.flatnonzero(~ids.astype(object).isin(batch_ids.astype(object)).to_numpy())
    if unknown.size:
        raise DataValidationError(
            f"{source}: ids {describe_items(ids.iloc[unknown].tolist())} on "
            f"{rows.describe(unknown)} ({rows.convention}) are not in the batch. Fix: annotate "
            "only the rows of the exported batch (do not add or edit ids)."
        )
    try:
        labels = _to_names(raw["new_label"]).fillna("")
    except ValueError as exc:
        raise DataValidationError(
            f"{source}: column `new_label` must hold class names, {REMOVE} or {SKIP}, but "
            f"holds {exc}."
        ) from None
    lowered = labels.str.lower()
    labels = labels.where(~lowered.isin(MARKERS), lowered)
    labels = labels.where(labels != "", SKIP)
    valid = set(label_map.names) | set(MARKERS)
    bad = np.flatnonzero(~labels.isin(valid).to_numpy())
    if bad.size:
        raise DataValidationError(
            f"{source}: column `new_label` holds {describe_items(sorted(set(labels.iloc[bad])))} "
            f"on {rows.describe(bad)} ({rows.convention}), but expected one of the classes "
            f"{label_map.names}, {REMOVE!r} to remove the sample, or empty / {SKIP!r} to keep "
            "its label. Fix: correct those cells."
        )
    result = pd.DataFrame({"id": ids, "new_label": labels.astype("str")})
    result.attrs["coverage"] = annotation_coverage(result, batch)
    return result


def read_annotations(
    path: str | os.PathLike[str],
    *,
    batch: pd.DataFrame | str | os.PathLike[str],
    label_map: LabelMap,
) -> pd.DataFrame:
    """Read and validate a filled batch (CSV or Parquet; the batch's other columns may stay).

    Args:
        path: the filled file.
        batch: the exported batch it answers (frame or path); its ids are the valid ids.
        label_map: the valid class names.

    Returns:
        One row per answered row, in file order: ``id`` (str) and ``new_label`` (a class name,
        :data:`REMOVE` or :data:`SKIP`; an empty cell becomes :data:`SKIP`; markers are matched
        case-insensitively). ``result.attrs["coverage"]`` holds :func:`annotation_coverage`.

    Raises:
        DataValidationError: undecodable bytes, missing ``id``/``new_label`` columns, empty or
            duplicated ids, ids not in the batch, labels that are neither classes nor markers;
            the message names the file lines (CSV: the header is line 1) and the values.
    """
    resolved = Path(path)
    raw, rows = _reader(resolved)(resolved)
    batch_frame = batch if isinstance(batch, pd.DataFrame) else read_batch(batch)
    return _validate_annotations(raw, rows, batch=batch_frame, label_map=label_map)


def annotations_from_mapping(
    mapping: Mapping[str, str], batch: pd.DataFrame, *, label_map: LabelMap
) -> pd.DataFrame:
    """Annotations entered inline, ``{"sample id": "label"}``, validated like a filled file.

    Returns the same frame as :func:`read_annotations`, in the mapping's order.
    """
    raw = pd.DataFrame(
        {
            "id": pd.Series([str(k) for k in mapping], dtype="str"),
            "new_label": pd.Series(list(mapping.values()), dtype=object),
        }
    )
    return _validate_annotations(
        raw, _Rows("inline labels", "frame"), batch=batch, label_map=label_map
    )


def annotation_coverage(annotations: pd.DataFrame, batch: pd.DataFrame) -> dict[str, int]:
    """How much of a batch the annotations cover.

    Returns:
        ``batch`` (rows), ``answered`` (rows in the annotations), ``labelled`` (answered with a
        class), ``changed`` / ``confirmed`` (a class different from / equal to the batch's
        current label), ``removed``, ``skipped`` (SKIP or empty), ``missing`` (batch rows with
        no answer at all).
    """
    new = annotations["new_label"].astype("str")
    batch_ids, _ = _to_strings(batch["id"])
    current = pd.Series(
        _names_of(batch["label"], None).to_numpy() if "label" in batch.columns else "",
        index=batch_ids.to_numpy(),
    )
    old = annotations["id"].map(current).fillna("").astype("str")
    labelled = ~new.isin(MARKERS)
    return {
        "batch": len(batch),
        "answered": len(annotations),
        "labelled": int(labelled.sum()),
        "changed": int((labelled & (new != old)).sum()),
        "confirmed": int((labelled & (new == old)).sum()),
        "removed": int((new == REMOVE).sum()),
        "skipped": int((new == SKIP).sum()),
        "missing": int(
            (~batch_ids.astype(object).isin(annotations["id"].astype(str).astype(object))).sum()
        ),
    }
