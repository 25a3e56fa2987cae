"""One active-learning round, as a Prefect flow. Wiring only: every stage is a task in tasks/.

load -> gate -> train with capture -> gate -> metrics -> gate -> pools -> gate -> export batch
-> wait for people -> gate -> import labels -> candidate version -> gate -> register version
-> retrain with capture -> gate -> metrics -> compare -> model gate -> report

Work that does not feed the next stage runs beside it, on the core the training's single torch
thread leaves free: the near-duplicate scans (conflict pool, expansion eligibility) need only the
texts and run beside the baseline training; the expansion's embeddings need only the baseline
model and are made beside the metrics and pools stages, in a helper process at a lower CPU
priority (cartoflow/embedder.py); the Data Docs pages of the gates so far are rendered while
the model retrains. The figures are drawn in helper processes (tasks/figures.py): the retrained
data map and the before / after figure beside the round's last stages; the baseline's data map
and the batch's artifacts (its summary shows that map) beside the stages after the batch when
people review it (they are asked once both are there), and while the model retrains when the
review is simulated (nobody reads them sooner).

A gate only reads, so every gate but the model gate validates beside the next stage, which
only writes new files into the round folder (``GateRuns.beside`` in tasks/gates.py): the
dataset gate beside the baseline training, the dynamics gates beside the metrics, the metrics
gate beside the pools, the pools gate beside the expansion, the annotations gate beside the
label import and the candidate version, the new-version gate beside the retraining (which
trains on the candidate: same content, same hash as the version it becomes). Every gate has
passed before the round hands anything on: the batch people see, the registered version (and
the label decisions recorded with it), the promotion and the report. (The figures are
diagnostics: drawn and shown as soon as their inputs exist.) A failed gate stops the round
with its own error, also when the stage beside it failed on the rows the gate names, and asks
a training beside it to stop at its next batch (``request_stop`` in tasks/common.py), so a
bad dataset or candidate fails the round in seconds, not after a whole training.
"""

from __future__ import annotations

from typing import Any

from prefect import Flow, flow
from prefect.client.schemas.objects import FlowRun
from prefect.futures import PrefectFuture
from prefect.states import State

from cartoflow.config import RoundConfig
from tasks.annotation import export_annotation_batch, import_labels, publish_batch
from tasks.data import load_data
from tasks.expansion import (
    embed_for_expansion,
    find_expansion_eligible,
    select_conflict_pool,
    select_expansion_candidates,
    warm_up_expansion,
)
from tasks.figures import draw_before_after, draw_data_map, warm_up_figures
from tasks.gates import (
    GateRuns,
    gate_annotations,
    gate_dataset,
    gate_dynamics,
    gate_metrics,
    gate_model,
    gate_new_version,
    gate_pools,
    render_data_docs,
    warm_up_quality,
)
from tasks.metrics import compute_sample_metrics
from tasks.pools import select_sample_pools
from tasks.report import compare_models, write_report
from tasks.review import wait_for_review
from tasks.rounds import (
    current_round_id,
    mark_failed,
    resolve_workspace,
    round_id_for,
    start_round,
    timings_of,
)
from tasks.train import train_model
from tasks.versioning import build_candidate_version, promote_version, register_new_version


def _on_failure(flow: Flow[..., Any], run: FlowRun, state: State[Any]) -> None:
    params = run.parameters or {}
    round_id = params.get("round_id") or round_id_for(run.expected_start_time, run.id)
    mark_failed(params.get("workspace"), round_id, state.message or "failed")


def _map_and_summary(
    before: dict[str, Any], batch: dict[str, Any], common: dict[str, Any]
) -> tuple[PrefectFuture[dict[str, Any]], PrefectFuture[dict[str, Any]]]:
    """Submit the baseline's data map and the batch artifacts that show it."""
    data_map = draw_data_map.submit(before, **common)
    return data_map, publish_batch.submit(batch, data_map, **common)


@flow(name="active-learning-round", on_failure=[_on_failure], on_crashed=[_on_failure])
def active_learning_round(
    config: RoundConfig | None = None,
    workspace: str | None = None,
    round_id: str | None = None,
) -> dict[str, Any]:
    """Run one round and return its report (also written to ``runs/<round>/report.json``)."""
    config = config or RoundConfig()
    if config.quality_gates:
        warm_up_quality()
    ws = resolve_workspace(workspace)
    rid = start_round(config, round_id=current_round_id(round_id), workspace=ws)
    common = {"round_id": rid, "workspace": ws}
    checks = {**common, "enabled": config.quality_gates}
    gates = GateRuns(rid)  # some validate beside the next stage; settled before a hand-on

    data = load_data(config, **common)
    dataset_gate = gate_dataset.submit(data, min_class_share=config.min_class_share, **checks)
    # The figure and embedding helpers import matplotlib and torch beside the baseline training.
    warm_up_figures()
    if config.expand:
        warm_up_expansion()
    train_hash = data["train"]["hash"]
    threshold = config.near_duplicate_threshold
    conflict_run = (
        select_conflict_pool.submit(data, train_hash=train_hash, threshold=threshold, **common)
        if config.conflicts
        else None
    )
    expand = config.expand and "unlabeled" in data
    eligible_run = (
        find_expansion_eligible.submit(
            data,
            train_hash=train_hash,
            unlabeled_hash=data["unlabeled"]["hash"],
            threshold=config.expansion.text_dedup_threshold,
            wait_for=[conflict_run] if conflict_run else None,  # one side core: one at a time
            **common,
        )
        if expand
        else None
    )
    with gates.beside(dataset_gate):  # a failed dataset gate stops it at its next batch
        baseline = train_model(
            data,
            config.train,
            train_hash=train_hash,
            eval_hash=data["eval"]["hash"],
            role="baseline",
            **common,
        )
    embedded_run = (  # needs the model, no pool: beside the metrics and pools stages
        embed_for_expansion.submit(
            data, baseline, unlabeled_hash=data["unlabeled"]["hash"], **common
        )
        if expand
        else None
    )
    with gates.beside(gate_dynamics.submit(baseline, **checks)):
        before = compute_sample_metrics(data, baseline, name="baseline", draw_map=False, **common)
    # People see the baseline's data map in the batch summary, so it is drawn now when they
    # review. A simulated review reads neither: both then wait for the retraining, on the core
    # its single torch thread leaves free, instead of taking CPU from the stages in between.
    people_review = config.simulated_column is None
    map_before = draw_data_map.submit(before, **common) if people_review else None
    with gates.beside(gate_metrics.submit(data, before, **checks)):
        pools = select_sample_pools(data, before, config.pools, seed=config.seed, **common)
    with gates.beside(gate_pools.submit(data, pools, budgets=config.pools.budgets(), **checks)):
        conflict = conflict_run.result() if conflict_run else None
        expansion = (
            select_expansion_candidates(
                data,
                baseline,
                pools,
                config.expansion,
                eligible=eligible_run.result() if eligible_run else None,
                embeddings=embedded_run.result() if embedded_run else None,
                **common,
            )
            if expand
            else None
        )
    gates.settled()  # the batch goes to people only from checked stages
    batch = export_annotation_batch(
        data,
        pools,
        batch_pools=config.batch_pools,
        conflict=conflict,
        expansion=expansion,
        near_duplicate_threshold=config.near_duplicate_threshold,
        **common,
    )

    # The summary shows the data map, still being drawn: sent beside the next stages.
    published = (
        publish_batch.submit(batch, map_before, **common) if map_before is not None else None
    )
    review = wait_for_review(config, data, batch, published=published, **common)
    report: dict[str, Any] = {
        "round_id": rid,
        "dataset": data["dataset"],
        "version_in": data["train"]["version"],
        "version_out": None,
        "annotator": review.reviewer or config.annotator,
        "notes": review.notes,
        "pools": pools["counts"],
        "conflict_samples": conflict["rows"] if conflict else 0,
        "expansion_candidates": expansion["counts"] if expansion else {},
        "batch": batch["counts"],
        "batch_rows": batch["rows"],
        "baseline": baseline["eval"],
        "files": {"batch": batch["csv"]},
    }
    if not review.approve:
        if published is None:
            map_before, published = _map_and_summary(before, batch, common)
        report["files"]["data_map_before"] = map_before.result()["data_map"]
        report |= (
            {"state": "rejected", "reason": f"batch rejected by {report['annotator']}"}
            if batch["rows"]
            else {"state": "nothing_to_review", "reason": "the pools selected no sample"}
        )
        report["timings"] = timings_of(load=data, baseline=baseline, metrics=before, pools=pools)
        report["gates"] = gates.settled()
        if config.quality_gates:
            report["files"]["data_docs"] = render_data_docs(**common)
        published.result()
        write_report(report, **common)
        return report

    labels = {"filled_path": review.batch_path or None, "inline_labels": review.labels}
    with gates.beside(gate_annotations.submit(data, batch, **labels, **checks)):
        annotations = import_labels(data, batch, **labels, **common)
        candidate = build_candidate_version(  # a file in the round folder, not yet a version
            data,
            annotations,
            strategies={**config.strategies, "relabel": review.strategy},
            annotator=report["annotator"],
            **common,
        )
    gates.append(gate_new_version.submit(data, candidate, **checks))
    # The model retrains on the candidate (same content, same hash as the version it becomes)
    # while its gates finish and it is registered; a failed gate stops the training at its
    # next batch and the round ends with the gate's error.
    retraining = train_model.submit(
        data,
        config.train,
        train_hash=candidate["hash"],
        eval_hash=data["eval"]["hash"],
        role="retrained",
        candidate=candidate["candidate"],
        **common,
    )
    with gates.training_beside(retraining):
        gates.settled()  # only a checked version is registered
        version = register_new_version(data, candidate, **common)
        if published is None:  # a simulated review: drawn and sent while the model retrains
            map_before, published = _map_and_summary(before, batch, common)
        # The pages of the gates so far are rendered while the model retrains.
        docs_so_far = render_data_docs.submit(**common) if config.quality_gates else None
        retrained = retraining.result()
    with gates.beside(gate_dynamics.submit(retrained, **checks)):
        after = compute_sample_metrics(data, retrained, name="retrained", draw_map=False, **common)
    map_after = draw_data_map.submit(after, **common)
    before_after = draw_before_after.submit(before, after, **common)
    compared = compare_models(data, baseline, retrained, before, after, **common)
    model_gate = gate_model(baseline, retrained, tolerance=config.model_gate_tolerance, **checks)
    gates.append(model_gate)
    checked = gates.settled()  # promoted only when every gate passed
    if model_gate["success"]:
        promote_version(data, version, workspace=ws)
    docs = render_data_docs(**common, wait_for=[docs_so_far]) if docs_so_far else None
    figures = [map_before.result(), map_after.result(), before_after.result()]
    report |= {
        "version_out": version["version"],
        "promoted": model_gate["success"],
        "label_changes": candidate["changes"],
        "comparison": compared["comparison"],
        "variability": compared["variability"],
        "gates": checked,
        "timings": timings_of(
            load=data,
            baseline=baseline,
            metrics=before,
            pools=pools,
            batch=batch,
            annotations=annotations,
            conflict=conflict,
            expansion_dedup=eligible_run.result() if eligible_run else None,
            expansion_embed=embedded_run.result() if embedded_run else None,
            expansion=expansion,
            new_version=candidate,
            retrained=retrained,
            metrics_after=after,
            figures={"seconds": sum(f.get("plot_seconds", f["seconds"]) for f in figures)},
            compare=compared,
            gates={"seconds": sum(g["seconds"] for g in checked)},
        ),
        "state": "completed" if model_gate["success"] else "not_promoted",
        "reason": model_gate.get("reason"),
    }
    report["files"] |= {
        "data_map_before": figures[0]["data_map"],
        "data_map_after": figures[1]["data_map"],
        "variability_before_after": figures[2]["plot"],
        "decisions": candidate["decisions"],
    }
    if docs:
        report["files"]["data_docs"] = docs
    published.result()  # sent beside the stages since the batch; raises if it failed
    write_report(report, **common)
    return report
