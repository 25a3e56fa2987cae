"""Stages 2 and 9: train the classifier with training-dynamics capture.

Cached by content (dataset hash, eval hash, training config, role, round), so a suspended round
that Prefect re-runs from the top does not train again. A training stops at its next batch when
a gate of its round fails beside it (``request_stop`` in tasks/common.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

from cartoflow.train import EpochStats, TrainConfig, save_model, train_classifier
from cartoflow.versions import read_candidate, read_registered
from cartoflow.workspace import Workspace, write_json
from tasks.common import artifact_key, content_key, stop_requested, stopwatch


@task(
    name="train-with-capture",
    cache_key_fn=content_key("train_hash", "eval_hash", "config", "role", "round_id"),
    persist_result=True,
)
def train_model(
    data: dict[str, Any],
    config: TrainConfig,
    *,
    train_hash: str,
    eval_hash: str,
    role: str,
    round_id: str,
    workspace: str,
    candidate: str | None = None,
) -> dict[str, Any]:
    """Train on the version ``train_hash`` names, record dynamics, evaluate on the eval set.

    ``candidate`` (a workspace-relative file) trains on a candidate version with that hash that
    is not registered yet: the round retrains while the candidate's gate runs.

    Writes ``runs/<round>/<role>/{dynamics/, model.pt, eval.json, history.json}`` and returns
    their workspace-relative paths with the eval result and the seconds spent.
    """
    logger = get_run_logger()
    ws = Workspace.resolve(workspace)
    dataset = data["dataset"]
    train_frame = (
        read_candidate(ws.root / candidate, train_hash)
        if candidate
        else read_registered(ws, dataset, train_hash)
    )
    eval_frame = read_registered(ws, f"{dataset}.eval", eval_hash)
    names = list(data["label_names"])
    index = {name: i for i, name in enumerate(names)}
    out = ws.run_dir(round_id) / role
    progress_id = create_progress_artifact(
        progress=0.0,
        key=artifact_key("round", round_id, role, "training"),
        description=f"Training the {role} model ({config.epochs} epochs)",
    )

    def on_epoch(stats: EpochStats) -> None:
        done = 100.0 * (int(stats["epoch"]) + 1) / config.epochs
        update_progress_artifact(progress_id, progress=min(done, 100.0))
        logger.info(
            "%s epoch %d/%d: %s",
            role,
            int(stats["epoch"]) + 1,
            config.epochs,
            ", ".join(f"{k}={v:.4f}" for k, v in stats.items() if isinstance(v, float)),
        )

    with stopwatch() as t:
        result = train_classifier(
            train_frame["text"].tolist(),
            train_frame["label"].map(index).to_numpy(),
            num_classes=len(names),
            config=config,
            dynamics_dir=out / "dynamics",
            eval_texts=eval_frame["text"].tolist(),
            eval_labels=eval_frame["label"].map(index).to_numpy(),
            progress=on_epoch,
            stop=lambda: stop_requested(round_id),
            overwrite=True,  # cached by content: a re-run means the earlier one did not finish
        )
        save_model(result.model, out / "model.pt")
        assert result.eval is not None
        evaluation = result.eval.to_dict()
        write_json(out / "eval.json", evaluation)
        write_json(out / "history.json", result.history)
    logger.info(
        "%s model: eval accuracy %.4f, macro-F1 %.4f (%.1f s)",
        role,
        evaluation["accuracy"],
        evaluation["macro_f1"],
        t["seconds"],
    )
    rel = Path(out).relative_to(ws.root)
    return {
        "role": role,
        "train_hash": train_hash,
        "dir": str(rel),
        "dynamics": str(rel / "dynamics"),
        "model": str(rel / "model.pt"),
        "eval": json.loads(json.dumps(evaluation)),
        "epochs": config.epochs,
        "rows": len(train_frame),
        "seconds": t["seconds"],
    }
