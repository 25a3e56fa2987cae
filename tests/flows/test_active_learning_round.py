"""End-to-end rounds on tiny demo data, under the session's Prefect test harness."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run

from cartoflow.catalog import Catalog
from cartoflow.config import RoundConfig
from cartoflow.errors import DataQualityError
from flows.active_learning_round import active_learning_round
from tasks.common import artifact_key


def tiny_config(**updates: Any) -> RoundConfig:
    # the model gate is tested on its own; tiny data is too small for a meaningful delta
    config = RoundConfig(
        demo_size="tiny", annotator="simulated:true_label", model_gate_tolerance=1.0
    )
    config.train = config.train.model_copy(update={"epochs": 3})
    return RoundConfig.model_validate({**config.model_dump(), **updates})


def test_full_round_with_the_simulated_annotator(tmp_path: Path) -> None:
    report = active_learning_round(config=tiny_config(), workspace=str(tmp_path))

    assert report["state"] == "completed"
    run_dir = tmp_path / "runs" / report["round_id"]
    on_disk = json.loads((run_dir / "report.json").read_text())
    assert on_disk["round_id"] == report["round_id"]
    for name in ("baseline/data_map.png", "retrained/data_map.png", "batch.csv", "pools.parquet"):
        assert (run_dir / name).exists(), name
    catalog = Catalog(tmp_path / "catalog.sqlite")
    versions = catalog.versions("demo")
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].parent == 1
    decisions = catalog.decisions(report["round_id"])
    batch = pd.read_parquet(run_dir / "batch.parquet")
    assert decisions["sample_id"].isin(batch["id"]).sum() == report["batch_rows"]
    spread = decisions[~decisions["sample_id"].isin(batch["id"])]
    assert set(spread["pool"]) <= {"conflict"}  # near-duplicates of an annotated conflict row
    assert set(decisions.loc[decisions["action"] == "add", "pool"]) <= {
        "expand:hard",
        "expand:very_hard",
    }
    changes = report["label_changes"]
    assert changes["fixed"] == (decisions["action"] == "fix").sum()
    assert versions[1].rows == versions[0].rows - changes["removed"] + changes["added"]
    assert catalog.get_round(report["round_id"])["state"] == "completed"
    v1, v2 = (pd.read_parquet(tmp_path / v.file) for v in versions)
    added = v2[~v2["id"].isin(v1["id"])]
    assert len(added) == changes["added"] > 0
    assert added["true_label"].notna().all()  # taken from the unlabeled version, not the batch
    assert set(report["comparison"]) == {"baseline", "retrained", "delta"}
    assert report["timings"]["baseline"] > 0
    rid = report["round_id"]
    assert _batch_artifacts(rid) == {
        f"round-{rid}-batch-summary": "markdown",
        f"round-{rid}-batch": "table",
    }
    summary = (tmp_path / "runs" / rid / "batch_summary.md").read_text(encoding="utf-8")
    assert "![data map](data:image/png;base64," in summary  # the baseline's, drawn beside
    with get_client(sync_client=True) as client:
        (table,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"round-{rid}-batch"]))
        )
    assert json.loads(str(table.data))["id"] == batch["id"].astype(str).tolist()  # column-wise
    assert str(tmp_path / "runs" / rid / "batch.csv") in str(table.description)
    keys = [artifact_key("round", rid, role, "training") for role in ("baseline", "retrained")]
    with get_client(sync_client=True) as client:
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    assert sorted((str(a.key), a.type, a.data) for a in progress) == [
        (keys[0], "progress", 100.0),  # posted beside the training, the last one waited for
        (keys[1], "progress", 100.0),
    ]


def test_a_round_with_nothing_to_review_ends_without_a_new_version(tmp_path: Path) -> None:
    config = tiny_config(batch_pools=[], expand=False, conflicts=False)
    report = active_learning_round(config=config, workspace=str(tmp_path))

    assert report["state"] == "nothing_to_review"
    assert report["batch_rows"] == 0 and report["version_out"] is None
    # the baseline's data map and the batch summary are still made, though nobody waited
    assert (tmp_path / report["files"]["data_map_before"]).exists()
    rid = report["round_id"]
    assert (tmp_path / "runs" / rid / "batch_summary.md").exists()
    assert _batch_artifacts(rid) == {f"round-{rid}-batch-summary": "markdown"}  # no rows: no table
    assert [v.version for v in Catalog(tmp_path / "catalog.sqlite").versions("demo")] == [1]


def _batch_artifacts(round_id: str) -> dict[str, str]:
    """The round's batch artifacts in the API: key -> type."""
    keys = [artifact_key("round", round_id, name) for name in ("batch-summary", "batch")]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    return {str(a.key): str(a.type) for a in found}


def _run_in_thread(config: RoundConfig, workspace: Path, name: str) -> dict[str, Any]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["report"] = active_learning_round.with_options(flow_run_name=name)(
                config=config, workspace=str(workspace)
            )
        except BaseException as error:  # surfaced by the test
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    box["thread"] = thread
    return box


def _paused_round(config: RoundConfig, workspace: Path, label: str) -> tuple[UUID, dict[str, Any]]:
    """Start a round that waits for people, in a thread; once it is PAUSED, return its flow
    run id and the box its report (or error) lands in when it goes on."""
    name = f"{label}-{time.time_ns()}"
    box = _run_in_thread(config, workspace, name)
    return _wait_for_paused(name, box), box


def _wait_for_paused(name: str, box: dict[str, Any], timeout: float = 120) -> UUID:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if "error" in box:
                raise box["error"]
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            if runs and runs[0].state and runs[0].state.type == StateType.PAUSED:
                return runs[0].id
            time.sleep(0.5)
    raise AssertionError(f"flow run {name} did not pause within {timeout} s")


@pytest.mark.parametrize("approve", [True, False], ids=["approve", "reject"])
def test_pause_mode_waits_for_a_person_and_resumes(tmp_path: Path, approve: bool) -> None:
    config = tiny_config(annotator="human", wait="pause", timeout_days=1)
    run_id, box = _paused_round(config, tmp_path, f"pause-{'approve' if approve else 'reject'}")

    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    batch = pd.read_csv(runs[0] / "batch.csv", dtype=str, keep_default_na=False)
    assert len(batch) > 0
    # What the reviewers look at is in the UI before they are asked.
    assert sorted(_batch_artifacts(runs[0].name).values()) == ["markdown", "table"]
    truth = pd.concat(
        pd.read_parquet(tmp_path / "datasets" / name / "v0001.parquet")
        for name in ("demo", "demo.unlabeled")
    ).set_index("id")
    labels = {i: str(truth.loc[i, "true_label"]) for i in batch["id"]}
    resume_flow_run(
        run_id,
        run_input={"approve": approve, "reviewer": "ana", "notes": "checked", "labels": labels},
    )
    box["thread"].join(timeout=180)
    assert "error" not in box, box.get("error")
    report = box["report"]
    catalog = Catalog(tmp_path / "catalog.sqlite")
    if approve:
        assert report["state"] == "completed"
        assert report["annotator"] == "ana"
        assert [v.version for v in catalog.versions("demo")] == [1, 2]
        decided = catalog.decisions(report["round_id"])
        assert set(labels) <= set(decided["sample_id"])
    else:
        assert report["state"] == "rejected"
        assert [v.version for v in catalog.versions("demo")] == [1]
        assert catalog.get_round(report["round_id"])["state"] == "rejected"
        assert catalog.decisions(report["round_id"]).empty


def test_a_corrupt_annotations_file_stops_the_round_before_a_new_version(tmp_path: Path) -> None:
    config = tiny_config(annotator="human", wait="pause", timeout_days=1)
    run_id, box = _paused_round(config, tmp_path, "corrupt")
    (run_dir,) = (tmp_path / "runs").iterdir()
    batch = pd.read_csv(run_dir / "batch.csv", dtype=str, keep_default_na=False)
    corrupt = batch.assign(new_label="7")  # not a class
    corrupt = pd.concat([corrupt, corrupt.head(1)])  # and one id twice
    corrupt.to_csv(tmp_path / "filled.csv", index=False)
    resume_flow_run(run_id, run_input={"approve": True, "batch_path": str(tmp_path / "filled.csv")})
    box["thread"].join(timeout=180)

    assert "error" in box
    message = str(box["error"])
    assert "new_label_valid" in message and "id_unique" in message
    catalog = Catalog(tmp_path / "catalog.sqlite")
    assert [v.version for v in catalog.versions("demo")] == [1]
    assert not (run_dir / "candidate_version.parquet").exists()
    round_row = catalog.get_round(run_dir.name)
    assert round_row["state"] == "failed"
    assert "new_label_valid" in round_row["reason"]
    gates = catalog.gates(run_dir.name).set_index("gate")
    assert not gates.loc["annotations", "success"]


def test_a_gate_beside_the_next_stage_stops_the_round_before_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.gates

    validate = tasks.gates.run_suite

    def out_of_range_confidences(suite: str, frame: Any, **params: Any) -> dict[str, Any]:
        if suite == "metrics":
            frame = frame.copy()
            frame.loc[frame.index[:3], "confidence"] = 1.5
        return validate(suite, frame, **params)

    monkeypatch.setattr(tasks.gates, "run_suite", out_of_range_confidences)
    with pytest.raises(DataQualityError, match=r"(?s)`metrics`.*confidence"):
        active_learning_round(config=tiny_config(), workspace=str(tmp_path))

    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "pools.parquet").exists()  # the pools were made beside the gate
    assert not (run_dir / "batch.csv").exists()  # but nothing left the round folder
    assert _batch_artifacts(run_dir.name) == {}
    catalog = Catalog(tmp_path / "catalog.sqlite")
    assert [v.version for v in catalog.versions("demo")] == [1]
    assert catalog.get_round(run_dir.name)["state"] == "failed"
    assert not catalog.gates(run_dir.name).set_index("gate").loc["metrics", "success"]


def _failing_gate(monkeypatch: pytest.MonkeyPatch, failing: str, held_role: str) -> None:
    """The ``failing`` suite sees a duplicated id, and the ``held_role`` training waits at its
    first batch until something asks it to stop (or 60 s pass): the test does not race the
    gate."""
    import tasks.gates
    import tasks.train

    validate, train = tasks.gates.run_suite, tasks.train.train_classifier

    def duplicated_id(suite: str, frame: Any, **params: Any) -> dict[str, Any]:
        if suite == failing:
            frame = frame.copy()
            frame.loc[frame.index[1], "id"] = frame["id"].iloc[0]
        return validate(suite, frame, **params)

    def held(*args: Any, stop: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + 60

        def until_stopped() -> str | None:
            while (reason := stop()) is None and time.monotonic() < deadline:
                time.sleep(0.01)
            return reason

        if Path(kwargs["dynamics_dir"]).parent.name == held_role:
            return train(*args, stop=until_stopped, **kwargs)
        return train(*args, stop=stop, **kwargs)

    monkeypatch.setattr(tasks.gates, "run_suite", duplicated_id)
    monkeypatch.setattr(tasks.train, "train_classifier", held)


def _stopped_by(run_dir: Path, role: str) -> str:
    """Why the ``role`` training stopped before its first epoch ended."""
    manifest = json.loads((run_dir / role / "dynamics" / "_manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["epochs"] == []
    assert not (run_dir / role / "model.pt").exists()
    return str(manifest["reason"])


def test_a_failed_dataset_gate_stops_the_baseline_training_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_gate(monkeypatch, "dataset", held_role="baseline")
    with pytest.raises(DataQualityError, match=r"(?s)`dataset`.*id") as raised:
        active_learning_round(config=tiny_config(), workspace=str(tmp_path))

    assert type(raised.value.__context__).__name__ == "TrainingStopped"
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "the dataset gate failed" in _stopped_by(run_dir, "baseline")
    assert not (run_dir / "baseline" / "metrics.parquet").exists()
    catalog = Catalog(tmp_path / "catalog.sqlite")
    assert catalog.get_round(run_dir.name)["state"] == "failed"
    assert not catalog.gates(run_dir.name).set_index("gate").loc["dataset", "success"]


def test_a_failed_new_version_gate_stops_the_retraining_and_registers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_gate(monkeypatch, "new_version", held_role="retrained")
    with pytest.raises(DataQualityError, match=r"(?s)`new_version`.*id"):
        active_learning_round(config=tiny_config(), workspace=str(tmp_path))

    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "candidate_version.parquet").exists()  # built, retrained on, not stored
    assert "the new_version gate failed" in _stopped_by(run_dir, "retrained")
    catalog = Catalog(tmp_path / "catalog.sqlite")
    assert [v.version for v in catalog.versions("demo")] == [1]
    assert catalog.decisions(run_dir.name).empty
    assert catalog.get_round(run_dir.name)["state"] == "failed"
    assert not catalog.gates(run_dir.name).set_index("gate").loc["new_version", "success"]


def test_a_second_round_starts_from_a_stored_version(tmp_path: Path) -> None:
    first = active_learning_round(config=tiny_config(), workspace=str(tmp_path))
    second = active_learning_round(
        config=tiny_config(start_version=first["version_out"]), workspace=str(tmp_path)
    )
    assert second["version_in"] == first["version_out"] == 2
    assert second["state"] == "completed"
    assert second["version_out"] == 3
    catalog = Catalog(tmp_path / "catalog.sqlite")
    assert [v.parent for v in catalog.versions("demo")] == [None, 1, 2]
    assert catalog.current_version("demo").version == 3
