"""What ``deployments/serve.py`` and ``deployments/prefect.yaml`` declare, without a server."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from cartoflow.config import NightlyConfig, RoundConfig
from tests.deployments.support import NIGHTLY, ROOT, ROUND

DEPLOYMENTS = ROOT / "deployments"


def _serve_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cartoflow_serve", DEPLOYMENTS / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def serve() -> ModuleType:
    return _serve_module()


def _by_name(deployments: list[Any]) -> dict[str, Any]:
    return {f"{d.flow_name}/{d.name}": d for d in deployments}


def test_serve_builds_every_deployment(serve: ModuleType, tmp_path: Path) -> None:
    built = _by_name(serve.build_deployments(workspace=str(tmp_path), timezone="Asia/Tokyo"))

    assert set(built) == {ROUND, NIGHTLY, "ablation/ablation"}
    assert built[ROUND].schedules in (None, [])  # triggered by hand
    (schedule,) = built[NIGHTLY].schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "Asia/Tokyo")
    for deployment in built.values():
        assert deployment.parameters["workspace"] == str(tmp_path)
    # full default configs, so the UI's run form shows every field
    assert RoundConfig.model_validate(built[ROUND].parameters["config"]) == RoundConfig()
    assert NightlyConfig.model_validate(built[NIGHTLY].parameters["config"]) == NightlyConfig()


def test_serve_builds_what_prefect_yaml_declares(serve: ModuleType) -> None:
    spec = yaml.safe_load((DEPLOYMENTS / "prefect.yaml").read_text())["deployments"]
    built = serve.build_deployments()
    assert [(d.name, d.entrypoint, d.description, d.tags) for d in built] == [
        (d["name"], d["entrypoint"], d["description"], d["tags"]) for d in spec
    ]
    nightly = next(d for d in built if d.name == "nightly-reanalysis")
    (schedule,) = nightly.schedules
    declared_schedule = next(d for d in spec if d["name"] == "nightly-reanalysis")["schedules"][0]
    assert (schedule.schedule.cron, schedule.schedule.timezone) == (
        declared_schedule["cron"],
        declared_schedule["timezone"],
    )


def test_the_nightly_run_starts_rounds_through_the_served_deployment() -> None:
    assert NightlyConfig().round_deployment == ROUND


def test_serve_flags_default_from_the_environment(
    serve: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTOFLOW_TIMEZONE", "Europe/Paris")
    monkeypatch.setenv("CARTOFLOW_WORKSPACE", "/data/ws")
    args = serve.parse_args([])
    assert (args.timezone, args.workspace, args.cron) == ("Europe/Paris", "/data/ws", "0 2 * * *")
    monkeypatch.delenv("CARTOFLOW_TIMEZONE")
    assert serve.parse_args([]).timezone == "UTC"
    assert serve.parse_args(["--timezone", "America/Chicago"]).timezone == "America/Chicago"


def test_prefect_yaml_declares_the_same_deployments_on_a_process_pool() -> None:
    spec = yaml.safe_load((DEPLOYMENTS / "prefect.yaml").read_text())
    (pull,) = spec["pull"]
    assert list(pull) == ["prefect.deployments.steps.set_working_directory"]
    names = set()
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        names.add(f"{flow.name}/{deployment['name']}")
        assert deployment["entrypoint"].startswith("flows/")  # relative to the repo root
        assert deployment["work_pool"]["name"] == "cartoflow"
    assert names == {ROUND, NIGHTLY, "ablation/ablation"}
    nightly = next(d for d in spec["deployments"] if d["name"] == "nightly-reanalysis")
    (schedule,) = nightly["schedules"]
    assert schedule["cron"] == "0 2 * * *" and schedule["timezone"]
