"""Stages 10 and 11: compare baseline and retrained models, and write the round report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import task
from prefect.client.orchestration import get_client
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from cartoflow.catalog import Catalog
from cartoflow.report import compare_evals, distribution_summary, render_markdown
from cartoflow.workspace import Workspace, write_json
from tasks.common import artifact_key, publish_markdown, stopwatch


@task(name="compare")
def compare_models(
    data: dict[str, Any],
    baseline: dict[str, Any],
    retrained: dict[str, Any],
    metrics_before: dict[str, Any],
    metrics_after: dict[str, Any],
    *,
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Eval deltas per metric and class, and the variability of the whole set before / after.

    The figure of the two distributions is :func:`tasks.figures.draw_before_after`.
    """
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        comparison = compare_evals(
            baseline["eval"], retrained["eval"], label_names=data["label_names"]
        )
        columns = ["variability"]
        before = pd.read_parquet(ws.root / metrics_before["metrics"], columns=columns)
        after = pd.read_parquet(ws.root / metrics_after["metrics"], columns=columns)
    return {
        "comparison": comparison,
        "variability": {
            "before": distribution_summary(before["variability"]),
            "after": distribution_summary(after["variability"]),
        },
        "seconds": t["seconds"],
    }


@task(name="report")
def write_report(report: dict[str, Any], *, round_id: str, workspace: str) -> str:
    """Write ``report.json`` and ``report.md``, publish the markdown, and close the round."""
    ws = Workspace.resolve(workspace)
    now = datetime.now(UTC)
    report = {**report, "created_at": now.isoformat(timespec="seconds")}
    if flow_run.id:  # the flow's own wall time, without interpreter and API start-up
        with get_client(sync_client=True) as client:
            started = client.read_flow_run(flow_run.id).start_time
        if started is not None:
            report["flow_seconds"] = round((now - started).total_seconds(), 3)
    out = ws.run_dir(round_id)
    path = write_json(out / "report.json", report)
    markdown = render_markdown(report)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    publish_markdown(
        markdown, key=artifact_key("round", round_id, "report"), description="Round report"
    )
    Catalog(ws.catalog_path).update_round(
        round_id,
        state=report["state"],
        reason=report.get("reason"),
        version_out=report.get("version_out"),
        timings=report.get("timings"),
        report=str(path.relative_to(ws.root)),
    )
    get_run_logger().info("Round %s %s; report at %s", round_id, report["state"], path)
    return str(path)
