"""The ablation's own stages: build the variants, train them, summarise and publish.

Thin shells over :mod:`cartoflow.ablation`: paths in, paths out, content cache keys.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from cartoflow.ablation import (
    VARIANTS,
    AblationConfig,
    answer_questions,
    build_variant,
    initial_models,
    plot_ablation,
    prepare_inputs,
    render_markdown,
    report_records,
    summarise,
    train_and_evaluate,
)
from cartoflow.annotate import SimulatedAnnotator
from cartoflow.train_config import TrainConfig
from cartoflow.versions import read_registered
from cartoflow.workspace import (
    Workspace,
    check_name,
    frame_hash,
    write_atomic,
    write_frame,
    write_json,
)
from tasks.common import artifact_key, content_key, png_data_url, publish_markdown, stopwatch
from tasks.rounds import round_id_for


def current_ablation_id(explicit: str | None = None) -> str:
    """``ablation-<scheduled start>-<run id>``: stable when Prefect re-runs the flow run."""
    if explicit:
        return check_name(explicit, what="ablation id")
    return "ablation-" + round_id_for(flow_run.scheduled_start_time, flow_run.id)


@task(
    name="ablation-variants",
    cache_key_fn=content_key("pools", "expansion", "config", "round_id"),
    persist_result=True,
)
def prepare_variants(
    data: dict[str, Any],
    pools: dict[str, Any],
    expansion: dict[str, Any] | None,
    config: AblationConfig,
    *,
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Answer the relabel pool and the candidates (simulated), build every variant's training set.

    Writes ``runs/<ablation>/answers.parquet`` and, per variant, ``variants/<name>.parquet``
    (training set) and ``variants/<name>.decisions.parquet``.

    Returns:
        ``variants`` (name -> ``name``, ``title``, ``file``, ``hash``, ``rows``, ``changes``),
        ``candidates`` (candidates per seed pool, random control included), ``relabel``
        (relabel-pool size) and ``seconds``.

    Raises:
        DataValidationError: expansion variants without an unlabeled pool.
    """
    ws = Workspace.resolve(workspace)
    out = ws.run_dir(round_id)
    with stopwatch() as t:
        config.check_splits(list(data))
        base = read_registered(ws, data["dataset"], data["train"]["hash"])
        unlabeled = (
            read_registered(ws, f"{data['dataset']}.unlabeled", data["unlabeled"]["hash"])
            if config.needs_expansion()
            else None
        )
        inputs = prepare_inputs(
            base,
            pd.read_parquet(ws.root / pools["pools"]),
            expansion=pd.read_parquet(ws.root / expansion["expansion"]) if expansion else None,
            unlabeled=unlabeled,
            annotator=SimulatedAnnotator(
                column=config.annotator_column,
                error_rate=config.annotator_error_rate,
                seed=config.seed,
                label_names=list(data["label_names"]),
            ),
            random_size=config.random_size,
            random_seed=config.seed,
            with_random="random-expansion" in config.variants,
        )
        write_frame(
            pd.DataFrame({"id": inputs.answers.index, "new_label": inputs.answers.to_numpy()}),
            out / "answers.parquet",
        )
        annotator = f"simulated:{config.annotator_column}"
        variants: dict[str, Any] = {}
        for name in config.variants:
            built = build_variant(name, inputs, annotator=annotator)
            path = write_frame(built.frame, out / "variants" / f"{name}.parquet")
            write_frame(built.decisions, out / "variants" / f"{name}.decisions.parquet")
            variants[name] = {
                "name": name,
                "title": VARIANTS[name].title,
                "file": str(path.relative_to(ws.root)),
                "hash": frame_hash(built.frame),
                "rows": len(built.frame),
                "changes": built.changes,
            }
    candidates = {str(k): int(v) for k, v in inputs.candidates["seed_pool"].value_counts().items()}
    get_run_logger().info(
        "Variants %s; candidates %s; relabel pool %d",
        {n: v["rows"] for n, v in variants.items()},
        candidates,
        len(inputs.relabel_ids),
    )
    return {
        "variants": variants,
        "candidates": candidates,
        "relabel": len(inputs.relabel_ids),
        "seconds": t["seconds"],
    }


@task(name="initial-models", cache_policy=NO_CACHE, persist_result=False)
def seed_models(data: dict[str, Any], config: TrainConfig, *, seeds: list[int]) -> dict[int, Any]:
    """The untrained model of every seed, built one after another before the parallel runs.

    torch's random generator is process-global: built here, no other thread moves it while a
    model is initialised, so each parallel run equals a serial run with its seed.
    """
    return initial_models(config, num_classes=len(data["label_names"]), seeds=seeds)


@task(
    name="train-variant",
    cache_key_fn=content_key("variant", "eval_hash", "config", "seed", "round_id"),
    persist_result=True,
)
def train_variant(
    data: dict[str, Any],
    variant: dict[str, Any],
    config: TrainConfig,
    init: Any,
    *,
    eval_hash: str,
    seed: int,
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Train one variant with one seed (no dynamics) and score it on the eval set.

    Writes ``runs/<ablation>/variants/<name>/seed-<seed>.json``; returns it as a dict
    (``variant``, ``seed``, ``accuracy``, ``macro_f1``, ``per_class_f1``, ``rows``,
    ``seconds``).
    """
    ws = Workspace.resolve(workspace)
    frame = pd.read_parquet(ws.root / variant["file"])
    eval_frame = read_registered(ws, f"{data['dataset']}.eval", eval_hash)
    result = train_and_evaluate(
        frame,
        eval_frame,
        label_names=list(data["label_names"]),
        config=config,
        seed=seed,
        init=init,
    )
    result = {"variant": variant["name"], **result}
    write_json(ws.run_dir(round_id) / "variants" / variant["name"] / f"seed-{seed}.json", result)
    get_run_logger().info(
        "%s seed %d: accuracy %.4f, macro-F1 %.4f (%.1f s)",
        variant["name"],
        seed,
        result["accuracy"],
        result["macro_f1"],
        result["seconds"],
    )
    return result


@task(name="ablation-report")
def write_ablation_report(
    data: dict[str, Any],
    config: AblationConfig,
    pools: dict[str, Any],
    plan: dict[str, Any],
    runs: list[dict[str, Any]],
    *,
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Summarise the runs; write ``ablation.json``, ``ablation.md``, ``ablation.png``; publish.

    The markdown artifact embeds the chart; the file ``ablation.md`` links ``ablation.png``
    beside it.
    """
    ws = Workspace.resolve(workspace)
    out = ws.run_dir(round_id)
    with stopwatch() as t:
        table = pd.DataFrame(runs)
        changes = {name: v["changes"] for name, v in plan["variants"].items()}
        summary = summarise(table, changes=changes)
        answers = answer_questions(summary, sigmas=config.sigmas)
        chart = plot_ablation(summary, out / "ablation.png", title=f"Ablation {round_id}")
        files = {
            name: str((out / f"ablation.{name}").relative_to(ws.root))
            for name in ("json", "md", "png")
        }
        report: dict[str, Any] = {
            "ablation_id": round_id,
            "dataset": data["dataset"],
            "version": data["train"]["version"],
            "train_hash": data["train"]["hash"],
            "train_rows": data["train"]["rows"],
            "eval_rows": data["eval"]["rows"],
            "seeds": config.seed_values(),
            "annotator": (
                f"simulated from `{config.annotator_column}`, error rate "
                f"{config.annotator_error_rate:g}"
            ),
            "sigmas": config.sigmas,
            "pools": pools["counts"],
            "candidates": plan["candidates"],
            "variants": plan["variants"],
            "summary": report_records(summary),
            "answers": answers,
            "runs": runs,
            "config": config.model_dump(mode="json"),
            "files": files,
        }
        write_json(out / "ablation.json", report)
        markdown = render_markdown(report, image="ablation.png")
        write_atomic(out / "ablation.md", lambda tmp: tmp.write_text(markdown, encoding="utf-8"))
    publish_markdown(
        render_markdown(report, image=png_data_url(chart)),
        key=artifact_key("ablation", round_id),
        description=f"Ablation {round_id}: variants, mean ± std, the four questions",
    )
    logger = get_run_logger()
    for answer in answers:
        logger.info("%s %s", answer["question"], answer["answer"])
    return {**report, "seconds": t["seconds"]}
