"""The expansion and conflict-pool tasks on a tiny hand-built workspace."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cartoflow.catalog import Catalog
from cartoflow.demo import generate_demo
from cartoflow.expansion import ExpansionConfig
from cartoflow.neardup import dedup_batch
from cartoflow.train import TrainConfig, save_model, train_classifier
from cartoflow.versions import register_version
from cartoflow.workspace import Workspace, write_frame
from tasks.expansion import (
    CANDIDATE_COLUMNS,
    embed_for_expansion,
    find_expansion_eligible,
    select_conflict_pool,
    select_expansion_candidates,
)

LABELS = ["0", "1", "2"]


def _register(ws: Workspace, frame: pd.DataFrame, dataset: str) -> dict[str, Any]:
    record = register_version(
        frame, workspace=ws, catalog=Catalog(ws.catalog_path), dataset=dataset
    )
    return {"version": record.version, "hash": record.hash, "file": record.file, "rows": len(frame)}


@pytest.fixture(scope="module")
def round_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace with train + unlabeled versions, a trained model and hand-picked pools."""
    ws = Workspace(tmp_path_factory.mktemp("ws")).ensure()
    frames = generate_demo(n_train=300, n_eval=10, n_unlabeled=400, seed=1)
    train = frames["train"][["id", "text", "label", "group", "true_label"]]
    unlabeled = frames["unlabeled"][["id", "text", "group", "true_label"]]
    data: dict[str, Any] = {
        "dataset": "demo",
        "label_names": LABELS,
        "train": _register(ws, train, "demo"),
        "unlabeled": _register(ws, unlabeled, "demo.unlabeled"),
    }
    result = train_classifier(
        train["text"].tolist(),
        train["label"].astype(int).to_numpy(),
        num_classes=3,
        config=TrainConfig(epochs=2, dim=16, buckets=2**12),
        progress=lambda _s: None,
    )
    save_model(result.model, ws.run_dir("setup") / "model.pt")
    ids = train["id"].to_numpy()
    pools = pd.DataFrame(
        {
            "sample": np.arange(25),
            "id": ids[:25],
            "pool": ["relabel"] * 5 + ["hard"] * 10 + ["very_hard"] * 10,
        }
    )
    write_frame(pools, ws.run_dir("setup") / "pools.parquet")
    return {
        "ws": ws,
        "data": data,
        "train": train,
        "unlabeled": unlabeled,
        "pools_frame": pools,
        "trained": {"train_hash": data["train"]["hash"], "model": "runs/setup/model.pt"},
        "pools": {"pools": "runs/setup/pools.parquet"},
    }


def _round_id() -> str:
    # Task results are cached by content and round id: every test gets its own round.
    return f"test-{uuid.uuid4().hex[:12]}"


def test_candidates_respect_budgets_and_hold_no_near_duplicates(round_dir: dict[str, Any]) -> None:
    ws, train, unlabeled = round_dir["ws"], round_dir["train"], round_dir["unlabeled"]
    rid = _round_id()
    config = ExpansionConfig(budgets={"hard": 15, "very_hard": 8})
    result = select_expansion_candidates(
        round_dir["data"],
        round_dir["trained"],
        round_dir["pools"],
        config,
        round_id=rid,
        workspace=str(ws.root),
    )
    picked = pd.read_parquet(ws.root / result["expansion"])
    assert result["expansion"] == f"runs/{rid}/expansion.parquet"
    assert list(picked.columns) == list(CANDIDATE_COLUMNS)
    assert result["counts"] == {"hard": 15, "very_hard": 8}
    assert result["seeds"] == {"hard": 10, "very_hard": 10}
    assert len(picked) == result["rows"] == 23
    assert picked["id"].is_unique
    assert not picked["id"].isin(train["id"]).any()
    assert (picked["pool"] == "expand:" + picked["seed_pool"]).all()
    by_id = unlabeled.set_index("id")
    assert list(picked["text"]) == list(by_id.loc[picked["id"], "text"])
    assert list(picked["group"]) == list(by_id.loc[picked["id"], "group"])
    assert (unlabeled["id"].to_numpy()[picked["unlabeled_index"]] == picked["id"]).all()
    seeds = round_dir["pools_frame"].set_index("id")["pool"]
    assert (seeds.loc[picked["seed_sample"]].to_numpy() == picked["seed_pool"].to_numpy()).all()
    # No pick is a near-duplicate of a training text or of another pick.
    texts = [*train["text"], *picked["text"]]
    assert dedup_batch(texts)[len(train) :].all()
    assert result["near_duplicates_left_out"] > 0  # the demo pool has near-duplicates to skip


def test_a_scan_made_ahead_picks_the_same_candidates(round_dir: dict[str, Any]) -> None:
    """The round scans for near-duplicates while the baseline trains; the picks must not change."""
    ws, data = round_dir["ws"], round_dir["data"]
    config = ExpansionConfig(budgets={"hard": 15, "very_hard": 8})
    scan = find_expansion_eligible(
        data,
        train_hash=data["train"]["hash"],
        unlabeled_hash=data["unlabeled"]["hash"],
        threshold=config.text_dedup_threshold,
        round_id=_round_id(),
        workspace=str(ws.root),
    )
    eligible = pd.read_parquet(ws.root / scan["eligible"])["eligible"].to_numpy()
    assert len(eligible) == len(round_dir["unlabeled"])
    assert scan["near_duplicates_left_out"] == int((~eligible).sum()) > 0
    args = (data, round_dir["trained"], round_dir["pools"], config)
    ahead = select_expansion_candidates(
        *args, eligible=scan, round_id=_round_id(), workspace=str(ws.root)
    )
    inline = select_expansion_candidates(*args, round_id=_round_id(), workspace=str(ws.root))
    assert ahead["near_duplicates_left_out"] == inline["near_duplicates_left_out"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(ws.root / ahead["expansion"]),
        pd.read_parquet(ws.root / inline["expansion"]),
    )
    other = {**scan, "train_hash": "0" * 64}
    with pytest.raises(ValueError, match="other dataset versions"):
        select_expansion_candidates(
            *args, eligible=other, round_id=_round_id(), workspace=str(ws.root)
        )


def test_embeddings_made_ahead_pick_the_same_candidates(round_dir: dict[str, Any]) -> None:
    """The round embeds while metrics and pools run; the picks must not change."""
    ws, data = round_dir["ws"], round_dir["data"]
    config = ExpansionConfig(budgets={"hard": 15, "very_hard": 8})
    unlabeled_hash = data["unlabeled"]["hash"]
    embedded = embed_for_expansion(
        data,
        round_dir["trained"],
        unlabeled_hash=unlabeled_hash,
        round_id=_round_id(),
        workspace=str(ws.root),
    )
    with np.load(ws.root / embedded["embeddings"]) as stored:
        assert stored["train"].shape[0] == len(round_dir["train"])
        assert stored["unlabeled"].shape[0] == len(round_dir["unlabeled"])
        assert stored["train"].dtype == np.float32
    args = (data, round_dir["trained"], round_dir["pools"], config)
    ahead = select_expansion_candidates(
        *args, embeddings=embedded, round_id=_round_id(), workspace=str(ws.root)
    )
    inline = select_expansion_candidates(*args, round_id=_round_id(), workspace=str(ws.root))
    pd.testing.assert_frame_equal(
        pd.read_parquet(ws.root / ahead["expansion"]),
        pd.read_parquet(ws.root / inline["expansion"]),
    )
    other = {**embedded, "model": "runs/other/model.pt"}
    with pytest.raises(ValueError, match="pass the embeddings of the same round"):
        select_expansion_candidates(
            *args, embeddings=other, round_id=_round_id(), workspace=str(ws.root)
        )


def test_without_an_unlabeled_pool_the_file_is_empty(round_dir: dict[str, Any]) -> None:
    data = {k: v for k, v in round_dir["data"].items() if k != "unlabeled"}
    result = select_expansion_candidates(
        data,
        round_dir["trained"],
        round_dir["pools"],
        ExpansionConfig(),
        round_id=_round_id(),
        workspace=str(round_dir["ws"].root),
    )
    assert result["rows"] == 0 and result["counts"] == {}
    assert pd.read_parquet(round_dir["ws"].root / result["expansion"]).empty


def test_conflict_pool_holds_near_duplicates_with_different_labels(tmp_path: Path) -> None:
    ws = Workspace(tmp_path).ensure()
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "text": [
                "如何评价最新发布的手机？",
                "请问如何评价最新发布的手机",  # near-duplicate of a, other label
                "考研英语怎么准备比较好？",
                "考研英语怎么准备比较好",  # near-duplicate of c, same label
                "今天的天气怎么样？",
            ],
            "label": ["0", "1", "2", "2", "1"],
        }
    )
    data: dict[str, Any] = {
        "dataset": "demo",
        "label_names": LABELS,
        "train": _register(ws, frame, "demo"),
    }
    rid = _round_id()
    result = select_conflict_pool(
        data, train_hash=data["train"]["hash"], round_id=rid, workspace=str(ws.root)
    )
    pool = pd.read_parquet(ws.root / result["conflict_pool"])
    assert result["conflict_pool"] == f"runs/{rid}/conflict_pool.parquet"
    assert result["rows"] == 2 and result["groups"] == 1
    assert list(pool["id"]) == ["a", "b"]
    assert set(pool["pool"]) == {"conflict"}
    assert pool["group"].nunique() == 1
