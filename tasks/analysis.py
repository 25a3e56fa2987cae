"""Nightly re-analysis: score the current dataset version and compare with the last analysis."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from prefect import task
from prefect.deployments import run_deployment
from prefect.logging import get_run_logger

from cartoflow.analysis import label_drift, new_candidates, region_changes, side_by_side
from cartoflow.catalog import Catalog
from cartoflow.config import NightlyConfig
from cartoflow.errors import CartoflowError
from cartoflow.versions import read_registered, read_version
from cartoflow.workspace import Workspace, write_json
from tasks.common import artifact_key, png_data_url, publish_markdown, stopwatch


@task(name="current-version")
def current_data(dataset: str, *, workspace: str) -> dict[str, Any]:
    """The dataset's current (newest promoted) version and its eval set, as ``load_data`` gives."""
    ws = Workspace.resolve(workspace)
    catalog = Catalog(ws.catalog_path)
    train = catalog.current_version(dataset) or catalog.latest_version(dataset)
    eval_set = catalog.latest_version(f"{dataset}.eval")
    if train is None or eval_set is None:
        raise CartoflowError(
            f"The workspace {ws.root} has no dataset {dataset!r} yet. Run a round first "
            "(`cartoflow round ...`), which registers the dataset and its eval set."
        )
    labels = json.loads((ws.dataset_dir(dataset) / "labels.json").read_text(encoding="utf-8"))
    return {
        "dataset": dataset,
        "label_names": list(labels["names"]),
        "train": {"version": train.version, "hash": train.hash, "file": train.file},
        "eval": {"version": eval_set.version, "hash": eval_set.hash, "file": eval_set.file},
    }


@task(name="previous-analysis")
def previous_analysis(dataset: str, *, analysis_id: str, workspace: str) -> dict[str, Any] | None:
    """The last analysis before this one, if any."""
    ws = Workspace.resolve(workspace)
    return Catalog(ws.catalog_path).latest_analysis(dataset, before=analysis_id)


@task(name="compare-analyses")
def compare_analyses(
    data: dict[str, Any],
    metrics: dict[str, Any],
    pools: dict[str, Any],
    previous: dict[str, Any] | None,
    *,
    analysis_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Region moves, new relabel candidates, label drift, and both data maps side by side."""
    ws = Workspace.resolve(workspace)
    catalog = Catalog(ws.catalog_path)
    out = ws.run_dir(analysis_id)
    with stopwatch() as t:
        current_metrics = pd.read_parquet(ws.root / metrics["metrics"])
        current_pools = pd.read_parquet(ws.root / pools["pools"])
        labels_now = read_registered(ws, data["dataset"], data["train"]["hash"])["label"]
        prev_metrics = prev_pools = labels_before = None
        if previous is not None:
            prev_metrics = pd.read_parquet(ws.root / previous["metrics"])
            prev_pools = pd.read_parquet(ws.root / previous["pools"])
            prev_record = catalog.find_version(data["dataset"], previous["hash"])
            if previous["hash"] == data["train"]["hash"]:
                labels_before = labels_now  # the same version: no need to read it again
            elif prev_record is not None:
                labels_before = read_version(prev_record, workspace=ws)["label"]
        fresh = new_candidates(prev_pools, current_pools, pool="relabel")
        comparison: dict[str, Any] = {
            "analysis_id": analysis_id,
            "previous": previous["analysis_id"] if previous else None,
            "version": data["train"]["version"],
            "previous_version": previous["version"] if previous else None,
            "pools": pools["counts"],
            "relabel": int(pools["counts"].get("relabel", 0)),
            "new_relabel_candidates": len(fresh),
            "new_relabel_examples": fresh[:20],
            "regions": metrics["regions"],
            "region_changes": (
                region_changes(prev_metrics, current_metrics) if prev_metrics is not None else None
            ),
            "label_drift": label_drift(labels_before, labels_now, label_names=data["label_names"]),
        }
        maps = [("tonight", ws.root / metrics["data_map"])]
        if previous is not None:
            maps.insert(0, ("previous", ws.root / previous["run_dir"] / "analysis/data_map.png"))
        maps = [(title, image) for title, image in maps if image.exists()]
        both = side_by_side(
            [image for _, image in maps], out / "data_maps.png", titles=[t for t, _ in maps]
        )
        comparison["files"] = {
            "data_maps": str(both.relative_to(ws.root)),
            "metrics": metrics["metrics"],
            "pools": pools["pools"],
        }
        path = write_json(out / "comparison.json", comparison)
    publish_markdown(
        _markdown(comparison, both),
        key=artifact_key("nightly", data["dataset"]),
        description=f"Nightly re-analysis of {data['dataset']} v{data['train']['version']}",
    )
    get_run_logger().info(
        "Analysis %s: relabel pool %d (%d new); report %s",
        analysis_id,
        comparison["relabel"],
        len(fresh),
        path,
    )
    return {**comparison, "report": str(path.relative_to(ws.root)), "seconds": t["seconds"]}


def _markdown(comparison: dict[str, Any], image: Any) -> str:
    changes = comparison["region_changes"]
    drift = comparison["label_drift"]
    lines = [
        f"# Nightly re-analysis `{comparison['analysis_id']}`",
        "",
        f"Version v{comparison['version']}"
        + (
            f", compared with analysis `{comparison['previous']}` "
            f"(v{comparison['previous_version']})"
            if comparison["previous"]
            else " (first analysis: nothing to compare with)"
        ),
        "",
        "| pool | samples |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in comparison["pools"].items()],
        "",
        f"**New relabel candidates:** {comparison['new_relabel_candidates']}",
    ]
    if changes:
        lines += [
            "",
            f"**Samples that changed region:** {changes['changed']} of {changes['compared']}",
            "",
            *[f"- {k}: {v}" for k, v in changes["transitions"].items()],
        ]
    if drift["total_variation"] is not None:
        lines += ["", f"**Label drift** (total variation): {drift['total_variation']:.4f}"]
    lines += ["", f"![data maps]({png_data_url(image)})"]
    return "\n".join(lines) + "\n"


@task(name="record-analysis")
def record_analysis(
    data: dict[str, Any],
    trained: dict[str, Any],
    metrics: dict[str, Any],
    pools: dict[str, Any],
    comparison: dict[str, Any],
    *,
    analysis_id: str,
    workspace: str,
) -> None:
    ws = Workspace.resolve(workspace)
    Catalog(ws.catalog_path).add_analysis(
        {
            "analysis_id": analysis_id,
            "dataset": data["dataset"],
            "version": data["train"]["version"],
            "hash": data["train"]["hash"],
            "run_dir": str(ws.run_dir(analysis_id).relative_to(ws.root)),
            "dynamics": trained["dynamics"],
            "metrics": metrics["metrics"],
            "pools": pools["pools"],
            "relabel": comparison["relabel"],
            "report": comparison["report"],
        }
    )


@task(name="trigger-round")
def trigger_round(
    config: NightlyConfig, comparison: dict[str, Any], *, workspace: str
) -> str | None:
    """Start an active-learning round through its deployment when the relabel pool is large."""
    logger = get_run_logger()
    if config.relabel_trigger == 0 or comparison["relabel"] <= config.relabel_trigger:
        logger.info(
            "Relabel pool %d is within the trigger %d: no round started.",
            comparison["relabel"],
            config.relabel_trigger,
        )
        return None
    round_config = config.round.model_copy(
        update={"dataset": config.dataset, "start_version": comparison["version"]}
    )
    run = run_deployment(
        config.round_deployment,
        parameters={"config": round_config.model_dump(mode="json"), "workspace": workspace},
        timeout=0,  # start it and return: the round waits for people on its own
        as_subflow=False,
    )
    logger.warning(
        "Relabel pool %d is over the trigger %d: started round %s (%s).",
        comparison["relabel"],
        config.relabel_trigger,
        run.name,
        run.id,
    )
    return str(run.id)
