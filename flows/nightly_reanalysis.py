"""Nightly re-analysis of a dataset's current version. Wiring only: stages are tasks in tasks/.

current version -> (retrain with capture | reuse last dynamics) -> metrics -> pools ->
compare with the last analysis -> record -> start a round if the relabel pool is large
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from cartoflow.config import NightlyConfig
from tasks.analysis import (
    compare_analyses,
    current_data,
    previous_analysis,
    record_analysis,
    trigger_round,
)
from tasks.gates import gate_dynamics, gate_metrics, gate_pools
from tasks.metrics import compute_sample_metrics
from tasks.pools import select_sample_pools
from tasks.rounds import resolve_workspace, round_id_for
from tasks.train import train_model


@flow(name="nightly-reanalysis")
def nightly_reanalysis(
    config: NightlyConfig | None = None, workspace: str | None = None
) -> dict[str, Any]:
    """Score the current version again and publish what changed since the last analysis."""
    config = config or NightlyConfig()
    ws = resolve_workspace(workspace)
    aid = "nightly-" + round_id_for(flow_run.scheduled_start_time, flow_run.id)
    common = {"round_id": aid, "workspace": ws}

    data = current_data(config.dataset, workspace=ws)
    previous = previous_analysis(config.dataset, analysis_id=aid, workspace=ws)
    reuse = previous is not None and previous["hash"] == data["train"]["hash"]
    if reuse and previous is not None:
        trained = {"train_hash": previous["hash"], "dynamics": previous["dynamics"]}
    else:
        trained = train_model(
            data,
            config.train,
            train_hash=data["train"]["hash"],
            eval_hash=data["eval"]["hash"],
            role="analysis",
            **common,
        )
        gate_dynamics(trained, **common)
    metrics = compute_sample_metrics(data, trained, name="analysis", **common)
    gate_metrics(data, metrics, **common)
    pools = select_sample_pools(data, metrics, config.pools, **common)
    gate_pools(data, pools, budgets=config.pools.budgets(), **common)
    comparison = compare_analyses(data, metrics, pools, previous, analysis_id=aid, workspace=ws)
    record_analysis(data, trained, metrics, pools, comparison, analysis_id=aid, workspace=ws)
    comparison["triggered_round"] = trigger_round(config, comparison, workspace=ws)
    comparison["retrained"] = not reuse
    return comparison
