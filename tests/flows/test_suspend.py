"""A suspend-mode round under a served deployment: the flow's process exits while it waits, and
the re-run Prefect starts after the approval comes back from the content-keyed caches.

Served by ``deployments/serve.py`` in a subprocess, against the session's test harness.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest
from prefect import Task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType, TaskRun
from prefect.deployments import run_deployment
from prefect.flow_runs import resume_flow_run
from prefect.settings import get_current_settings

import tasks
from cartoflow.catalog import Catalog
from tests.deployments.support import (
    ROUND,
    round_dir,
    served,
    tiny_round,
    true_labels,
    wait_for_state,
)

pytestmark = pytest.mark.slow

UPSTREAM = {"train-with-capture", "metrics", "pools", "export-batch"}


def content_cached_tasks() -> set[str]:
    """Names of every task in tasks/ with a content cache key."""
    names = set()
    for info in pkgutil.iter_modules(tasks.__path__):
        module = importlib.import_module(f"tasks.{info.name}")
        names |= {v.name for v in vars(module).values() if isinstance(v, Task) and v.cache_key_fn}
    return names


def _task(run: TaskRun) -> str:
    return run.name.rsplit("-", 1)[0]  # task run names are "<task name>-<3 hex>"


def test_a_suspended_round_resumes_from_its_caches(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    api_url = get_current_settings().api.url
    assert api_url, "expected the session's test harness to provide an API"
    with served(
        api_url=api_url,
        home=tmp_path / "serve",
        log=tmp_path / "serve.log",
        CARTOFLOW_WORKSPACE=str(tmp_path / "default-workspace"),
    ) as serving:
        run = run_deployment(
            ROUND,
            parameters={"config": tiny_round(wait="suspend"), "workspace": str(workspace)},
            timeout=0,
        )
        suspended = wait_for_state(run.id, StateType.PAUSED, process=serving)
        assert suspended.state is not None and suspended.state.name == "Suspended"
        folder = round_dir(workspace)
        baseline = {p: p.stat().st_mtime_ns for p in (folder / "baseline").rglob("*")}
        labels = true_labels(workspace, folder / "batch.csv")
        assert labels
        resume_flow_run(
            run.id, run_input={"approve": True, "reviewer": "suspense", "labels": labels}
        )
        wait_for_state(run.id, StateType.COMPLETED, process=serving)

    report = json.loads((folder / "report.json").read_text())
    assert report["state"] == "completed"
    assert report["annotator"] == "suspense"
    # the round id is stable across the re-run: one round folder, one baseline, untouched
    assert [p.name for p in (workspace / "runs").iterdir()] == [folder.name]
    assert {p: p.stat().st_mtime_ns for p in (folder / "baseline").rglob("*")} == baseline
    catalog = Catalog(workspace / "catalog.sqlite")
    assert [v.version for v in catalog.versions("demo")] == [1, 2]
    gates = catalog.gates(folder.name)["gate"].tolist()
    once = ["dataset", "dynamics", "metrics", "pools", "annotations", "new_version", "model"]
    # each gate recorded once (dynamics twice: two models), though the round ran twice up to
    # its pause
    assert sorted(gates) == sorted([*once, "dynamics"]), gates

    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(run.id)
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    suspended_at = next(s.timestamp for s in states if s.name == "Suspended")
    before = [t for t in task_runs if t.created is not None and t.created < suspended_at]
    after = [t for t in task_runs if t.created is not None and t.created > suspended_at]
    cached = content_cached_tasks() & {_task(t) for t in before}
    assert cached >= UPSTREAM
    for name in sorted(cached):
        states_after = [t.state.name for t in after if _task(t) == name and t.state]
        assert "Cached" in states_after, f"{name} ran again after the resume: {states_after}"
    trainings = [t for t in after if _task(t) == "train-with-capture"]
    assert sorted(t.state.name for t in trainings if t.state) == ["Cached", "Completed"]
