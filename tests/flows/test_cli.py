"""``cartoflow round``: a fresh process with embedded Prefect, and a clear failure exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cartoflow.catalog import Catalog
from cartoflow.demo import generate_demo
from cartoflow.workspace import Workspace
from flows.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_round_runs_in_a_fresh_process_with_embedded_prefect(tmp_path: Path) -> None:
    """What the README's quick start does, on the tiny demo: no server, the report printed."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    workspace = tmp_path / "ws"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "round",
            "--demo",
            "tiny",
            "--epochs",
            "2",
            "--annotator",
            "simulated:true_label",
            "--workspace",
            str(workspace),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "eval accuracy" in done.stdout
    # The API cartoflow started served the run; Prefect did not start a second one of its own.
    assert "Starting temporary server" not in done.stdout + done.stderr
    assert (tmp_path / "prefect" / "prefect.db").exists()
    (report_path,) = workspace.glob("runs/*/report.json")
    assert f"report          {report_path}" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["state"] in {"completed", "not_promoted"}
    assert report["flow_seconds"] > 0
    catalog = Catalog(Workspace(workspace).catalog_path)
    assert catalog.get_round(report["round_id"])["state"] == report["state"]


def test_a_bad_training_file_exits_1_naming_the_file_and_rows(
    prefect_harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = generate_demo(n_train=60, n_eval=10, n_unlabeled=0, seed=3)["train"]
    train.loc[7, "id"] = train.loc[2, "id"]
    path = tmp_path / "train.csv"
    train.to_csv(path, index=False)
    code = main(
        [
            "round",
            "--train",
            str(path),
            "--annotator",
            "simulated:true_label",
            "--epochs",
            "1",
            "--workspace",
            str(tmp_path / "ws"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert str(path) in err and "unique ids" in err and "Fix:" in err
    assert not list((tmp_path / "ws").glob("datasets/*/v*.parquet"))  # nothing registered
    assert pd.read_csv(path)["id"].duplicated().sum() == 1  # the input is left alone
