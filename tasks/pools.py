"""Stage 4: select the relabel, hard and very-hard pools from the metrics."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from cartoflow.pools import PoolConfig, pool_summary, select_pools
from cartoflow.versions import read_registered
from cartoflow.workspace import Workspace, write_frame
from tasks.common import artifact_key, content_key, stopwatch


@task(
    name="pools",
    cache_key_fn=content_key("metrics", "config", "round_id"),
    persist_result=True,
)
def select_sample_pools(
    data: dict[str, Any],
    metrics: dict[str, Any],
    config: PoolConfig,
    *,
    round_id: str,
    workspace: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Pick the de-duplicated pools; write ``pools.parquet`` and publish counts per pool."""
    logger = get_run_logger()
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        frame = read_registered(ws, data["dataset"], data["train"]["hash"])
        scores = pd.read_parquet(ws.root / metrics["metrics"])
        pools = select_pools(
            scores,
            config=config,
            texts=frame["text"],
            groups=frame["group"] if "group" in frame.columns else None,
            num_epochs=int(metrics["epochs"]),
            seed=seed,
        )
        path = write_frame(pools, ws.run_dir(round_id) / "pools.parquet")
    counts = {str(k): int(v) for k, v in pools["pool"].value_counts().items()}
    summary = pool_summary(pools)
    create_table_artifact(
        table=summary.reset_index().astype(str).to_dict(orient="records"),
        key=artifact_key("round", round_id, "pools"),
        description="Samples per pool and label",
    )
    logger.info("Pools: %s", counts)
    return {"pools": str(path.relative_to(ws.root)), "counts": counts, "seconds": t["seconds"]}
