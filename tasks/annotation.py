"""Stages 5 and 7: export the annotation batch for people, and import what they decided."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from cartoflow.annotate import (
    annotations_from_mapping,
    export_batch,
    read_annotations,
)
from cartoflow.datasets import LabelMap
from cartoflow.neardup import dedup_batch
from cartoflow.versions import read_registered
from cartoflow.workspace import Workspace, write_frame, write_text
from tasks.common import (
    artifact_key,
    content_key,
    png_data_url,
    publish_markdown,
    stopwatch,
    table_preview,
)

TOP_EXAMPLES = 5


def batch_markdown(
    batch: pd.DataFrame, *, csv_path: Path, data_map: Path | None, round_id: str
) -> str:
    """What a reviewer sees before approving: counts, top examples, the data map, what to do."""
    counts = batch["pool"].value_counts()
    lines = [
        f"# Annotation batch for round `{round_id}`",
        "",
        # one line per paragraph: the Prefect UI turns every line break into a break
        f"**{len(batch)} samples** to review. Fill the `new_label` column of `{csv_path}` with a "
        "class name, `<remove>` to drop the sample, or leave it empty (or `<skip>`) to keep the "
        "current label. Then approve this run in the form below (or enter a few labels inline "
        'as a JSON object `{"id": "label"}`).',
        "",
        "| pool | samples |",
        "|---|---:|",
        *[f"| {pool} | {n} |" for pool, n in counts.items()],
    ]
    for pool, rows in batch.groupby("pool", sort=False):
        lines += [
            "",
            f"## Top of `{pool}`",
            "",
            "| id | text | label | suggested | rule |",
            "|---|---|---|---|---|",
        ]
        for row in rows.head(TOP_EXAMPLES).itertuples(index=False):
            text = str(row.text).replace("|", "\\|")[:80]
            lines.append(
                f"| {row.id} | {text} | {row.label} | {row.suggested_label} | {row.rule} |"
            )
    if data_map is not None:
        lines += ["", "## Data map", "", f"![data map]({png_data_url(data_map)})"]
    return "\n".join(lines) + "\n"


def _batch_rows(
    ws: Workspace,
    train: pd.DataFrame,
    pools: dict[str, Any],
    *,
    batch_pools: list[str],
    conflict: dict[str, Any] | None,
    expansion: dict[str, Any] | None,
    near_duplicate_threshold: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows to annotate, in priority order, and the frame their text comes from.

    Priority: conflict (one row per near-duplicate group) > the training pools > expansion
    candidates. A sample appears once, and no two rows are near-duplicates of each other.
    """
    selected = pd.read_parquet(ws.root / pools["pools"])
    selected = selected[selected["pool"].isin(batch_pools)][
        ["id", "pool", "rule", "suggested_label"]
    ]
    parts, source = [], train
    if conflict is not None and conflict["rows"]:
        groups = pd.read_parquet(ws.root / conflict["conflict_pool"])
        selected = selected[~selected["id"].astype(object).isin(groups["id"].astype(object))]
        first = groups.drop_duplicates("group")
        sizes = groups.groupby("group").size()
        parts.append(
            pd.DataFrame(
                {
                    "id": first["id"].to_numpy(),
                    "pool": "conflict",
                    "rule": [
                        f"{r}; label applies to all {sizes[g]} near-duplicates"
                        for r, g in zip(first["rule"], first["group"], strict=True)
                    ],
                    "suggested_label": "",
                }
            )
        )
    parts.append(selected.assign(suggested_label=selected["suggested_label"].astype("string")))
    if expansion is not None and expansion["rows"]:
        candidates = pd.read_parquet(ws.root / expansion["expansion"])
        parts.append(
            pd.DataFrame(
                {
                    "id": candidates["id"].astype(str),
                    "pool": candidates["pool"].astype(str),
                    "rule": candidates["rule"].astype(str),
                    "suggested_label": "",
                }
            )
        )
        extra = candidates[["id", "text", *(["group"] if "group" in candidates else [])]]
        source = pd.concat([train, extra.assign(label=pd.NA)], ignore_index=True)
    rows = pd.concat(parts, ignore_index=True)
    if len(rows) > 1:
        texts = source.set_index("id").loc[rows["id"], "text"].astype(str).tolist()
        rows = rows[dedup_batch(texts, threshold=near_duplicate_threshold)]
    return rows.reset_index(drop=True), source


@task(
    name="export-batch",
    cache_key_fn=content_key("pools", "batch_pools", "conflict", "expansion", "round_id"),
)
def export_annotation_batch(
    data: dict[str, Any],
    pools: dict[str, Any],
    *,
    batch_pools: list[str],
    conflict: dict[str, Any] | None = None,
    expansion: dict[str, Any] | None = None,
    near_duplicate_threshold: float = 0.8,
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Write ``batch.csv`` and ``batch.parquet``; ``publish_batch`` then tells the reviewers."""
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        rows, source = _batch_rows(
            ws,
            read_registered(ws, data["dataset"], data["train"]["hash"]),
            pools,
            batch_pools=batch_pools,
            conflict=conflict,
            expansion=expansion,
            near_duplicate_threshold=near_duplicate_threshold,
        )
        label_map = LabelMap(names=list(data["label_names"]))
        csv_path, parquet_path = export_batch(
            rows, source, ws.run_dir(round_id) / "batch", label_map=label_map
        )
        batch = pd.read_parquet(parquet_path)
    get_run_logger().info("Annotation batch: %d samples in %s", len(batch), csv_path)
    return {
        "csv": str(csv_path),
        "parquet": str(parquet_path),
        "rows": len(batch),
        "counts": {str(k): int(v) for k, v in batch["pool"].value_counts().items()},
        "conflict_pool": conflict["conflict_pool"] if conflict and conflict["rows"] else None,
        "seconds": t["seconds"],
    }


@task(name="publish-batch", cache_key_fn=content_key("batch", "data_map", "round_id"))
def publish_batch(
    batch: dict[str, Any], data_map: dict[str, Any], *, round_id: str, workspace: str
) -> dict[str, Any]:
    """Tell the reviewers: write ``batch_summary.md`` (counts, top examples, the data map, what
    to do) and publish it and the batch table as artifacts in the Prefect UI.

    Its own task, beside the stages after the batch: the data map it embeds is still being
    drawn when the batch is exported, and the artifacts (hundreds of KB) are sent while the
    round goes on when nobody waits for them; a round that waits for people waits for this
    first.

    Args:
        batch: ``export_annotation_batch``'s result.
        data_map: ``draw_data_map``'s result for the baseline (``data_map``: its PNG).

    Returns:
        ``summary`` (workspace-relative path of the markdown) and ``artifacts`` (their keys).
    """
    ws = Workspace.resolve(workspace)
    rows = pd.read_parquet(batch["parquet"])
    markdown = batch_markdown(
        rows,
        csv_path=Path(batch["csv"]),
        data_map=ws.root / data_map["data_map"],
        round_id=round_id,
    )
    # A file, not a result field: the summary embeds the data map (hundreds of KB), which would
    # otherwise travel through later tasks' parameters and cache keys.
    summary = write_text(ws.run_dir(round_id) / "batch_summary.md", markdown)
    keys = [artifact_key("round", round_id, "batch-summary")]
    publish_markdown(markdown, key=keys[0], description="What the reviewers are asked to approve")
    if batch["rows"]:
        keys.append(artifact_key("round", round_id, "batch"))
        table, shown = table_preview(rows.drop(columns=["new_label"]))
        create_table_artifact(
            table=table,
            key=keys[1],
            description="The annotation batch"
            + ("" if shown == len(rows) else f": its first {shown} of {len(rows)} rows")
            + f" (the whole batch: {batch['csv']})",
        )
    return {"summary": str(summary.relative_to(ws.root)), "artifacts": keys}


def _spread_to_groups(annotated: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Give every near-duplicate of an annotated conflict row the label its row received."""
    answered = annotated[annotated["pool"] == "conflict"][["id", "new_label"]]
    group_of = groups.set_index("id")["group"]
    label_of_group = pd.Series(
        answered["new_label"].to_numpy(), index=answered["id"].map(group_of).to_numpy()
    )
    members = groups[
        groups["group"].isin(label_of_group.index)
        & ~groups["id"].astype(object).isin(answered["id"].astype(object))
    ]
    spread = pd.DataFrame(
        {
            "id": members["id"].astype(str).to_numpy(),
            "pool": "conflict",
            "rule": "near-duplicate of an annotated conflict row",
            "new_label": members["group"].map(label_of_group).to_numpy(),
        }
    )
    return pd.concat([annotated, spread], ignore_index=True)


@task(name="import-labels")
def import_labels(
    data: dict[str, Any],
    batch: dict[str, Any],
    *,
    filled_path: str | None,
    inline_labels: dict[str, str],
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Read and validate the annotators' decisions; keep a copy in the round folder."""
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        label_map = LabelMap.from_json(
            (ws.dataset_dir(data["dataset"]) / "labels.json").read_text(encoding="utf-8")
        )
        batch_frame = pd.read_parquet(batch["parquet"])
        if inline_labels:
            annotations = annotations_from_mapping(inline_labels, batch_frame, label_map=label_map)
        else:
            annotations = read_annotations(
                Path(filled_path or batch["csv"]), batch=batch_frame, label_map=label_map
            )
        merged = batch_frame.drop(columns=["new_label"]).merge(
            annotations[["id", "new_label"]], on="id", how="inner"
        )
        if batch.get("conflict_pool"):
            merged = _spread_to_groups(merged, pd.read_parquet(ws.root / batch["conflict_pool"]))
        path = write_frame(merged, ws.run_dir(round_id) / "annotations.parquet")
    coverage = len(merged) / max(len(batch_frame), 1)
    get_run_logger().info(
        "Imported %d annotations (%.0f%% of the batch)", len(merged), 100 * coverage
    )
    return {
        "annotations": str(path.relative_to(ws.root)),
        "rows": len(merged),
        "coverage": coverage,
        "seconds": t["seconds"],
    }
