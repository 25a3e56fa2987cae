"""Stages 2 and 9: train the classifier with training-dynamics capture.

Cached by content (dataset hash, eval hash, training config, role, round), so a suspended round
that Prefect re-runs from the top does not train again. A training stops at its next batch when
a gate of its round fails beside it (``request_stop`` in tasks/common.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import queue
import threading
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

from cartoflow.train import EpochStats, TrainConfig, save_model, train_classifier
from cartoflow.versions import read_candidate, read_registered
from cartoflow.workspace import Workspace, write_json
from tasks.common import artifact_key, content_key, stop_requested, stopwatch


class _Progress:
    """The training's progress artifact (0-100), posted from a thread of its own.

    Creating the artifact and updating it after every epoch are API calls of about 50 ms each
    that the training would otherwise wait for. Updates queued while one is being posted are
    merged into the latest. :meth:`close` waits until the last one is posted.
    """

    def __init__(self, *, key: str, description: str, logger: Any) -> None:
        self._logger = logger
        self._updates: queue.SimpleQueue[float | None] = queue.SimpleQueue()
        context = contextvars.copy_context()  # the task run the artifact belongs to
        self._thread = threading.Thread(  # a daemon: a training that never closes it can exit
            target=context.run,
            args=(self._post, key, description),
            name=f"progress-{key}",
            daemon=True,
        )
        self._thread.start()

    def _post(self, key: str, description: str) -> None:
        try:
            artifact = create_progress_artifact(progress=0.0, key=key, description=description)
            closing = False
            while not closing:
                waiting = [self._updates.get()]
                while not self._updates.empty():  # those waiting: only the latest is posted
                    waiting.append(self._updates.get())
                closing = waiting[-1] is None
                values = [value for value in waiting if value is not None]
                if values:
                    update_progress_artifact(artifact, progress=values[-1])
        except Exception as exc:  # progress is for people watching; the training goes on
            self._logger.warning("The progress artifact %s was not updated: %s", key, exc)

    def update(self, progress: float) -> None:
        self._updates.put(min(max(progress, 0.0), 100.0))

    def close(self) -> None:
        self._updates.put(None)
        self._thread.join()


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
    progress = _Progress(
        key=artifact_key("round", round_id, role, "training"),
        description=f"Training the {role} model ({config.epochs} epochs)",
        logger=logger,
    )

    def on_epoch(stats: EpochStats) -> None:
        progress.update(100.0 * (int(stats["epoch"]) + 1) / config.epochs)
        logger.info(
            "%s epoch %d/%d: %s",
            role,
            int(stats["epoch"]) + 1,
            config.epochs,
            ", ".join(f"{k}={v:.4f}" for k, v in stats.items() if isinstance(v, float)),
        )

    with stopwatch() as t, contextlib.closing(progress):
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
