"""The round's figures (data maps, before / after), drawn beside the stages that follow.

Each figure is its own task that the round submits and collects later: the baseline data map is
drawn while the pools, expansion candidates and batch are made when people review the batch
(its summary shows the map), and while the model retrains when the review is simulated; the
retrained one and the before / after comparison while the compare, the model gate and the Data
Docs run. The drawing itself happens in :mod:`cartoflow.drawing`'s helper processes, on the
core that the round's single torch thread and its stages leave free; :func:`warm_up_figures`
boots them while the baseline trains. Both are cached by content, so a suspended round re-run
from the top does not draw them again.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from cartoflow import drawing
from cartoflow.workspace import Workspace
from tasks.common import artifact_key, content_key, publish_image, stopwatch


def warm_up_figures() -> None:
    """Start the drawing process now, so the first figure does not wait for its imports."""
    drawing.start()


@task(name="data-map", cache_key_fn=content_key("metrics", "round_id"), persist_result=True)
def draw_data_map(metrics: dict[str, Any], *, round_id: str, workspace: str) -> dict[str, Any]:
    """Draw the data map of ``compute_sample_metrics``' result and publish it as an artifact.

    Returns:
        The metrics result with ``data_map`` (workspace-relative PNG path) and
        ``plot_seconds`` added.
    """
    ws = Workspace.resolve(workspace)
    name = metrics["name"]
    with stopwatch() as t:
        path = drawing.draw(
            "data_map",
            str(ws.root / metrics["metrics"]),
            str(ws.run_dir(round_id) / name / "data_map.png"),
            f"Data map: {name} (round {round_id})",
        )
    publish_image(
        path,
        key=artifact_key("round", round_id, name, "data-map"),
        description=f"Data map of the {name} model's training dynamics",
    )
    return {**metrics, "data_map": str(path.relative_to(ws.root)), "plot_seconds": t["seconds"]}


@task(
    name="before-after",
    cache_key_fn=content_key("before", "after", "round_id"),
    persist_result=True,
)
def draw_before_after(
    before: dict[str, Any], after: dict[str, Any], *, round_id: str, workspace: str
) -> dict[str, Any]:
    """Variability and confidence of the training set before and after the round's fixes.

    Returns:
        ``plot`` (workspace-relative PNG path) and ``seconds``.
    """
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        path = drawing.draw(
            "before_after",
            str(ws.root / before["metrics"]),
            str(ws.root / after["metrics"]),
            str(ws.run_dir(round_id) / "variability_before_after.png"),
        )
    publish_image(
        path,
        key=artifact_key("round", round_id, "before-after"),
        description="Variability and confidence of the training set, before and after the fixes",
    )
    return {"plot": str(path.relative_to(ws.root)), "seconds": t["seconds"]}
