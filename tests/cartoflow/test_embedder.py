"""cartoflow.embedder: embeddings made in the helper process are the ones made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cartoflow import embedder
from cartoflow.train import load_model, make_model, save_model
from cartoflow.train_config import TrainConfig

CONFIG = TrainConfig(buckets=2**12, dim=16, hidden=8, num_threads=1, seed=3)


def test_the_helper_embeds_as_this_process_does(tmp_path: Path) -> None:
    path = save_model(make_model(CONFIG, 3), tmp_path / "model.pt", config=CONFIG)
    train = [f"如何看待第{i}次考研" for i in range(300)]
    unlabeled = ["今天发布的入门方法", "昨晚的突发新闻", ""]
    there = embedder.embed(path, train, unlabeled)
    process = embedder._HELPER._process
    assert process is not None and process.poll() is None  # made in the helper
    model = load_model(path)
    here = [model.embed(train), model.embed(unlabeled)]
    assert [a.shape for a in there] == [(300, 8), (3, 8)]
    assert all(a.dtype == np.float32 for a in there)
    for a, b in zip(there, here, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
