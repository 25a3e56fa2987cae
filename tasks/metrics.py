"""Stage 3: per-sample training-dynamics metrics and the data map."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task
from prefect.logging import get_run_logger

from cartoflow.dynamics import read_dynamics
from cartoflow.metrics import compute_metrics
from cartoflow.versions import read_registered
from cartoflow.workspace import Workspace, write_frame
from tasks.common import artifact_key, content_key, publish_image, stopwatch


@task(
    name="metrics",
    cache_key_fn=content_key("trained", "round_id", "name", "draw_map"),
    persist_result=True,
)
def compute_sample_metrics(
    data: dict[str, Any],
    trained: dict[str, Any],
    *,
    round_id: str,
    name: str,
    workspace: str,
    draw_map: bool = True,
) -> dict[str, Any]:
    """Score every training sample from its dynamics; write ``metrics.parquet`` and a data map.

    ``seconds`` times the scores (read, compute, write); ``plot_seconds`` the data map. With
    ``draw_map=False`` there is no map (and no ``data_map`` / ``plot_seconds``): the round
    draws it in its own task (:func:`tasks.figures.draw_data_map`), beside the next stages.
    """
    logger = get_run_logger()
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        frame = read_registered(ws, data["dataset"], trained["train_hash"])
        names = list(data["label_names"])
        labels = frame["label"].map({n: i for i, n in enumerate(names)}).to_numpy(np.int64)
        dynamics = read_dynamics(ws.root / trained["dynamics"])
        metrics = compute_metrics(
            dynamics, ids=frame["id"].tolist(), labels=labels, label_names=names
        )
        out = ws.run_dir(round_id) / name
        metrics_path = write_frame(metrics, out / "metrics.parquet")
    regions = metrics["region"].value_counts().to_dict()
    logger.info("Metrics for %d samples; regions %s", len(metrics), regions)
    result = {
        "name": name,
        "metrics": str(metrics_path.relative_to(ws.root)),
        "regions": {str(k): int(v) for k, v in regions.items()},
        "variability_mean": float(metrics["variability"].mean()),
        "epochs": int(dynamics.num_epochs),
        "seconds": t["seconds"],
    }
    if not draw_map:
        return result
    from cartoflow.datamap import plot_data_map  # matplotlib: only when drawing here

    with stopwatch() as drawn:
        map_path = plot_data_map(
            metrics, out / "data_map.png", title=f"Data map: {name} (round {round_id})"
        )
    publish_image(
        map_path,
        key=artifact_key("round", round_id, name, "data-map"),
        description=f"Data map of the {name} model's training dynamics",
    )
    return result | {
        "data_map": str(map_path.relative_to(ws.root)),
        "plot_seconds": drawn["seconds"],
    }
