"""Stage 8: apply the label decisions as a new, immutable dataset version.

Two tasks around the new-version gate: ``build_candidate_version`` writes the decisions and the
candidate frame into the round folder only, and gives the candidate's content hash (the round
retrains on it while the gate runs); ``register_new_version`` stores the candidate as the
dataset's next version and records every decision in the catalog, after the gate passed.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from cartoflow.catalog import Catalog
from cartoflow.datasets import id_keys, pick
from cartoflow.report import label_change_counts
from cartoflow.versions import (
    Strategy,
    apply_decisions,
    decide,
    read_candidate,
    read_registered,
    read_version,
    register_version,
    write_candidate,
)
from cartoflow.workspace import Workspace, write_frame
from tasks.common import stopwatch


def _with_source_columns(
    annotated: pd.DataFrame, data: dict[str, Any], parent: pd.DataFrame, ws: Workspace
) -> pd.DataFrame:
    """Take text, group and (simulation only) true_label of new samples from the unlabeled
    version itself, not from the batch file a person may have edited."""
    new = ~annotated["id"].astype(object).isin(parent["id"].astype(object))
    if not new.any() or "unlabeled" not in data:
        return annotated
    source = read_registered(ws, f"{data['dataset']}.unlabeled", data["unlabeled"]["hash"])
    # Positions through object ids: mapping over Arrow strings runs in Python.
    at = id_keys(source["id"]).get_indexer(id_keys(annotated.loc[new, "id"]))
    out = annotated.copy()
    for column in ("text", "group", "true_label"):
        if column in source.columns:
            if column not in out.columns:
                out[column] = pd.Series(pd.NA, index=out.index, dtype=source[column].dtype)
            # None where the id is not in the unlabeled version
            out.loc[new, column] = pick(source[column].to_numpy(dtype=object), at)
    return out


@task(name="build-candidate-version")
def build_candidate_version(
    data: dict[str, Any],
    annotations: dict[str, Any],
    *,
    strategies: dict[str, Strategy],
    annotator: str,
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Decide per annotated sample (fix / remove / add / keep / skip) and build the candidate."""
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        parent_rec = Catalog(ws.catalog_path).find_version(data["dataset"], data["train"]["hash"])
        assert parent_rec is not None
        parent = read_version(parent_rec, workspace=ws)
        annotated = _with_source_columns(
            pd.read_parquet(ws.root / annotations["annotations"]), data, parent, ws
        )
        decisions = decide(annotated, parent, strategies=strategies, annotator=annotator)
        candidate = apply_decisions(parent, decisions)
        run_dir = ws.run_dir(round_id)
        decisions_path = write_frame(decisions, run_dir / "decisions.parquet")
        candidate_path = run_dir / "candidate_version.parquet"
        content = write_candidate(candidate, candidate_path)
    return {
        "decisions": str(decisions_path.relative_to(ws.root)),
        "candidate": str(candidate_path.relative_to(ws.root)),
        "hash": content,
        "rows": len(candidate),
        "parent": parent_rec.version,
        "changes": label_change_counts(decisions),
        "seconds": t["seconds"],
    }


@task(name="register-version")
def register_new_version(
    data: dict[str, Any], candidate: dict[str, Any], *, round_id: str, workspace: str
) -> dict[str, Any]:
    """Store the checked candidate as the next version and record every label decision."""
    ws = Workspace.resolve(workspace)
    catalog = Catalog(ws.catalog_path)
    with stopwatch() as t:
        # The content the gate checked and the model retrained on, or an error if it changed.
        frame = read_candidate(ws.root / candidate["candidate"], candidate["hash"])
        record = register_version(
            frame,
            workspace=ws,
            catalog=catalog,
            dataset=data["dataset"],
            parent=candidate["parent"],
            round_id=round_id,
            note=f"round {round_id}",
        )
        if catalog.decisions(round_id).empty:  # a resumed round does not record twice
            catalog.record_decisions(round_id, pd.read_parquet(ws.root / candidate["decisions"]))
    get_run_logger().info(
        "New version v%d (%d rows) from v%d: %s",
        record.version,
        record.rows,
        candidate["parent"],
        candidate["changes"],
    )
    return {
        "version": record.version,
        "hash": record.hash,
        "file": record.file,
        "rows": record.rows,
        "seconds": t["seconds"],
    }


@task(name="promote-version")
def promote_version(data: dict[str, Any], version: dict[str, Any], *, workspace: str) -> None:
    """Make the new version the one the next round and the nightly analysis start from."""
    ws = Workspace.resolve(workspace)
    Catalog(ws.catalog_path).promote(data["dataset"], int(version["version"]))
