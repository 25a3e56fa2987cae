"""The ablation experiment as a Prefect flow. Wiring only: every stage is a task in tasks/.

load -> gate -> train baseline with capture -> gate -> metrics -> gate -> pools -> gate ->
expansion candidates -> simulated answers + variant training sets -> initial models ->
(variant x seed trainings, in parallel) -> summary, chart, report

Variants run on a thread pool of two workers: each training uses ``TrainConfig.num_threads``
torch threads (default 1; the count is per thread), so two workers fill two cores without
oversubscribing them. Runs are deterministic for their seed (see :mod:`cartoflow.ablation`).
"""

from __future__ import annotations

from typing import Any, cast

from prefect import flow
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from cartoflow.ablation import AblationConfig
from tasks.ablation import (
    current_ablation_id,
    prepare_variants,
    seed_models,
    train_variant,
    write_ablation_report,
)
from tasks.data import load_data
from tasks.expansion import select_expansion_candidates
from tasks.gates import gate_dataset, gate_dynamics, gate_metrics, gate_pools, warm_up_quality
from tasks.metrics import compute_sample_metrics
from tasks.pools import select_sample_pools
from tasks.rounds import resolve_workspace
from tasks.train import train_model

MAX_WORKERS = 2
"""Variant trainings at once (one torch thread each by default)."""


# The runner's generic parameter is its future type; Prefect's decorator stub wants the base one.
_RUNNER = cast(TaskRunner[Any], ThreadPoolTaskRunner(max_workers=MAX_WORKERS))


@flow(name="ablation", task_runner=_RUNNER)
def ablation(
    config: AblationConfig | None = None,
    workspace: str | None = None,
    ablation_id: str | None = None,
) -> dict[str, Any]:
    """Run the ablation; return its report (also ``runs/<ablation id>/ablation.{json,md,png}``)."""
    config = config or AblationConfig()
    if config.quality_gates:
        warm_up_quality()
    ws = resolve_workspace(workspace)
    aid = current_ablation_id(ablation_id)
    round_config = config.round_config()
    gates = config.quality_gates

    data = load_data(round_config, round_id=aid, workspace=ws)
    config.check_splits(list(data))  # now, not after the baseline has trained
    gate_dataset(
        data, min_class_share=config.min_class_share, round_id=aid, workspace=ws, enabled=gates
    )
    baseline = train_model(
        data,
        config.train,
        train_hash=data["train"]["hash"],
        eval_hash=data["eval"]["hash"],
        role="baseline",
        round_id=aid,
        workspace=ws,
    )
    gate_dynamics(baseline, round_id=aid, workspace=ws, enabled=gates)
    metrics = compute_sample_metrics(data, baseline, name="baseline", round_id=aid, workspace=ws)
    gate_metrics(data, metrics, round_id=aid, workspace=ws, enabled=gates)
    pools = select_sample_pools(
        data, metrics, config.pools, seed=config.seed, round_id=aid, workspace=ws
    )
    gate_pools(
        data, pools, budgets=round_config.pools.budgets(), round_id=aid, workspace=ws, enabled=gates
    )
    expansion = (
        select_expansion_candidates(
            data, baseline, pools, config.expansion, round_id=aid, workspace=ws
        )
        if config.needs_expansion()
        else None
    )
    plan = prepare_variants(data, pools, expansion, config, round_id=aid, workspace=ws)

    seeds = config.seed_values()
    inits = seed_models(data, config.train, seeds=seeds)
    futures = [
        train_variant.submit(
            data,
            plan["variants"][name],
            config.train,
            inits[seed],
            eval_hash=data["eval"]["hash"],
            seed=seed,
            round_id=aid,
            workspace=ws,
        )
        for name in config.variants
        for seed in seeds
    ]
    runs = [future.result() for future in futures]
    return write_ablation_report(data, config, pools, plan, runs, round_id=aid, workspace=ws)
