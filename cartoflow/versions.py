"""Immutable dataset versions and the label decisions that lead from one to the next.

A version is a normalised dataset frame (``id``, ``text``, ``label`` as the class name, optional
``group`` and ``true_label``) stored once as ``datasets/<name>/vNNNN.parquet``. Versions are
content-addressed: registering a frame whose content is already a version returns that version,
so re-running a round (or resuming a suspended one) never writes a duplicate.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cartoflow.annotate import REMOVE, SKIP
from cartoflow.catalog import Catalog, VersionRecord
from cartoflow.datasets import id_keys
from cartoflow.errors import DataValidationError, describe_items
from cartoflow.workspace import Workspace, frame_hash, write_frame

Strategy = Literal["fix", "remove"]
ACTIONS = ("fix", "remove", "add", "keep", "skip")


def register_version(
    frame: pd.DataFrame,
    *,
    workspace: Workspace,
    catalog: Catalog,
    dataset: str,
    parent: int | None = None,
    round_id: str | None = None,
    note: str | None = None,
    promoted: bool = False,
) -> VersionRecord:
    """Store ``frame`` as the next version of ``dataset`` unless its content is already stored.

    The file is written to a temporary name and renamed, then the catalog row is added; an
    existing version file is never replaced.
    """
    content = frame_hash(frame)
    existing = catalog.find_version(dataset, content)
    if existing is not None:
        return existing
    number = catalog.next_version_number(dataset)
    path = workspace.version_path(dataset, number)
    if path.exists():
        raise FileExistsError(
            f"{path} exists but the catalog {catalog.path} does not list it; refusing to overwrite "
            "a dataset version. Move the file aside or restore the catalog."
        )
    write_frame(frame.reset_index(drop=True), path)
    _VERIFIED.add(_file_key(path, content))  # just hashed: the next read need not hash again
    record = VersionRecord(
        dataset=dataset,
        version=number,
        hash=content,
        parent=parent,
        rows=len(frame),
        file=str(path.relative_to(workspace.root)),
        round_id=round_id,
        promoted=promoted,
    )
    return catalog.add_version(record, note=note)


_VERIFIED: set[tuple[str, int, int, int, str]] = set()
"""Files this process has hashed against their record: (path, inode, size, mtime_ns, hash)."""

_FRAMES: OrderedDict[tuple[str, int, int, int, str], pd.DataFrame] = OrderedDict()
"""The last versions read, by the key of their verified file; each reader gets a copy."""
_FRAMES_KEPT = 4
_FRAMES_LOCK = threading.Lock()


def _file_key(path: Path, content_hash: str) -> tuple[str, int, int, int, str]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, content_hash)


def read_version(record: VersionRecord, *, workspace: Workspace) -> pd.DataFrame:
    """Load a stored version and check it still has the content the catalog recorded.

    The content hash is checked the first time a process reads a file; later reads of the same
    unchanged file (same inode, size and modification time) skip the hash, which a round would
    otherwise recompute a dozen times per version. The last few versions read are kept in
    memory too (a round's stages read its training version about twenty times): a later read
    of the same unchanged file returns a copy (a fraction of a millisecond for Arrow-backed
    columns) instead of parsing the file again; what a caller does to its copy stays its own.
    """
    path = workspace.root / record.file
    return _read_checked(
        path,
        record.hash,
        f"{path} no longer matches the content hash recorded for {record.dataset} "
        f"v{record.version}; dataset versions are immutable. Restore the file from backup.",
    )


def write_candidate(frame: pd.DataFrame, path: Path) -> str:
    """Write a candidate version (built, not yet registered) atomically; return its content hash.

    The hash is that of the file as read back, so it equals the hash :func:`register_version`
    gives the version registered from this file. A round retrains on the candidate
    (:func:`read_candidate`) while its gate runs and it is registered.
    """
    write_frame(frame.reset_index(drop=True), path)
    content = frame_hash(pd.read_parquet(path))
    _VERIFIED.add(_file_key(path, content))
    return content


def read_candidate(path: Path, content_hash: str) -> pd.DataFrame:
    """Load a candidate :func:`write_candidate` wrote, checked against its content hash.

    Raises:
        DataValidationError: the file changed after it was built.
    """
    return _read_checked(
        path,
        content_hash,
        f"{path} changed after the round built it (content hash {content_hash[:12]} expected); "
        "a candidate version is written once. Re-run the round to build it again.",
    )


def _read_checked(path: Path, content_hash: str, mismatch: str) -> pd.DataFrame:
    key = _file_key(path, content_hash)
    with _FRAMES_LOCK:
        kept = _FRAMES.get(key)
        if kept is not None:
            _FRAMES.move_to_end(key)
            return kept.copy(deep=True)
    frame = pd.read_parquet(path)
    if key not in _VERIFIED:
        if frame_hash(frame) != content_hash:
            raise DataValidationError(mismatch)
        _VERIFIED.add(key)
    with _FRAMES_LOCK:
        _FRAMES[key] = frame.copy(deep=True)
        while len(_FRAMES) > _FRAMES_KEPT:
            _FRAMES.popitem(last=False)
    return frame


def read_registered(workspace: Workspace, dataset: str, content_hash: str) -> pd.DataFrame:
    """The version of ``dataset`` with ``content_hash``, read and checked (:func:`read_version`).

    Raises:
        KeyError: no such version in the workspace's catalog.
    """
    record = Catalog(workspace.catalog_path).find_version(dataset, content_hash)
    if record is None:
        raise KeyError(
            f"Dataset version {dataset} {content_hash[:12]} is not registered in "
            f"{workspace.catalog_path}; pass the hashes of the round that registered it."
        )
    return read_version(record, workspace=workspace)


def decide(
    annotations: pd.DataFrame,
    parent: pd.DataFrame,
    *,
    strategies: Mapping[str, Strategy],
    annotator: str,
    default_strategy: Strategy = "fix",
) -> pd.DataFrame:
    """Turn annotated rows into one label decision per row.

    Args:
        annotations: one row per annotated sample with ``id``, ``pool``, ``new_label`` and, for
            samples that are not yet in ``parent`` (expansion candidates), ``text`` and
            optionally ``group``. ``new_label`` is a class name, ``REMOVE``, or ``SKIP``/empty.
        parent: the dataset version the round started from.
        strategies: pool -> ``"fix"`` (replace a wrong label) or ``"remove"`` (drop the sample
            when the annotator disagrees with its label).
        annotator: who decided (a reviewer's name, or ``simulated:<column>``).

    Returns:
        A frame with ``sample_id``, ``old_label``, ``new_label``, ``action`` (fix / remove /
        add / keep / skip), ``annotator``, ``pool``, ``reason``, plus ``text``/``group`` for adds.
    """
    unknown = sorted(set(strategies.values()) - {"fix", "remove"})
    if unknown:
        raise ValueError(f"Expected strategies 'fix' or 'remove', but got {unknown}.")
    old = parent.set_index("id")["label"]
    ann = annotations.reset_index(drop=True)
    in_parent = ann["id"].astype(object).isin(old.index.astype(object)).to_numpy()
    new = ann["new_label"].astype("string").fillna(SKIP).str.strip().replace("", SKIP)
    old_label = ann["id"].map(old).astype("string")
    pool = ann["pool"].astype("string")
    strategy = pool.map(lambda p: strategies.get(str(p), default_strategy))

    is_skip = (new == SKIP).to_numpy()
    is_remove_marker = (new == REMOVE).to_numpy()
    same = (new == old_label).fillna(False).to_numpy()
    differs = ~is_skip & ~is_remove_marker & ~same
    action = np.select(
        [
            is_skip,
            ~in_parent,
            is_remove_marker,
            same,
            differs & (strategy == "remove").to_numpy(),
        ],
        ["skip", "add", "remove", "keep", "remove"],
        default="fix",
    )
    reason = np.select(
        [
            is_skip,
            ~in_parent,
            is_remove_marker,
            same,
            action == "remove",
        ],
        [
            "annotator skipped",
            "new sample labelled from pool " + pool.fillna("?").to_numpy(dtype=object),
            "annotator asked to remove",
            "annotator confirmed the label",
            "label disputed; pool strategy is remove",
        ],
        default="label fixed by annotator",
    )
    # An added sample the annotator removed or skipped is simply not added.
    action = np.where(~in_parent & (is_remove_marker | is_skip), "skip", action)
    decisions = pd.DataFrame(
        {
            "sample_id": ann["id"].astype("string"),
            "old_label": old_label,
            "new_label": new.mask(pd.Series(is_skip, index=new.index)),
            "action": action,
            "annotator": annotator,
            "pool": pool,
            "reason": reason,
        }
    )
    for extra in ("text", "group", "true_label"):
        if extra in ann.columns:
            decisions[extra] = ann[extra].to_numpy()
    return decisions


def _add_sources(columns: pd.Index) -> dict[str, str]:
    """Which decision column fills each dataset column of an added row."""
    renames = {"id": "sample_id", "label": "new_label"}
    return {str(c): renames.get(str(c), str(c)) for c in columns}


def apply_decisions(parent: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """The next version: ``parent`` with fixes applied, removals dropped and additions appended.

    Rows without a fix keep every value of the parent, in the parent's order.
    """
    unknown_actions = sorted(set(decisions["action"].unique().tolist()) - set(ACTIONS))
    if unknown_actions:
        raise ValueError(f"Expected actions among {ACTIONS}, but got {unknown_actions}.")
    dup = decisions["sample_id"][decisions["sample_id"].duplicated()]
    if len(dup):
        raise DataValidationError(
            f"Expected one decision per sample, but ids {describe_items(dup.unique())} "
            "have several. Keep one row per id in the annotation file."
        )
    by_action = {a: decisions[decisions["action"] == a] for a in ACTIONS}
    ids = id_keys(parent["id"])  # object hash tables: on Arrow strings set() and isin loop
    touched = id_keys(pd.concat([by_action[a]["sample_id"] for a in ("fix", "remove")]))
    missing = sorted(touched[~touched.isin(ids)].tolist())
    if missing:
        raise DataValidationError(
            f"Decisions name ids {describe_items(missing)} that are not in the parent version."
        )
    fixes = by_action["fix"]
    new = parent.copy()
    if len(fixes):
        if not ids.is_unique:
            repeated = ids[ids.duplicated()].unique().tolist()
            raise DataValidationError(
                f"Expected unique ids in the parent version, but ids {describe_items(repeated)} "
                "repeat: a fix could not say which row it is for."
            )
        at = ids.get_indexer(id_keys(fixes["sample_id"]))
        labels = fixes["new_label"].astype(new["label"].dtype).to_numpy()
        new.iloc[at, list(new.columns).index("label")] = labels
    new = new[~ids.isin(id_keys(by_action["remove"]["sample_id"]))]

    adds = by_action["add"]
    if len(adds):
        added_ids = id_keys(adds["sample_id"])
        clash = sorted(added_ids[added_ids.isin(ids)].tolist())
        if clash:
            raise DataValidationError(
                f"Expected added samples to be new, but ids {describe_items(clash)} are "
                "already in the parent version."
            )
        added = pd.DataFrame(
            {
                column: (
                    adds[source].to_numpy()
                    if source in adds.columns
                    else np.full(len(adds), None, dtype=object)
                )
                for column, source in _add_sources(new.columns).items()
            }
        ).astype(new.dtypes.to_dict())
        new = pd.concat([new, added], ignore_index=True)
    return new.reset_index(drop=True)
