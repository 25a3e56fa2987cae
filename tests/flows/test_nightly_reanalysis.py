"""The nightly re-analysis end to end on tiny demo data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cartoflow.catalog import Catalog
from cartoflow.config import NightlyConfig
from cartoflow.errors import CartoflowError
from flows.active_learning_round import active_learning_round
from flows.nightly_reanalysis import nightly_reanalysis
from tests.flows.test_active_learning_round import tiny_config


def test_nightly_needs_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(CartoflowError, match="Run a round first"):
        nightly_reanalysis(config=NightlyConfig(), workspace=str(tmp_path))


def test_nightly_scores_the_current_version_and_reuses_unchanged_dynamics(tmp_path: Path) -> None:
    round_config = tiny_config()
    active_learning_round(config=round_config, workspace=str(tmp_path))
    config = NightlyConfig(train=round_config.train, relabel_trigger=0)

    first = nightly_reanalysis(config=config, workspace=str(tmp_path))
    assert first["retrained"] is True
    assert first["previous"] is None
    assert first["version"] == Catalog(tmp_path / "catalog.sqlite").current_version("demo").version
    assert first["triggered_round"] is None

    second = nightly_reanalysis(config=config, workspace=str(tmp_path))
    assert second["retrained"] is False  # same version: last night's dynamics are reused
    assert second["previous"] == first["analysis_id"]
    assert second["region_changes"]["changed"] == 0
    assert second["new_relabel_candidates"] == 0
    assert second["label_drift"]["total_variation"] == 0
    on_disk = json.loads((tmp_path / second["report"]).read_text())
    assert on_disk["analysis_id"] == second["analysis_id"]
    assert (tmp_path / on_disk["files"]["data_maps"]).stat().st_size > 10_000


def test_a_large_relabel_pool_starts_a_round_through_its_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.analysis

    calls: list[dict] = []

    class Started:
        id = "run-id"
        name = "started-round"

    def fake_run_deployment(name: str, **kwargs: object) -> Started:
        calls.append({"name": name, **kwargs})
        return Started()

    monkeypatch.setattr(tasks.analysis, "run_deployment", fake_run_deployment)
    round_config = tiny_config()
    active_learning_round(config=round_config, workspace=str(tmp_path))
    config = NightlyConfig(train=round_config.train, relabel_trigger=1)
    pools = config.pools.model_copy(
        update={"relabel": config.pools.relabel.model_copy(update={"max_confidence": 0.99})}
    )
    result = nightly_reanalysis(
        config=config.model_copy(update={"pools": pools}), workspace=str(tmp_path)
    )

    assert result["relabel"] > 1
    assert result["triggered_round"] == "run-id"
    (call,) = calls
    assert call["name"] == "active-learning-round/active-learning-round"
    assert call["timeout"] == 0
    assert call["parameters"]["config"]["start_version"] == result["version"]
    assert call["parameters"]["workspace"] == str(tmp_path)
