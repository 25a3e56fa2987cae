"""``prefect deploy --all`` registers deployments/prefect.yaml's deployments on a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.schedules import CronSchedule

from tests.deployments.conftest import Server
from tests.deployments.support import ROOT, prefect_env

pytestmark = pytest.mark.slow


def test_prefect_deploy_registers_every_deployment(prefect_server: Server, tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:  # beside, not over, the served deployments
        deployment["name"] += "-from-yaml"
    prefect_file = tmp_path / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(spec))
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="cartoflow", type="process"))

    deploy = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
         "--prefect-file", str(prefect_file)],
        cwd=ROOT,  # entrypoints are relative to the repository root
        env=prefect_env(home=tmp_path / "home", api_url=prefect_server.api_url),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]

    with get_client(sync_client=True) as client:
        round_ = client.read_deployment_by_name(
            "active-learning-round/active-learning-round-from-yaml"
        )
        nightly = client.read_deployment_by_name("nightly-reanalysis/nightly-reanalysis-from-yaml")
        client.read_deployment_by_name("ablation/ablation-from-yaml")
    assert round_.work_pool_name == nightly.work_pool_name == "cartoflow"
    assert round_.entrypoint == "flows/active_learning_round.py:active_learning_round"
    assert round_.schedules == []
    (schedule,) = nightly.schedules
    assert isinstance(schedule.schedule, CronSchedule)
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
    # the worker resolves the checkout's path when a run starts, not at deploy time
    assert round_.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $CARTOFLOW_REPO }}"}}
    ]
