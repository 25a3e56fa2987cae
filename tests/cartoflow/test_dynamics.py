"""Tests of cartoflow.dynamics: recording, the on-disk layout, reading back, and every error."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cartoflow.dynamics as dyn
from cartoflow.dynamics import (
    DynamicsRecorder,
    TrainingDynamics,
    read_dynamics,
    record_eval_pass,
    reduce_logits,
)
from cartoflow.errors import DynamicsError

N, C, B = 10, 3, 4


# --------------------------------------------------------------------------------------------
# Fixtures and the slow reference
# --------------------------------------------------------------------------------------------


def slow_reduce(logits: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row, obviously correct: softmax, gold probability, margin, argmax."""
    gold_prob, correct, margin, pred, probs = [], [], [], [], []
    for row, t in zip(logits.astype(np.float64).tolist(), targets.tolist(), strict=True):
        top = max(row)
        exps = [math.exp(v - top) for v in row]
        total = sum(exps)
        p = [e / total for e in exps]
        best = row.index(top)
        other = max(v for j, v in enumerate(row) if j != t)
        gold_prob.append(p[t])
        correct.append(best == t)
        margin.append(row[t] - other)
        pred.append(best)
        probs.append(p)
    return {
        "gold_prob": np.array(gold_prob),
        "correct": np.array(correct),
        "margin": np.array(margin),
        "pred": np.array(pred),
        "probs": np.array(probs),
    }


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    """(E=3, N, C) float32 logits and (N,) labels."""
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(3, N, C)).astype(np.float32)
    labels = rng.integers(0, C, size=N)
    return logits, labels


def record(
    path: Path,
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: range | None = None,
    convert: Any = None,
    **kwargs: Any,
) -> DynamicsRecorder:
    """Record every epoch of ``logits`` in a shuffled batch order, like a training loop."""
    rng = np.random.default_rng(1)
    epochs = epochs if epochs is not None else range(len(logits))
    with DynamicsRecorder(
        path, num_samples=logits.shape[1], num_classes=logits.shape[2], **kwargs
    ) as rec:
        for epoch in epochs:
            order = rng.permutation(logits.shape[1])
            for start in range(0, len(order), B):
                idx = order[start : start + B]
                batch = (idx, logits[epoch][idx], labels[idx])
                if convert is not None:
                    batch = convert(*batch)
                rec.update(epoch=epoch, samples=batch[0], logits=batch[1], targets=batch[2])
            rec.end_epoch(epoch)
    return rec


def expected(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    per_epoch = [slow_reduce(epoch_logits, labels) for epoch_logits in logits]
    return {key: np.stack([e[key] for e in per_epoch]) for key in per_epoch[0]}


def assert_matches(result: TrainingDynamics, want: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(result.gold_prob, want["gold_prob"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.margin, want["margin"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(result.correct, want["correct"])
    np.testing.assert_array_equal(result.pred, want["pred"])
    if result.probs is not None:
        np.testing.assert_allclose(result.probs, want["probs"], rtol=1e-5, atol=1e-6)


def manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "_manifest.json").read_text())


def raises(match: str) -> Any:
    return pytest.raises(DynamicsError, match=match)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def test_round_trip_numpy(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    record(tmp_path, logits, labels)

    result = read_dynamics(tmp_path)

    assert result.gold_prob.shape == (3, N) and result.gold_prob.dtype == np.float32
    assert result.correct.dtype == np.bool_ and result.pred.dtype == np.int16
    assert result.probs is not None and result.probs.shape == (3, N, C)
    assert (result.num_epochs, result.num_samples, result.num_classes) == (3, N, C)
    assert result.mode == "train" and result.epochs == (0, 1, 2)
    assert_matches(result, expected(logits, labels))


def test_on_disk_layout(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    record(tmp_path, logits, labels)

    info = manifest(tmp_path)
    assert info["format"] == 1 and info["status"] == "complete" and info["reason"] is None
    assert (info["num_samples"], info["num_classes"], info["mode"]) == (N, C, "train")
    assert info["epochs"] == [0, 1, 2] and info["ranks"] == [0]
    table = pq.read_table(tmp_path / "epoch=1" / "part-0.parquet")
    assert table.schema.names == [
        "sample",
        "epoch",
        "gold_prob",
        "correct",
        "margin",
        "pred",
        "probs",
    ]
    types = {f.name: f.type for f in table.schema}
    assert types["sample"] == pa.int64() and types["epoch"] == pa.int32()
    assert types["gold_prob"] == pa.float32() and types["margin"] == pa.float32()
    assert types["correct"] == pa.bool_() and types["pred"] == pa.int16()
    assert pa.types.is_fixed_size_list(types["probs"]) and types["probs"].list_size == C
    assert types["probs"].value_type == pa.float32()
    assert not any(field.nullable for field in table.schema)
    assert table.column("sample").to_pylist() == list(range(N))
    assert set(table.column("epoch").to_pylist()) == {1}
    # Atomic writes leave no temporary files behind.
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_round_trip_torch_tensors(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    torch = pytest.importorskip("torch")
    logits, labels = data

    def as_tensors(idx: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[Any, ...]:
        # Logits straight out of a model require grad; indices and labels come as int64.
        return torch.from_numpy(idx), torch.from_numpy(x).requires_grad_(), torch.from_numpy(y)

    record(tmp_path, logits, labels, convert=as_tensors)

    assert_matches(read_dynamics(tmp_path), expected(logits, labels))


@pytest.mark.parametrize("probs", [True, False])
def test_device_path_reduces_on_the_device_with_one_transfer(
    tmp_path: Path,
    data: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    probs: bool,
) -> None:
    torch = pytest.importorskip("torch")
    from torch.overrides import TorchFunctionMode

    logits, labels = data
    # Treat CPU tensors as if they lived on an accelerator: the on-device path runs here.
    monkeypatch.setattr(dyn, "_on_host", lambda tensor: False)

    class CountCalls(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: Counter[str] = Counter()

        def __torch_function__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            self.calls[getattr(func, "__name__", str(func))] += 1
            return func(*args, **(kwargs or {}))

    with DynamicsRecorder(tmp_path, num_samples=N, num_classes=C, record_probs=probs) as rec:
        for epoch in range(3):
            for start in range(0, N, B):
                idx = torch.arange(start, min(start + B, N))
                x = torch.from_numpy(logits[epoch][start : start + B]).requires_grad_()
                y = torch.from_numpy(labels[start : start + B])
                with CountCalls() as counter:
                    rec.update(epoch=epoch, samples=idx, logits=x, targets=y)
                # Samples on the "device" travel in the same transfer as the scores.
                assert counter.calls["cpu"] == 1
                assert counter.calls["item"] == counter.calls["tolist"] == 0

    result = read_dynamics(tmp_path)
    assert (result.probs is not None) == probs
    assert_matches(result, expected(logits, labels))


def test_device_and_host_batches_in_one_epoch(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    logits, labels = data
    monkeypatch.setattr(dyn, "_on_host", lambda tensor: False)
    with DynamicsRecorder(tmp_path, num_samples=N, num_classes=C) as rec:
        for epoch in range(3):
            for start in range(0, N, B):
                idx = np.arange(start, min(start + B, N))
                x, y = logits[epoch][idx], labels[idx]
                if start == B:  # the middle batch comes as numpy: kept raw, reduced at the end
                    rec.update(epoch=epoch, samples=idx, logits=x, targets=y)
                else:
                    rec.update(
                        epoch=epoch,
                        samples=torch.from_numpy(idx),
                        logits=torch.from_numpy(x),
                        targets=torch.from_numpy(y),
                    )
    assert_matches(read_dynamics(tmp_path), expected(logits, labels))


def test_many_torch_batches_are_copied_in_bulk(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    n, c = 300, 4
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, n, c)).astype(np.float32)
    labels = rng.integers(0, c, n)
    with DynamicsRecorder(tmp_path, num_samples=n, num_classes=c) as rec:
        for epoch in range(2):
            order = torch.from_numpy(rng.permutation(n))
            for start in range(0, n, 2):  # 150 batches: several bulk copies per epoch
                idx = order[start : start + 2]
                rec.update(
                    epoch=epoch,
                    samples=idx,
                    logits=torch.from_numpy(logits[epoch][idx.numpy()]).requires_grad_(),
                    targets=torch.from_numpy(labels[idx.numpy()]),
                )
    assert_matches(read_dynamics(tmp_path), expected(logits, labels))


def test_tensors_changed_after_update(rec: DynamicsRecorder) -> None:
    torch = pytest.importorskip("torch")
    logits = torch.zeros(4, C)
    rec.update(epoch=0, samples=torch.arange(4), logits=logits, targets=torch.zeros(4).long())
    logits.add_(1.0)  # in place, before the recorder copied the batch
    with raises(
        r"Expected the tensors given to update\(\) to stay unchanged .* but the samples, logits "
        r"or targets of batch 0 of epoch 0 were modified in place afterwards; pass copies"
    ):
        rec.end_epoch()


def test_device_path_accepts_half_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(dyn, "_on_host", lambda tensor: False)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]], dtype=torch.bfloat16)
    targets = torch.tensor([0, 2])

    got = reduce_logits(logits, targets)

    want = slow_reduce(logits.float().numpy(), targets.numpy())
    np.testing.assert_allclose(got["gold_prob"], want["gold_prob"], rtol=1e-6)
    np.testing.assert_array_equal(got["pred"], [0, 1])


def test_host_bfloat16_tensors_are_accepted(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.bfloat16)
    with DynamicsRecorder(tmp_path, num_samples=2, num_classes=2) as rec:
        rec.update(
            epoch=0, samples=torch.tensor([1, 0]), logits=logits, targets=torch.tensor([0, 1])
        )
    result = read_dynamics(tmp_path)
    np.testing.assert_array_equal(result.pred, [[1, 0]])


@pytest.mark.parametrize("classes", [3, 12, 40])
def test_without_probs(tmp_path: Path, classes: int) -> None:
    # 3 and 12 classes keep raw logits until the epoch ends; 40 classes are reduced batch by
    # batch (raw logits would cost too much memory without probs), row-major.
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, N, classes)).astype(np.float32)
    labels = rng.integers(0, classes, size=N)
    record(tmp_path, logits, labels, record_probs=False)

    result = read_dynamics(tmp_path)

    assert result.probs is None
    assert "probs" not in pq.read_schema(tmp_path / "epoch=0" / "part-0.parquet").names
    assert_matches(result, expected(logits, labels))
    with raises("Expected a probs column, but .* record_probs=False"):
        read_dynamics(tmp_path, columns=["gold_prob", "probs"])


def test_columns_select_probs(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    record(tmp_path, logits, labels)

    assert read_dynamics(tmp_path, columns=["gold_prob", "correct"]).probs is None
    assert read_dynamics(tmp_path, columns=["probs"]).probs is not None
    with pytest.raises(ValueError, match="Unknown dynamics columns 'prob'; expected some of"):
        read_dynamics(tmp_path, columns=["prob"])


def test_epochs_may_skip_numbers(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    record(tmp_path, logits, labels, epochs=range(0, 3, 2))

    result = read_dynamics(tmp_path)

    assert result.epochs == (0, 2)
    assert_matches(result, expected(logits[[0, 2]], labels))


def test_a_new_epoch_ends_the_open_one(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    samples = np.arange(N)
    with DynamicsRecorder(tmp_path, num_samples=N, num_classes=C) as rec:
        for epoch in range(3):  # never calls end_epoch: rollover and close() do
            rec.update(epoch=epoch, samples=samples, logits=logits[epoch], targets=labels)
        assert rec.epochs == [0, 1]
    assert rec.epochs == [0, 1, 2] and rec.status == "complete"
    assert_matches(read_dynamics(tmp_path), expected(logits, labels))


def test_end_epoch_is_idempotent(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    with DynamicsRecorder(tmp_path, num_samples=N, num_classes=C) as rec:
        rec.update(epoch=0, samples=np.arange(N), logits=logits[0], targets=labels)
        rec.end_epoch(0)
        rec.end_epoch(0)
        rec.end_epoch()
    assert read_dynamics(tmp_path).num_epochs == 1


# --------------------------------------------------------------------------------------------
# Resume, eval mode, several ranks
# --------------------------------------------------------------------------------------------


def test_resume_appends_epochs(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    record(tmp_path, logits, labels, epochs=range(2))

    rec = record(tmp_path, logits, labels, epochs=range(2, 3), resume=True)

    assert rec.epochs == [0, 1, 2]
    assert manifest(tmp_path)["epochs"] == [0, 1, 2]
    assert_matches(read_dynamics(tmp_path), expected(logits, labels))


def test_resume_after_a_crash(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    with (
        pytest.raises(RuntimeError),
        DynamicsRecorder(tmp_path, num_samples=N, num_classes=C) as rec,
    ):
        rec.update(epoch=0, samples=np.arange(N), logits=logits[0], targets=labels)
        rec.end_epoch(0)
        rec.update(epoch=1, samples=np.arange(4), logits=logits[1][:4], targets=labels[:4])
        raise RuntimeError("out of memory")
    assert manifest(tmp_path)["status"] == "incomplete"

    # Restart from the epoch-0 checkpoint: epoch 1 is recorded again, whole.
    record(tmp_path, logits, labels, epochs=range(1, 3), resume=True)

    info = manifest(tmp_path)
    assert info["status"] == "complete" and info["reason"] is None
    assert not (tmp_path / "epoch=1" / "_part-0.partial.parquet").exists()
    assert_matches(read_dynamics(tmp_path), expected(logits, labels))


def test_a_killed_process_keeps_its_complete_epochs(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    logits, labels = data
    rec = DynamicsRecorder(tmp_path, num_samples=N, num_classes=C)
    for epoch in range(2):
        rec.update(epoch=epoch, samples=np.arange(N), logits=logits[epoch], targets=labels)
        rec.end_epoch(epoch)
    rec.update(epoch=2, samples=np.arange(3), logits=logits[2][:3], targets=labels[:3])
    rec._wait_for_writes()  # (a kill during the background write would lose epoch 1 too)
    del rec  # SIGKILL: no close, no mark_incomplete

    assert manifest(tmp_path)["status"] == "recording"
    with raises(r"is marked recording; complete epochs: 0, 1\. Pass allow_incomplete=True"):
        read_dynamics(tmp_path)
    assert_matches(read_dynamics(tmp_path, allow_incomplete=True), expected(logits[:2], labels))

    resumed = DynamicsRecorder(tmp_path, num_samples=N, num_classes=C, resume=True)
    assert resumed.epochs == [0, 1]


def test_resume_starts_fresh_without_a_recording(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    logits, labels = data
    record(tmp_path / "new", logits, labels, resume=True)
    assert read_dynamics(tmp_path / "new").num_epochs == 3


def test_existing_recording_needs_resume(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    logits, labels = data
    record(tmp_path, logits, labels, epochs=range(2))
    with raises(r"already holds a complete recording of rank 0 \(epochs 0, 1\)\. Pass resume=True"):
        DynamicsRecorder(tmp_path, num_samples=N, num_classes=C)


def test_resume_needs_the_same_settings(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    logits, labels = data
    record(tmp_path, logits, labels, epochs=range(1))
    with raises(r"same settings, but it was made with num_classes=3 \(here 4\)"):
        DynamicsRecorder(tmp_path, num_samples=N, num_classes=4, resume=True)


def test_resume_rejects_recorded_epochs(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    logits, labels = data
    record(tmp_path, logits, labels, epochs=range(2))
    rec = DynamicsRecorder(tmp_path, num_samples=N, num_classes=C, resume=True)
    with raises(
        r"Expected an epoch after 1 \(epochs 0, 1 are already recorded in .*\), but got epoch 1"
    ):
        rec.update(epoch=1, samples=np.arange(N), logits=logits[1], targets=labels)


def test_eval_mode(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    rec = DynamicsRecorder(tmp_path, num_samples=N, num_classes=C, mode="eval")
    for epoch in range(3):
        # ... a training epoch, then a clean pass over the training set in eval mode:
        batches = [
            (np.arange(s, min(s + B, N)), logits[epoch][s : s + B], labels[s : s + B])
            for s in range(0, N, B)
        ]
        record_eval_pass(rec, batches, epoch=epoch)
    rec.close()

    result = read_dynamics(tmp_path)

    assert result.mode == "eval" and manifest(tmp_path)["mode"] == "eval"
    assert_matches(result, expected(logits, labels))


def test_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown mode 'test'; expected one of train, eval"):
        DynamicsRecorder(tmp_path, num_samples=N, num_classes=C, mode="test")  # type: ignore[arg-type]


def record_ranks(
    path: Path, logits: np.ndarray, labels: np.ndarray, shards: list[np.ndarray]
) -> None:
    recs = [
        DynamicsRecorder(path, num_samples=N, num_classes=C, rank=r, world_size=len(shards))
        for r in range(len(shards))
    ]
    for epoch in range(len(logits)):
        for rec, shard in zip(recs, shards, strict=True):
            rec.update(
                epoch=epoch, samples=shard, logits=logits[epoch][shard], targets=labels[shard]
            )
            rec.end_epoch(epoch)
    for rec in recs:
        rec.close()


def test_ranks_merge_into_one_epoch(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    # Like a DistributedSampler: rank r takes every second sample.
    record_ranks(tmp_path, logits, labels, [np.arange(0, N, 2), np.arange(1, N, 2)])

    assert (tmp_path / "epoch=2" / "part-1.parquet").exists()
    info = manifest(tmp_path)
    assert info["ranks"] == [0, 1] and info["status"] == "complete"
    assert_matches(read_dynamics(tmp_path), expected(logits, labels))


def test_ranks_still_recording(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    rank0 = DynamicsRecorder(tmp_path, num_samples=N, num_classes=C, rank=0, world_size=2)
    rank0.update(epoch=0, samples=np.arange(5), logits=logits[0][:5], targets=labels[:5])
    rank0.close()
    with raises("Expected a complete recording, but .* is marked recording; complete epochs: none"):
        read_dynamics(tmp_path)


def test_ranks_that_overlap(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    record_ranks(tmp_path, logits, labels, [np.arange(0, 6), np.arange(5, N)])
    with raises(
        r"exactly once per epoch across ranks, but in epoch 0 samples 5 were recorded more than "
        r"once \(by ranks 0, 1\)"
    ):
        read_dynamics(tmp_path)


def test_ranks_that_miss_samples(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    record_ranks(tmp_path, logits, labels, [np.arange(0, 4), np.arange(5, N - 1)])
    with raises("but 2 are missing from all ranks' parts: samples 4, 9"):
        read_dynamics(tmp_path)


def test_rank_out_of_range(tmp_path: Path) -> None:
    with raises(r"0 <= rank < world_size, but got rank 2 and world_size 1; pass world_size="):
        DynamicsRecorder(tmp_path, num_samples=N, num_classes=C, rank=2)


# --------------------------------------------------------------------------------------------
# Failures: context manager, incomplete recordings, reading
# --------------------------------------------------------------------------------------------


def test_exception_marks_the_recording_incomplete(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    logits, labels = data
    with pytest.raises(KeyError), DynamicsRecorder(tmp_path, num_samples=N, num_classes=C) as rec:
        rec.update(epoch=0, samples=np.arange(N), logits=logits[0], targets=labels)
        rec.update(epoch=1, samples=np.arange(3), logits=logits[1][:3], targets=labels[:3])
        raise KeyError("boom")

    info = manifest(tmp_path)
    assert info["status"] == "incomplete" and info["epochs"] == [0]
    assert info["reason"] == "KeyError: 'boom'"
    assert info["rank_status"]["0"]["partial_epoch"] == 1
    # The partial epoch is kept, under a name that dataset readers skip.
    partial = pq.read_table(tmp_path / "epoch=1" / "_part-0.partial.parquet")
    assert partial.column("sample").to_pylist() == [0, 1, 2]
    assert not (tmp_path / "epoch=1" / "part-0.parquet").exists()
    with raises(
        r"Expected a complete recording, but .* is marked incomplete \(KeyError: 'boom'\); "
        r"complete epochs: 0\. Pass allow_incomplete=True"
    ):
        read_dynamics(tmp_path)

    result = read_dynamics(tmp_path, allow_incomplete=True)
    assert result.epochs == (0,)
    assert_matches(result, expected(logits[:1], labels))


def test_recorder_errors_mark_the_recording_incomplete(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    logits, labels = data
    rec = DynamicsRecorder(tmp_path, num_samples=N, num_classes=C)
    rec.update(epoch=0, samples=np.arange(5), logits=logits[0][:5], targets=labels[:5])
    with raises("missing"):
        rec.end_epoch(0)  # no context manager: the recorder marks itself

    assert rec.status == "incomplete"
    assert "are missing" in manifest(tmp_path)["reason"]
    with raises("already incomplete"):
        rec.update(epoch=1, samples=np.arange(N), logits=logits[1], targets=labels)
    with raises("is marked incomplete"):
        read_dynamics(tmp_path)


def test_a_failed_write_marks_the_recording_incomplete(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    logits, labels = data

    def disk_full(table: pa.Table, path: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dyn, "_write_table", disk_full)
    rec = DynamicsRecorder(tmp_path, num_samples=N, num_classes=C)
    rec.update(epoch=0, samples=np.arange(N), logits=logits[0], targets=labels)
    rec.end_epoch()  # the write runs in the background: its failure shows at the next sync
    with raises(
        r"Expected epoch 0 to be written to .*part-0.parquet, but writing it failed: "
        r"OSError: \[Errno 28\] No space left on device"
    ):
        rec.close()
    info = manifest(tmp_path)
    assert info["status"] == "incomplete" and info["epochs"] == []
    assert not list(tmp_path.rglob("*.tmp"))


def test_update_after_close(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    rec = record(tmp_path, logits, labels, epochs=range(1))
    with raises(
        r"Expected an open recorder, but the recorder for .* is already complete; "
        r"create a new one \(resume=True\)"
    ):
        rec.update(epoch=1, samples=np.arange(N), logits=logits[1], targets=labels)
    # The complete recording is left alone.
    assert manifest(tmp_path)["status"] == "complete"


def test_read_without_a_manifest(tmp_path: Path) -> None:
    with raises(
        f"Expected a dynamics directory with _manifest.json, but the directory {tmp_path} has none"
    ):
        read_dynamics(tmp_path)


def test_read_a_foreign_manifest(tmp_path: Path) -> None:
    (tmp_path / "_manifest.json").write_text('{"format": 7}')
    with raises("dynamics manifest of format 1, but got format 7"):
        read_dynamics(tmp_path)


def test_read_without_epochs(tmp_path: Path) -> None:
    DynamicsRecorder(tmp_path, num_samples=N, num_classes=C).close()
    with raises(r"at least one complete epoch, but .* \(status complete\) holds none"):
        read_dynamics(tmp_path)


def test_read_with_a_deleted_part(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = data
    record(tmp_path, logits, labels)
    (tmp_path / "epoch=1" / "part-0.parquet").unlink()
    with raises(r"part files of complete epoch 1, but .*part-0.parquet do not exist"):
        read_dynamics(tmp_path)


def test_training_dynamics_checks_shapes() -> None:
    ok = np.zeros((2, 3))
    with raises(r"Expected margin of shape \(2, 3\) like gold_prob, but got shape \(2, 4\)"):
        TrainingDynamics(ok, ok.astype(bool), np.zeros((2, 4)), ok, None, num_classes=2)
    with raises(r"Expected probs of shape \(2, 3, 2\), but got shape \(2, 3\)"):
        TrainingDynamics(ok, ok.astype(bool), ok, ok, ok, num_classes=2)
    assert TrainingDynamics(ok, ok.astype(bool), ok, ok, None, num_classes=2).epochs == (0, 1)


# --------------------------------------------------------------------------------------------
# Bad input: one test per error, each checking what the message says
# --------------------------------------------------------------------------------------------


@pytest.fixture
def rec(tmp_path: Path) -> DynamicsRecorder:
    return DynamicsRecorder(tmp_path, num_samples=N, num_classes=C)


def batch(samples: list[int], *, classes: int = C, **changes: Any) -> dict[str, Any]:
    rng = np.random.default_rng(len(samples))
    out = {
        "samples": np.array(samples),
        "logits": rng.normal(size=(len(samples), classes)).astype(np.float32),
        "targets": np.array(samples) % C,
    }
    out.update(changes)
    return out


def test_sample_seen_twice_in_an_epoch(rec: DynamicsRecorder) -> None:
    rec.update(epoch=0, **batch([0, 1, 2, 3]))
    rec.update(epoch=0, **batch([4, 2, 5, 6]))
    rec.update(epoch=0, **batch([7, 8]))
    with raises(
        r"Expected each sample once per epoch, but in epoch 0 samples 2 were recorded more "
        "than once"
    ):
        rec.end_epoch(0)


def test_sample_twice_in_one_batch(rec: DynamicsRecorder) -> None:
    rec.update(epoch=0, **batch([0, 1, 1, 2, 3, 4, 5, 6, 8, 9]))
    with raises("samples 1 were recorded more than once"):
        rec.end_epoch(0)


def test_more_rows_than_samples(rec: DynamicsRecorder) -> None:
    rec.update(epoch=0, **batch(list(range(8))))
    with raises(
        r"batch 1 of epoch 0 brings the epoch to 12 rows for 10 samples: samples 0, 1 were "
        "recorded more than once"
    ):
        rec.update(epoch=0, **batch([8, 9, 0, 1]))


def test_samples_missing_from_an_epoch(rec: DynamicsRecorder) -> None:
    rec.update(epoch=0, **batch([0, 1, 2, 4, 5, 6, 8, 9]))
    with raises(
        r"Expected every sample in \[0, 10\) once in epoch 0, but 2 of 10 are missing: samples 3, 7"
    ):
        rec.end_epoch(0)


def test_sample_index_out_of_range(rec: DynamicsRecorder) -> None:
    rec.update(epoch=0, **batch([0, 1, 2, 3, 4, 5, 6, 7, 10, -1]))
    with raises(
        r"Expected sample indices in \[0, 10\) \(num_samples=10\) in epoch 0, but got -1, 10"
    ):
        rec.end_epoch()


def test_non_finite_logits(rec: DynamicsRecorder) -> None:
    logits = np.zeros((N, C), np.float32)
    logits[3, 1] = np.nan
    logits[7, 0] = -np.inf
    rec.update(epoch=0, **batch(list(range(N)), logits=logits))
    with raises(r"Expected finite logits in epoch 0, but samples 3, 7 have NaN or infinite logits"):
        rec.end_epoch()


def test_non_finite_logits_on_the_device(
    rec: DynamicsRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(dyn, "_on_host", lambda tensor: False)
    logits = torch.zeros(4, C)
    logits[2, 2] = float("inf")
    with raises(r"Expected finite logits \(epoch 0, batch 0\), but samples 6 have NaN or infinite"):
        rec.update(
            epoch=0,
            samples=torch.arange(4, 8),
            logits=logits,
            targets=torch.zeros(4, dtype=torch.int64),
        )


def test_targets_out_of_range(rec: DynamicsRecorder) -> None:
    targets = np.arange(N) % C
    targets[[2, 5]] = [3, -1]
    rec.update(epoch=0, **batch(list(range(N)), targets=targets))
    with raises(
        r"Expected targets in \[0, 3\) \(num_classes=3\) in epoch 0, but 2 are out of range: "
        "sample 2 -> 3, sample 5 -> -1"
    ):
        rec.end_epoch()


def test_targets_out_of_range_on_the_device(
    rec: DynamicsRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(dyn, "_on_host", lambda tensor: False)
    with raises(
        r"Expected targets in \[0, 3\) .*\(epoch 0, batch 0\), but 1 are out of range: "
        "sample 1 -> 7"
    ):
        rec.update(
            epoch=0, samples=torch.arange(2), logits=torch.zeros(2, C), targets=torch.tensor([0, 7])
        )


def test_targets_that_are_not_integers(rec: DynamicsRecorder) -> None:
    with raises(r"Expected `targets` to hold integers \(epoch 0, batch 0\), but got dtype float64"):
        rec.update(epoch=0, **batch([0, 1], targets=np.array([0.0, 1.0])))


def test_mismatched_lengths(rec: DynamicsRecorder) -> None:
    with raises(
        r"one row per sample in samples, logits and targets \(epoch 0, batch 0\), but got "
        "3 samples, 3 logit rows and 2 targets"
    ):
        rec.update(epoch=0, **batch([0, 1, 2], targets=np.array([0, 1])))


def test_logits_not_2d(rec: DynamicsRecorder) -> None:
    with raises(
        r"Expected logits of shape \(batch, 3\) \(epoch 0, batch 0\), but got shape \(3,\)"
    ):
        rec.update(epoch=0, **batch([0, 1, 2], logits=np.zeros(3)))


def test_logits_with_the_wrong_class_count(rec: DynamicsRecorder) -> None:
    with raises(
        r"Expected logits of shape \(batch, 3\) \(epoch 0, batch 0\), but got shape \(2, 4\)"
    ):
        rec.update(epoch=0, **batch([0, 1], classes=4))


def test_epoch_going_backwards(rec: DynamicsRecorder) -> None:
    rec.update(epoch=2, **batch([0, 1]))
    with raises(
        r"Expected epoch 2 or later \(epoch 2 is being recorded\), but got epoch 1: epochs "
        "must not go backwards"
    ):
        rec.update(epoch=1, **batch([2, 3]))


def test_epoch_already_recorded(rec: DynamicsRecorder) -> None:
    rec.update(epoch=0, **batch(list(range(N))))
    rec.end_epoch(0)
    with raises(
        r"Expected an epoch after 0 \(epochs 0 are already recorded in .*\), but got epoch 0"
    ):
        rec.update(epoch=0, **batch([0]))


def test_epoch_that_is_not_an_int(rec: DynamicsRecorder) -> None:
    with raises("Expected `epoch` to be an int, but got float 1.5"):
        rec.update(epoch=1.5, **batch([0]))  # type: ignore[arg-type]


def test_end_epoch_of_another_epoch(rec: DynamicsRecorder) -> None:
    rec.update(epoch=0, **batch([0]))
    with raises(r"Expected end_epoch\(0\) for the open epoch, but got end_epoch\(1\)"):
        rec.end_epoch(1)


def test_labels_that_change_between_epochs(rec: DynamicsRecorder) -> None:
    # The classic bug: positions in a shuffled order passed as sample indices.
    rec.update(epoch=0, **batch(list(range(N))))
    targets = np.arange(N) % C
    targets[4] = (targets[4] + 1) % C
    rec.update(epoch=1, **batch(list(range(N)), targets=targets))
    with raises(
        r"same gold label for a sample in every epoch, but in epoch 1 1 samples changed label: "
        r"sample 4: 1 -> 2\. `samples` must be stable dataset row indices"
    ):
        rec.end_epoch()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": 0}, "Expected num_samples >= 1, but got 0"),
        ({"num_classes": 1}, r"Expected num_classes in \[2, 32767\] .*, but got 1"),
    ],
)
def test_bad_recorder_arguments(tmp_path: Path, kwargs: dict[str, int], message: str) -> None:
    with raises(message):
        DynamicsRecorder(tmp_path, **{"num_samples": N, "num_classes": C, **kwargs})


def test_reduce_logits_errors() -> None:
    with raises(r"Expected logits of shape \(batch, classes >= 2\), but got shape \(2, 1\)"):
        reduce_logits(np.zeros((2, 1)), np.zeros(2, dtype=int))
    with raises(r"Expected targets in \[0, 2\) .*: row 1 -> 2"):
        reduce_logits(np.zeros((2, 2)), np.array([0, 2]))
    with raises("Expected finite logits, but rows 0 have NaN or infinite logits"):
        reduce_logits(np.array([[np.nan, 0.0], [1.0, 0.0]]), np.array([0, 1]))


# --------------------------------------------------------------------------------------------
# Memory and imports
# --------------------------------------------------------------------------------------------


def test_memory_is_bounded_by_one_epoch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, c = 1000, 4
    labels = rng.integers(0, c, n)
    rec = DynamicsRecorder(tmp_path, num_samples=n, num_classes=c)
    sizes = []
    for epoch in range(4):
        for start in range(0, n, 100):
            idx = np.arange(start, start + 100)
            rec.update(
                epoch=epoch, samples=idx, logits=rng.normal(size=(100, c)), targets=labels[idx]
            )
        rec.end_epoch(epoch)
        sizes.append(rec.buffer_nbytes)
    rec.close()

    # The buffers are allocated once and reused: nothing grows with the epochs...
    assert len(set(sizes)) == 1
    # ...and they hold at most one epoch: 4 * C + 41 bytes per sample.
    assert sizes[0] <= n * (4 * c + 41)
    arrays = [v for v in vars(rec).values() if isinstance(v, np.ndarray)]
    assert all(a.shape[0] == n for a in arrays)
    assert sum(a.nbytes for a in arrays) == sizes[0]


def test_torch_is_not_imported_for_numpy_input(tmp_path: Path) -> None:
    code = f"""
import sys
import numpy as np
from cartoflow import DynamicsRecorder, read_dynamics
with DynamicsRecorder({str(tmp_path)!r}, num_samples=4, num_classes=2) as rec:
    for epoch in range(2):
        rec.update(epoch=epoch, samples=np.arange(4), logits=np.eye(4, 2), targets=np.zeros(4, int))
assert read_dynamics({str(tmp_path)!r}).num_epochs == 2
assert "torch" not in sys.modules, "torch was imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


# --------------------------------------------------------------------------------------------
# The reduction against the slow reference
# --------------------------------------------------------------------------------------------


@st.composite
def logits_and_targets(draw: st.DrawFn, max_classes: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rows = draw(st.integers(1, 8))
    classes = draw(st.integers(2, max_classes))
    elements = st.floats(-30, 30, width=32, allow_subnormal=False)
    logits = draw(hnp.arrays(np.float32, (rows, classes), elements=elements))
    targets = draw(hnp.arrays(np.int64, rows, elements=st.integers(0, classes - 1)))
    return logits, targets


@settings(max_examples=150, deadline=None)
@given(logits_and_targets())
def test_reduce_matches_the_slow_reference(case: tuple[np.ndarray, np.ndarray]) -> None:
    logits, targets = case
    got = reduce_logits(logits, targets)
    want = slow_reduce(logits, targets)
    np.testing.assert_allclose(got["gold_prob"], want["gold_prob"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["probs"], want["probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["margin"], want["margin"], rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(got["pred"], want["pred"])
    np.testing.assert_array_equal(got["correct"], want["correct"])


def reduce_row_major(logits: np.ndarray, targets: np.ndarray) -> Any:
    n, c = logits.shape
    out = (
        np.empty(n, np.float32),
        np.empty(n, np.float32),
        np.empty(n, np.int64),
        np.empty(n, bool),
        np.empty((n, c), np.float32),
    )
    dyn._reduce_rows_block(logits, targets, None, slice(0, n), out)
    return dyn._Reduced(out[0], out[1], out[2], targets, out[3], out[4], None)


@settings(max_examples=60, deadline=None)
@given(logits_and_targets(max_classes=40))
def test_all_reductions_agree(case: tuple[np.ndarray, np.ndarray]) -> None:
    """Class-major, row-major and on-device (torch) reductions give the same scores."""
    torch = pytest.importorskip("torch")
    logits, targets = case
    class_major = dyn._reduce_numpy(logits, targets, want_probs=True)
    row_major = reduce_row_major(logits, targets)
    device = dyn._reduce_tensor(
        torch.from_numpy(logits),
        torch.from_numpy(targets),
        None,
        num_classes=logits.shape[1],
        want_probs=True,
    )
    for other in (row_major, device):
        np.testing.assert_allclose(class_major.gold_prob, other.gold_prob, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(class_major.margin, other.margin, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(class_major.probs, other.probs, rtol=1e-5, atol=1e-7)
        # Ties may resolve to any of the tied classes; the prediction must be a maximum.
        rows = np.arange(len(targets))
        np.testing.assert_array_equal(logits[rows, other.pred], logits.max(axis=1))
    np.testing.assert_array_equal(class_major.pred, row_major.pred)
