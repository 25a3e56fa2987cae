"""Round bookkeeping: the round id, its catalog row, and marking failures."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from prefect import task
from prefect.runtime import flow_run

from cartoflow.catalog import Catalog
from cartoflow.config import RoundConfig
from cartoflow.workspace import Workspace, check_name


def current_round_id(explicit: str | None = None) -> str:
    """A round id that stays the same when Prefect re-runs a suspended flow run from the top.

    Built from the flow run's scheduled start time and id, so it sorts by time and is unique.
    """
    if explicit:
        return check_name(explicit, what="round id")
    return round_id_for(flow_run.scheduled_start_time, flow_run.id)


def round_id_for(started: Any, run_id: Any) -> str:
    """``YYYYmmdd-HHMMSS-<first 8 hex of the flow run id>``."""
    stamp = started.strftime("%Y%m%d-%H%M%S") if started else "round"
    return f"{stamp}-{str(run_id or 'local').replace('-', '')[:8]}"


def resolve_workspace(workspace: str | None) -> str:
    """The absolute workspace path, created if needed, as a string (a plain flow parameter)."""
    return str(Workspace.resolve(workspace).ensure().root)


@task(name="start-round")
def start_round(config: RoundConfig, *, round_id: str, workspace: str) -> str:
    """Create the round folder and its catalog row (idempotent: a resumed run keeps both)."""
    ws = Workspace.resolve(workspace)
    ws.run_dir(round_id).mkdir(parents=True, exist_ok=True)
    Catalog(ws.catalog_path).start_round(
        round_id, dataset=config.dataset, config=config.model_dump(mode="json")
    )
    return round_id


def timings_of(**results: dict[str, Any] | None) -> dict[str, float]:
    """Stage name -> seconds, from the ``seconds`` every stage task returns."""
    return {
        stage: float(result["seconds"])
        for stage, result in results.items()
        if result and "seconds" in result
    }


def mark_failed(workspace: str | None, round_id: str, reason: str) -> None:
    """Record a failed round in the catalog; the folder and every file written so far stay."""
    ws = Workspace.resolve(workspace)
    catalog = Catalog(ws.catalog_path)
    # A run that failed before its round was recorded has nothing to mark.
    with suppress(KeyError):
        catalog.update_round(round_id, state="failed", reason=reason[:2000])
