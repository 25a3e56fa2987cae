"""The served nightly re-analysis: its cron schedule, and a triggered run's comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments import run_deployment

from cartoflow.catalog import Catalog
from tests.deployments.support import (
    NIGHTLY,
    ROUND,
    TIMEZONE,
    Process,
    tiny_round,
    wait_for_state,
)

pytestmark = pytest.mark.slow


def test_the_nightly_deployment_runs_at_two_in_the_configured_timezone(serving: Process) -> None:
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name(NIGHTLY)
        manual = client.read_deployment_by_name(ROUND)
    (schedule,) = nightly.schedules
    assert isinstance(schedule.schedule, CronSchedule)
    assert schedule.schedule.cron == "0 2 * * *"
    assert schedule.schedule.timezone == TIMEZONE  # from CARTOFLOW_TIMEZONE
    assert schedule.active and not nightly.paused
    assert manual.schedules == []  # rounds start by hand (or from the nightly run)


def test_a_triggered_nightly_run_writes_its_comparison(serving: Process, tmp_path: Path) -> None:
    # a workspace with a dataset: one simulated round through the round deployment
    first = run_deployment(
        ROUND,
        parameters={
            "config": tiny_round(annotator="simulated:true_label"),
            "workspace": str(tmp_path),
        },
        timeout=0,
    )
    wait_for_state(first.id, StateType.COMPLETED, process=serving)

    nightly = run_deployment(
        NIGHTLY,
        parameters={
            "config": {"train": {"epochs": 3}, "relabel_trigger": 0},
            "workspace": str(tmp_path),
        },
        timeout=0,
    )
    wait_for_state(nightly.id, StateType.COMPLETED, process=serving)

    (report,) = (tmp_path / "runs").glob("nightly-*/comparison.json")
    comparison = json.loads(report.read_text())
    current = Catalog(tmp_path / "catalog.sqlite").current_version("demo")
    assert current is not None
    assert comparison["version"] == current.version == 2  # the round's promoted version
    assert comparison["previous"] is None  # the first analysis of this workspace
    assert set(comparison["pools"]) <= {"relabel", "hard", "very_hard"}
    assert (tmp_path / comparison["files"]["data_maps"]).stat().st_size > 10_000
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["nightly-demo"]))
        )
    assert any(a.flow_run_id == nightly.id and a.type == "markdown" for a in artifacts)
