"""A served round waits for a person, is found PAUSED, and is resumed through the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.flow_runs import resume_flow_run

from cartoflow.catalog import Catalog
from tasks.rounds import round_id_for
from tests.deployments.support import (
    ROUND,
    Process,
    round_dir,
    tiny_round,
    true_labels,
    wait_for_state,
)

pytestmark = pytest.mark.slow


def test_a_triggered_round_pauses_and_completes_once_resumed(
    serving: Process, tmp_path: Path
) -> None:
    run = run_deployment(
        ROUND,
        parameters={"config": tiny_round(), "workspace": str(tmp_path)},
        timeout=0,
    )
    paused = wait_for_state(run.id, StateType.PAUSED, process=serving)

    # the round id derives from the run: the folder a reviewer is pointed at is predictable
    folder = round_dir(tmp_path)
    assert folder.name == round_id_for(paused.expected_start_time, paused.id)
    labels = true_labels(tmp_path, folder / "batch.csv")
    assert labels, "tiny demo data, 3 epochs: the relabel pool should not be empty"
    resume_flow_run(
        paused.id,
        run_input={"approve": True, "reviewer": "api", "notes": "via the API", "labels": labels},
    )
    wait_for_state(run.id, StateType.COMPLETED, process=serving)

    report = json.loads((folder / "report.json").read_text())
    assert report["state"] == "completed"
    assert report["annotator"] == "api"
    catalog = Catalog(tmp_path / "catalog.sqlite")
    assert [v.version for v in catalog.versions("demo")] == [1, 2]
    decisions = catalog.decisions(folder.name)
    assert set(labels) <= set(decisions["sample_id"])  # a conflict label covers its whole group
    assert set(decisions["annotator"]) == {"api"}
