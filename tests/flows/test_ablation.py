"""The ablation flow end to end on tiny demo data: two variants, one seed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cartoflow.ablation import QUESTIONS, AblationConfig
from cartoflow.demo import generate_demo
from cartoflow.errors import DataValidationError
from cartoflow.expansion import ExpansionConfig
from flows.ablation import ablation


def test_two_variants_one_seed_end_to_end(tmp_path: Path) -> None:
    config = AblationConfig(
        demo_size="tiny",
        variants=["baseline", "very-hard-expansion"],
        seeds=1,
        expansion=ExpansionConfig(budgets={"hard": 20, "very_hard": 20}),
    )
    config.train = config.train.model_copy(update={"epochs": 3})
    config = AblationConfig.model_validate(config.model_dump())

    report = ablation(config=config, workspace=str(tmp_path))

    run_dir = tmp_path / "runs" / report["ablation_id"]
    for name in ("json", "md", "png"):
        assert (tmp_path / report["files"][name]).exists(), name
    on_disk = json.loads((run_dir / "ablation.json").read_text())
    assert on_disk["summary"] == report["summary"]
    assert [row["variant"] for row in report["summary"]] == ["baseline", "very-hard-expansion"]
    assert [(r["variant"], r["seed"]) for r in report["runs"]] == [
        ("baseline", 0),
        ("very-hard-expansion", 0),
    ]
    assert (run_dir / "baseline" / "dynamics").is_dir()  # the baseline trained once with capture

    added = report["variants"]["very-hard-expansion"]["changes"]["added"]
    assert added == report["candidates"]["very_hard"] > 0
    assert "random" not in report["candidates"]  # no control asked for, none drawn
    base_rows = report["variants"]["baseline"]["rows"]
    assert report["variants"]["very-hard-expansion"]["rows"] == base_rows + added
    frame = pd.read_parquet(tmp_path / report["variants"]["very-hard-expansion"]["file"])
    new = frame.iloc[base_rows:]
    assert (new["label"] == new["true_label"]).all()  # error rate 0: the annotator is right

    assert [a["question"] for a in report["answers"]] == list(QUESTIONS)
    verdicts = [a["verdict"] for a in report["answers"]]
    assert verdicts[0] == verdicts[1] == verdicts[3] == "not run"
    assert verdicts[2].startswith("undetermined")  # one seed: no noise estimate
    markdown = (run_dir / "ablation.md").read_text()
    assert "| + very-hard expansion | 1 |" in markdown and "![ablation](ablation.png)" in markdown


def test_expansion_without_an_unlabeled_pool_stops_before_training(tmp_path: Path) -> None:
    train = tmp_path / "train.parquet"
    generate_demo(n_train=200, n_eval=10, n_unlabeled=0, seed=3)["train"].to_parquet(train)
    config = AblationConfig(
        train_path=str(train), variants=["baseline", "very-hard-expansion"], seeds=1
    )
    with pytest.raises(DataValidationError, match="no unlabeled pool"):
        ablation(config=config, workspace=str(tmp_path / "ws"))
    assert not list((tmp_path / "ws").glob("runs/*/baseline"))  # nothing trained
