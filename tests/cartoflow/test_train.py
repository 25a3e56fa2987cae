"""Training with dynamics capture on tiny data: shapes, determinism, failures, save/load, AUM."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cartoflow.dynamics import read_dynamics
from cartoflow.errors import DataValidationError, DynamicsError, TrainingError, TrainingStopped
from cartoflow.models import FastTextClassifier, NgramFeatures
from cartoflow.train import (
    EpochStats,
    LazyAdam,
    TrainConfig,
    evaluate,
    evaluate_predictions,
    load_model,
    load_model_meta,
    predict_proba,
    save_model,
    train_classifier,
    train_with_threshold_samples,
)

NUM_CLASSES = 3
KEYWORDS = (
    ("学习", "方法", "入门", "原理"),
    ("考研", "今年", "备考", "秋招"),
    ("今天", "发布", "突发", "昨晚"),
)
FILLER = ("如何", "看待", "怎么", "什么", "我们", "可以", "有", "的", "吗", "呢")


def make_data(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Titles whose class shows in two keywords, padded with shared filler words."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n)
    texts = [
        "".join(rng.choice(FILLER, 2))
        + "".join(rng.choice(KEYWORDS[y], 2))
        + "".join(rng.choice(FILLER, 2))
        + f"{i}"
        for i, y in enumerate(labels)
    ]
    return texts, labels.astype(np.int64)


TEXTS, LABELS = make_data(240, seed=0)
EVAL_TEXTS, EVAL_LABELS = make_data(90, seed=1)
CONFIG = TrainConfig(epochs=3, batch_size=32, lr=0.05, buckets=2**12, dim=16, num_threads=1, seed=3)


def quiet(stats: EpochStats) -> None:
    return None


def train(tmp: Path | None = None, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"config": CONFIG, "progress": quiet, **kwargs}
    return train_classifier(TEXTS, LABELS, num_classes=NUM_CLASSES, dynamics_dir=tmp, **options)


def manifest(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((path / "_manifest.json").read_text())
    return result


# ---------------------------------------------------------------------------- capture, eval


def test_training_with_capture_writes_dynamics(tmp_path: Path) -> None:
    result = train(tmp_path / "dyn", eval_texts=EVAL_TEXTS, eval_labels=EVAL_LABELS)
    dynamics = read_dynamics(tmp_path / "dyn")
    assert dynamics.gold_prob.shape == (3, 240)
    assert dynamics.probs is not None and dynamics.probs.shape == (3, 240, 3)
    assert dynamics.mode == "train"
    assert manifest(tmp_path / "dyn")["status"] == "complete"
    assert result.dynamics_dir == tmp_path / "dyn"
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    assert all(h["eval_accuracy"] is not None for h in result.history)
    # the recorded gold labels are the training labels
    np.testing.assert_array_equal(dynamics.correct, dynamics.pred == LABELS[None, :])
    assert result.eval is not None and result.eval.accuracy > 0.9, "the tiny task is easy"
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert not result.model.training


def test_without_a_dynamics_dir_nothing_is_recorded() -> None:
    result = train(None)
    assert result.dynamics_dir is None and result.eval is None


def test_eval_mode_records_an_eval_pass(tmp_path: Path) -> None:
    config = CONFIG.model_copy(update={"record": "eval", "dropout": 0.3})
    result = train(tmp_path / "dyn", config=config)
    dynamics = read_dynamics(tmp_path / "dyn")
    assert dynamics.mode == "eval" and dynamics.num_epochs == 3
    # the last epoch's eval pass saw the final weights with dropout off
    probs = predict_proba(result.model, TEXTS)
    assert dynamics.probs is not None
    np.testing.assert_allclose(dynamics.probs[-1], probs, rtol=1e-5, atol=1e-6)


def test_record_probs_off(tmp_path: Path) -> None:
    train(tmp_path / "dyn", config=CONFIG.model_copy(update={"record_probs": False}))
    assert read_dynamics(tmp_path / "dyn").probs is None


# ---------------------------------------------------------------------------- determinism


def test_same_seed_same_run(tmp_path: Path) -> None:
    a = train(tmp_path / "a")
    b = train(tmp_path / "b")
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    for (name, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    np.testing.assert_array_equal(
        read_dynamics(tmp_path / "a").margin, read_dynamics(tmp_path / "b").margin
    )
    c = train(None, config=CONFIG.model_copy(update={"seed": 4}))
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]


def test_caller_torch_state_is_left_alone() -> None:
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(None)
    assert torch.equal(torch.rand(3), expected), "training must not consume the caller's RNG"
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_default_progress_logs_each_epoch(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cartoflow.train"):
        train_classifier(TEXTS, LABELS, num_classes=NUM_CLASSES, config=CONFIG)
    lines = [r.getMessage() for r in caplog.records if r.name == "cartoflow.train"]
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3: loss ")


# ------------------------------------------------------------------ bring your own, bad input


class Scripted(nn.Module):
    """A bring-your-own model that misbehaves at one (epoch, batch)."""

    kind: ClassVar[str] = "scripted"

    def __init__(self, fault: str, at: tuple[int, int], num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.inner = FastTextClassifier(2**10, 8, num_classes)
        self.num_classes = num_classes
        self.fault = fault
        self.at = at
        self.batches_per_epoch = -(-len(TEXTS) // CONFIG.batch_size)
        self.calls = 0

    def featurize(self, texts: Sequence[str]) -> NgramFeatures:
        return self.inner.featurize(texts)

    def forward(self, features: NgramFeatures) -> torch.Tensor:
        logits: torch.Tensor = self.inner(features)
        if self.training:
            epoch, batch = divmod(self.calls, self.batches_per_epoch)
            self.calls += 1
            if (epoch, batch) == self.at:
                if self.fault == "nan":
                    return logits * float("nan")
                return torch.cat([logits, logits[:, :1]], dim=1)
        return logits

    def embed(self, texts: Sequence[str], *, batch_size: int = 1024) -> np.ndarray:
        return self.inner.embed(texts)

    def config(self) -> dict[str, Any]:
        return {"fault": self.fault, "at": list(self.at)}


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("nan", r"loss is nan at epoch 1, batch 2 \(of 8\); non-finite logits for samples"),
        ("shape", r"shape \(32, 3\).*at epoch 1, batch 2 \(of 8\), but got shape \(32, 4\)"),
    ],
)
def test_bad_model_stops_naming_epoch_and_batch(tmp_path: Path, fault: str, message: str) -> None:
    path = tmp_path / "dyn"
    with pytest.raises(TrainingError, match=message) as caught:
        train(path, model=Scripted(fault, at=(1, 2)))
    assert "kept in" in str(caught.value) and "marked incomplete" in str(caught.value)
    info = manifest(path)
    assert info["status"] == "incomplete" and info["epochs"] == [0]
    assert "epoch 1, batch 2" in info["reason"]
    with pytest.raises(DynamicsError, match="incomplete"):
        read_dynamics(path)
    partial = read_dynamics(path, allow_incomplete=True)
    assert partial.num_epochs == 1 and partial.num_samples == len(TEXTS)


def test_stop_ends_the_training_at_the_batch_it_is_asked(tmp_path: Path) -> None:
    asked: list[int] = []

    def stop() -> str | None:
        asked.append(1)
        return "the dataset gate failed" if len(asked) > 8 + 3 else None  # 8 batches an epoch

    path = tmp_path / "dyn"
    with pytest.raises(TrainingStopped, match=r"stop at epoch 1, batch 3 \(of 8\): the dataset"):
        train(path, stop=stop)
    info = manifest(path)
    assert info["status"] == "incomplete" and info["epochs"] == [0]
    assert "the dataset gate failed" in info["reason"]


def test_a_stop_that_gives_no_reason_changes_nothing(tmp_path: Path) -> None:
    asked: list[int] = []
    stopped = train(tmp_path / "a", stop=lambda: asked.append(1) or None)
    plain = train(tmp_path / "b")
    assert len(asked) == 8 * len(plain.history)  # asked before every batch
    assert [h["loss"] for h in stopped.history] == [h["loss"] for h in plain.history]


def test_failure_in_the_first_batch_keeps_no_epoch(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="epoch 0, batch 0"):
        train(tmp_path / "dyn", model=Scripted("shape", at=(0, 0)))
    assert manifest(tmp_path / "dyn")["epochs"] == []


def test_a_new_run_never_mixes_with_an_old_recording(tmp_path: Path) -> None:
    path = tmp_path / "dyn"
    with pytest.raises(TrainingError):
        train(path, model=Scripted("nan", at=(1, 0)))
    with pytest.raises(FileExistsError, match=r"status: incomplete.*overwrite=True"):
        train(path)
    train(path, overwrite=True)
    assert manifest(path)["status"] == "complete" and manifest(path)["reason"] is None
    assert read_dynamics(path).num_epochs == 3
    with pytest.raises(FileExistsError, match="status: complete"):
        train(path)


def test_overwrite_never_deletes_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "dyn"
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        train(path, overwrite=True)
    assert (path / "notes.txt").read_text() == "mine"


def test_model_must_match_num_classes_and_be_a_text_model() -> None:
    with pytest.raises(ValueError, match=r"3 outputs .* num_classes=4"):
        train(None, model=FastTextClassifier(64, 4, 4))
    with pytest.raises(TypeError, match="without featurize, embed"):
        train(None, model=nn.Linear(2, 3))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.r_[LABELS[:-1], 3], "class indices in \\[0, 3\\), but row 239 holds 3"),
        (LABELS[:-1], "one label per text \\(240\\)"),
        (np.r_[LABELS[:-1], 0.5].astype(float), "integer class indices, but row 239"),
        (np.array(["a"] * 240), "dtype <U1"),
    ],
)
def test_bad_labels(labels: np.ndarray, message: str) -> None:
    with pytest.raises(DataValidationError, match=message):
        train_classifier(TEXTS, labels, num_classes=3, config=CONFIG, progress=quiet)


def test_eval_set_needs_texts_and_labels() -> None:
    with pytest.raises(DataValidationError, match="only eval_texts"):
        train(None, eval_texts=EVAL_TEXTS)


def test_no_texts() -> None:
    with pytest.raises(DataValidationError, match="at least one"):
        train_classifier([], [], num_classes=3)


# ------------------------------------------------------------------------------ evaluation


def slow_scores(y: list[int], p: list[int], c: int) -> tuple[float, list[float], np.ndarray]:
    confusion = np.zeros((c, c), dtype=np.int64)
    for t, q in zip(y, p, strict=True):
        confusion[t, q] += 1
    f1 = []
    for k in range(c):
        tp = sum(1 for t, q in zip(y, p, strict=True) if t == k and q == k)
        fp = sum(1 for t, q in zip(y, p, strict=True) if t != k and q == k)
        fn = sum(1 for t, q in zip(y, p, strict=True) if t == k and q != k)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    accuracy = sum(t == q for t, q in zip(y, p, strict=True)) / len(y)
    return accuracy, f1, confusion


@settings(max_examples=80, deadline=None)
@given(
    st.integers(2, 5).flatmap(
        lambda c: st.tuples(
            st.just(c),
            st.lists(st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)), min_size=1),
        )
    )
)
def test_scores_match_slow_twin(case: tuple[int, list[tuple[int, int]]]) -> None:
    c, pairs = case
    y, p = [a for a, _ in pairs], [b for _, b in pairs]
    result = evaluate_predictions(np.array(y), np.array(p), num_classes=c)
    accuracy, f1, confusion = slow_scores(y, p, c)
    assert result.accuracy == pytest.approx(accuracy)
    assert result.per_class_f1 == pytest.approx(f1)
    assert result.macro_f1 == pytest.approx(float(np.mean(f1)))
    np.testing.assert_array_equal(result.confusion, confusion)
    assert result.to_dict()["num_samples"] == len(y)


def test_evaluate_and_predict_proba() -> None:
    result = train(None)
    evaluation = evaluate(result.model, EVAL_TEXTS, EVAL_LABELS)
    probs = predict_proba(result.model, EVAL_TEXTS, batch_size=7)
    assert probs.shape == (90, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert evaluation.accuracy == pytest.approx(float((probs.argmax(1) == EVAL_LABELS).mean()))
    json.dumps(evaluation.to_dict())


# ------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path: Path) -> None:
    config = CONFIG.model_copy(update={"hidden": 8, "word_ngrams": 2})
    result = train(None, config=config)
    path = save_model(
        result.model, tmp_path / "m" / "model.pt", config=config, label_names=["0", "1", "2"]
    )
    meta = load_model_meta(path)
    assert meta["kind"] == "fasttext" and meta["num_classes"] == 3
    assert meta["model_config"]["featurizer"]["word_ngrams"] == 2
    assert TrainConfig.model_validate(meta["train_config"]) == config
    loaded = load_model(path)
    np.testing.assert_array_equal(predict_proba(loaded, TEXTS), predict_proba(result.model, TEXTS))
    # built without initialising, then given every saved tensor: none is left unallocated
    tensors = [*loaded.state_dict().values(), *loaded.parameters(), *loaded.buffers()]
    assert tensors and not any(t.is_meta for t in tensors)
    saved = result.model.state_dict()
    assert all(torch.equal(t, saved[name]) for name, t in loaded.state_dict().items())
    assert not loaded.training
    # plain weights: loadable with the safe unpickler
    assert isinstance(torch.load(path, weights_only=True), dict)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.json", "model.pt"]


def test_custom_kind_loads_into_a_given_instance(tmp_path: Path) -> None:
    model = Scripted("none", at=(-1, -1))
    path = save_model(model, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"kind 'scripted'.*model=\.\.\."):
        load_model(path)
    loaded = load_model(path, model=Scripted("none", at=(-1, -1)))
    assert isinstance(loaded, Scripted)


def test_load_without_metadata(tmp_path: Path) -> None:
    torch.save({}, tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match=r"model\.json"):
        load_model(tmp_path / "model.pt")


# ---------------------------------------------------------------------------------- optimiser


def test_lazy_adam_matches_sparse_adam() -> None:
    torch.manual_seed(0)
    weights = [nn.EmbeddingBag(50, 4, mode="mean", sparse=True) for _ in range(2)]
    weights[1].load_state_dict(weights[0].state_dict())
    optimizers = [
        LazyAdam([weights[0].weight], lr=0.1),
        torch.optim.SparseAdam([weights[1].weight], lr=0.1),
    ]
    for step in range(4):
        ids = torch.randint(0, 50, (12,), generator=torch.Generator().manual_seed(step))
        offsets = torch.tensor([0, 5, 9])
        for bag, optimizer in zip(weights, optimizers, strict=True):
            optimizer.zero_grad()
            (bag(ids, offsets) ** 2).sum().backward()
            optimizer.step()
    torch.testing.assert_close(weights[0].weight, weights[1].weight)


# ------------------------------------------------------------------------- threshold samples


def test_threshold_run_flags_injected_noise(tmp_path: Path) -> None:
    texts, labels = make_data(400, seed=5)
    rng = np.random.default_rng(0)
    noisy = rng.random(len(labels)) < 0.15
    observed = np.where(noisy, (labels + rng.integers(1, NUM_CLASSES, len(labels))) % 3, labels)
    config = CONFIG.model_copy(update={"epochs": 6})
    run = train_with_threshold_samples(
        texts,
        observed,
        num_classes=NUM_CLASSES,
        config=config,
        dynamics_dir=tmp_path / "aum",
        progress=quiet,
    )
    assert run.train.model.num_classes == NUM_CLASSES + 1
    assert np.isfinite(run.cutoff)
    assert run.is_threshold.sum() == len(labels) // (NUM_CLASSES + 1)
    assert np.isnan(run.aum[run.is_threshold]).all()
    assert np.isfinite(run.aum[~run.is_threshold]).all()
    real_noisy = noisy & ~run.is_threshold
    assert 0 < run.estimated_mislabeled < (~run.is_threshold).sum()
    assert run.estimated_mislabeled == run.flagged.sum()
    # the 99th percentile of 100 threshold samples is a cautious cut-off: nearly all injected
    # noise falls below it, and the flagged set is far richer in noise than the 15% base rate
    caught = (run.flagged & real_noisy).sum()
    assert caught / real_noisy.sum() > 0.9
    assert caught / run.flagged.sum() > 0.3
    assert read_dynamics(tmp_path / "aum").num_classes == NUM_CLASSES + 1


def test_threshold_run_uses_a_temporary_dir_by_default() -> None:
    run = train_with_threshold_samples(
        TEXTS, LABELS, num_classes=NUM_CLASSES, config=CONFIG, progress=quiet
    )
    assert run.train.dynamics_dir is None
    assert run.threshold_aum.shape == (run.is_threshold.sum(),)


def test_overlapping_runs_in_threads_restore_the_callers_determinism_flag() -> None:
    """Run A starts, run B starts, A ends, B ends: the caller's flag must come back."""
    import threading

    from cartoflow.train import _torch_session

    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def run_a() -> None:
        with _torch_session(CONFIG):
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def run_b() -> None:
        a_in.wait(5)
        with _torch_session(CONFIG):
            b_in.set()
            a_out.wait(5)

    assert not torch.are_deterministic_algorithms_enabled()
    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not torch.are_deterministic_algorithms_enabled()
