"""The library commands of the `cartoflow` CLI on tiny stored dynamics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cartoflow.cli import main
from cartoflow.dynamics import DynamicsRecorder

N, C, E = 60, 3, 4


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, C, N)
    pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(N)],
            "text": [f"title {i}" for i in range(N)],
            "label": labels,
        }
    ).to_csv(tmp_path / "data.csv", index=False)
    with DynamicsRecorder(tmp_path / "dyn", num_samples=N, num_classes=C) as recorder:
        for epoch in range(E):
            logits = rng.normal(size=(N, C)).astype(np.float32)
            logits[np.arange(N), labels] += epoch  # learnt over time...
            logits[np.arange(20), (labels[:20] + 1) % C] += 6  # ...except 20 "mislabeled" ones
            recorder.update(epoch=epoch, samples=np.arange(N), logits=logits, targets=labels)
    return tmp_path / "dyn", tmp_path / "data.csv"


def test_metrics_pools_datamap(stored: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    dynamics, data = stored
    metrics = tmp_path / "m.parquet"
    assert (
        main(
            ["metrics", "--dynamics", str(dynamics), "--dataset", str(data), "--out", str(metrics)]
        )
        == 0
    )
    frame = pd.read_parquet(metrics)
    assert len(frame) == N and {"confidence", "variability", "aum"} <= set(frame.columns)
    pools = tmp_path / "p.parquet"
    args = ["pools", "--metrics", str(metrics), "--dataset", str(data), "--epochs", str(E)]
    assert main([*args, "--budget", "5", "--out", str(pools)]) == 0
    selected = pd.read_parquet(pools)
    assert len(selected) > 0 and selected.groupby("pool").size().max() <= 5
    png = tmp_path / "map.png"
    assert main(["datamap", "--metrics", str(metrics), "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "scoring 60 samples x 4 epochs" in capsys.readouterr().err


def test_errors_exit_non_zero_with_one_clear_line(
    stored: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    _, data = stored
    code = main(["metrics", "--dynamics", str(tmp_path / "missing"), "--dataset", str(data)])
    assert code == 1
    err = capsys.readouterr().err
    assert "cartoflow metrics: error:" in err and "_manifest.json" in err


def test_dynamics_of_another_dataset_are_refused(
    stored: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    dynamics, data = stored
    pd.read_csv(data).head(10).to_csv(tmp_path / "small.csv", index=False)
    assert (
        main(["metrics", "--dynamics", str(dynamics), "--dataset", str(tmp_path / "small.csv")])
        == 1
    )
    assert "holds 60 samples" in capsys.readouterr().err


def test_checks_list_prints_every_suite(capsys) -> None:
    assert main(["checks", "list"]) == 0
    out = capsys.readouterr().out
    for suite in ("dataset", "dynamics", "metrics", "pools", "annotations", "new_version", "model"):
        assert f"\n{suite} " in out
