"""Training-dynamics capture: what the model thought of every sample at every epoch.

:class:`DynamicsRecorder` is called once per batch from any training loop, with numpy arrays or
torch tensors on any device. Logits are reduced where they live (softmax probability of the gold
label, correctness, margin, prediction, optionally all probabilities): on an accelerator, batch
by batch, with one device -> host transfer per batch; on the host, in one vectorised pass over
the epoch, because a dozen small numpy calls per batch would cost more than the training step of
a small model. Rows land in preallocated one-epoch buffers; at the end of an epoch they are
checked (every sample exactly once, finite, labels in range) and written as one Parquet file per
epoch and writer rank. Memory is bounded by one epoch's rows, never by epochs x samples.
:func:`read_dynamics` turns the files back into dense ``(epochs, samples)`` arrays.

On-disk layout (a directory)::

    epoch=E/part-R.parquet   sample int64, epoch int32, gold_prob float32, correct bool,
                             margin float32, pred int16, probs fixed_size_list<float32>[C]
    _manifest.json           format, num_samples, num_classes, mode, status, complete epochs,
                             ranks, reason, per-rank status; written when recording starts,
                             closes or fails. In between, a part file appears (atomic rename)
                             only once its epoch passed every check: it marks the epoch
                             complete, so a killed process loses at most the open epoch.

The scores are those of Dataset Cartography (Swayamdipta et al. 2020: gold probability per
epoch), Area Under the Margin (Pleiss et al. 2020: gold logit minus the largest other logit) and
forgetting events (Toneva et al. 2019: correctness per epoch).

torch is never imported here unless a tensor is passed in: tensors are recognised by the module
of their type, so ``from cartoflow import DynamicsRecorder`` works in numpy-only code.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import secrets
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from cartoflow.errors import DynamicsError, describe_items

__all__ = [
    "COLUMNS",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MODES",
    "DynamicsRecorder",
    "TrainingDynamics",
    "read_dynamics",
    "record_eval_pass",
    "reduce_logits",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "_manifest.json"
MODES: tuple[str, ...] = ("train", "eval")
COLUMNS: tuple[str, ...] = ("gold_prob", "correct", "margin", "pred", "probs")
"""Value columns of a part file, in file order (after ``sample`` and ``epoch``)."""

Mode = Literal["train", "eval"]

# pred is stored as int16.
_MAX_CLASSES = int(np.iinfo(np.int16).max)
# Keep raw logits until the end of the epoch when no probabilities are recorded only up to this
# many classes (the raw rows then cost at most 4 * 32 bytes per sample).
_DEFER_MAX_CLASSES = 32
# Up to this many classes, logits are reduced class-major (see _reduce_numpy).
_CLASS_MAJOR_MAX = 32
# Batches of CPU tensors held before one bulk copy (see DynamicsRecorder._queue).
_QUEUE_BATCHES = 64
# Rows per block of the host reduction: small enough that the temporaries stay in cache and
# are reused from the heap, large enough that numpy's per-call overhead does not show.
_BLOCK_ROWS = 4096
_INT32_MIN = int(np.iinfo(np.int32).min)
_INT32_MAX = int(np.iinfo(np.int32).max)

# Partial epochs start with "_" so that Parquet dataset readers (pyarrow, Dask, Spark) skip them.
_PARTIAL_TEMPLATE = "_part-{rank}.partial.parquet"
_PART_TEMPLATE = "part-{rank}.parquet"


def _epoch_dir(root: Path, epoch: int) -> Path:
    return root / f"epoch={epoch}"


def _part_path(root: Path, epoch: int, rank: int) -> Path:
    return _epoch_dir(root, epoch) / _PART_TEMPLATE.format(rank=rank)


def _partial_path(root: Path, epoch: int, rank: int) -> Path:
    return _epoch_dir(root, epoch) / _PARTIAL_TEMPLATE.format(rank=rank)


_TENSOR_TYPES: dict[type, bool] = {}


def _is_tensor(value: object) -> bool:
    # isinstance(value, torch.Tensor) would need torch imported; the type's module does not.
    # Cached per type: this runs several times per batch.
    cls = type(value)
    known = _TENSOR_TYPES.get(cls)
    if known is None:
        known = _TENSOR_TYPES[cls] = cls.__module__.startswith("torch")
    return known


def _describe_epochs(epochs: Collection[int]) -> str:
    if not epochs:
        return "none"
    ordered = sorted(epochs)
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{ordered[0]}-{ordered[-1]}"
    return describe_items(ordered)


# --------------------------------------------------------------------------------------------
# The reduction: logits -> gold_prob, correct, margin, pred, probs
# --------------------------------------------------------------------------------------------


class _Reduced(NamedTuple):
    """One batch, reduced, on the host. All arrays have B rows."""

    gold_prob: npt.NDArray[np.float32]
    margin: npt.NDArray[np.float32]
    pred: npt.NDArray[np.integer[Any]]
    target: npt.NDArray[np.integer[Any]]
    finite: npt.NDArray[np.bool_]
    probs: npt.NDArray[np.float32] | None
    samples: npt.NDArray[np.integer[Any]] | None  # only when the samples came from the device


def _reduce_numpy(
    logits: npt.NDArray[np.floating[Any]],
    targets: npt.NDArray[np.integer[Any]],
    *,
    want_probs: bool,
    rows: np.ndarray | None = None,
) -> _Reduced:
    """Vectorised reduction of a (B, C) logits block on the CPU; targets must be in range.

    ``rows`` reduces ``logits[rows]`` instead, with the gather fused into the first copy.
    """
    n, c = len(targets), logits.shape[1]
    gold_prob = np.empty(n, dtype=np.float32)
    margin = np.empty(n, dtype=np.float32)
    pred = np.empty(n, dtype=np.int64)
    finite = np.empty(n, dtype=bool)
    probs = np.empty((n, c), dtype=np.float32) if want_probs else None
    # Blocks small enough that every temporary is reused from the heap: fresh large arrays
    # are mmapped, and their page faults cost more than the arithmetic.
    step = _BLOCK_ROWS
    reduce_block = _reduce_block if c <= _CLASS_MAJOR_MAX else _reduce_rows_block
    for begin in range(0, n, step):
        block = slice(begin, min(begin + step, n))
        reduce_block(
            logits,
            targets[block],
            None if rows is None else rows[block],
            block,
            (gold_prob, margin, pred, finite, probs),
        )
    return _Reduced(gold_prob, margin, pred, targets, finite, probs, None)


def _reduce_block(
    logits: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray | None,
    block: slice,
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None],
) -> None:
    """Class-major reduction of one block into ``out[...][block]``.

    With few classes, numpy reductions over a short last axis cost ~50 ns per row; over the
    first axis of a (C, B) copy they are plain vector operations. The copy goes column by
    column (a transposing copy in one call is several times slower), and the arithmetic runs
    in place on it.
    """
    gold_prob, margin, pred, finite, probs = out
    n, c = len(targets), logits.shape[1]
    # Gather whole rows first (one pass over memory), then transpose column by column.
    x = logits[block] if rows is None else np.take(logits, rows, axis=0)
    xt = np.empty((c, n), dtype=np.float32)
    for j in range(c):
        xt[j] = x[:, j]
    flat = targets * n + np.arange(n)  # where each row's gold logit sits in xt.ravel()
    gold = xt.ravel()[flat]
    # Maximum and (first) argmax in one sweep over the classes.
    top = xt[0].copy()
    best = pred[block]
    best[:] = 0
    for j in range(1, c):
        np.copyto(best, j, where=xt[j] > top)
        np.maximum(top, xt[j], out=top)
    np.isfinite(xt).all(axis=0, out=finite[block])
    xt.ravel()[flat] = -np.inf
    np.subtract(gold, xt.max(axis=0), out=margin[block])
    xt.ravel()[flat] = gold
    xt -= top
    np.exp(xt, out=xt)
    total = xt.sum(axis=0)
    np.divide(xt.ravel()[flat], total, out=gold_prob[block])
    if probs is not None:
        xt /= total
        for j in range(c):
            probs[block, j] = xt[j]


def _reduce_rows_block(
    logits: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray | None,
    block: slice,
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None],
) -> None:
    """Row-major reduction of one block into ``out[...][block]``, for many classes."""
    gold_prob, margin, pred, finite, probs = out
    x = np.array(logits[block] if rows is None else np.take(logits, rows, axis=0), np.float32)
    at = np.arange(len(targets))
    gold = x[at, targets]
    top = x.max(axis=1)
    pred[block] = x.argmax(axis=1)
    finite[block] = np.isfinite(x).all(axis=1)
    x[at, targets] = -np.inf
    margin[block] = gold - x.max(axis=1)
    x[at, targets] = gold
    x -= top[:, None]
    np.exp(x, out=x)
    total = x.sum(axis=1)
    gold_prob[block] = x[at, targets] / total
    if probs is not None:
        x /= total[:, None]
        probs[block] = x


def _reduce_tensor(
    logits: Any, targets: Any, samples: Any | None, *, num_classes: int, want_probs: bool
) -> _Reduced:
    """Reduce a (B, C) tensor on its own device and bring the result over in one transfer.

    The float results are bit-cast to int32 and packed with the integer results (prediction,
    gold label, finiteness, and the sample indices when they live on the device too) into one
    (B, K) int32 tensor, so the device is synchronised once per batch.
    """
    import torch

    x = logits.detach()
    if x.dtype != torch.float32:
        x = x.float()
    device = x.device
    t = torch.as_tensor(targets).detach().to(device=device, dtype=torch.int64, non_blocking=True)
    # An out-of-range index in gather is a device-side assert on CUDA (it kills the context), so
    # gather with clamped labels and check the real ones on the host.
    safe = t.clamp(0, num_classes - 1).unsqueeze(1)
    top, pred = x.max(dim=1)
    shifted = (x - top.unsqueeze(1)).exp_()
    total = shifted.sum(dim=1)
    gold_prob = shifted.gather(1, safe).squeeze(1) / total
    gold = x.gather(1, safe).squeeze(1)
    margin = gold - x.scatter(1, safe, float("-inf")).amax(dim=1)
    floats = [gold_prob.unsqueeze(1), margin.unsqueeze(1)]
    if want_probs:
        floats.append(shifted / total.unsqueeze(1))
    ints = [
        pred.to(torch.int32),
        t.clamp(_INT32_MIN, _INT32_MAX).to(torch.int32),
        torch.isfinite(x).all(dim=1).to(torch.int32),
    ]
    if samples is not None:
        s = samples.detach().to(device=device, dtype=torch.int64, non_blocking=True)
        ints.append(s.clamp(_INT32_MIN, _INT32_MAX).to(torch.int32))
    packed = torch.cat([torch.cat(floats, dim=1).view(torch.int32), torch.stack(ints, dim=1)], 1)
    host = packed.cpu().numpy()  # the one device -> host transfer
    width = 2 + (num_classes if want_probs else 0)
    values = host[:, :width].view(np.float32)
    return _Reduced(
        gold_prob=values[:, 0],
        margin=values[:, 1],
        pred=host[:, width],
        target=host[:, width + 1].astype(np.int64),
        finite=host[:, width + 2].astype(bool),
        probs=values[:, 2:] if want_probs else None,
        samples=host[:, width + 3].astype(np.int64) if samples is not None else None,
    )


class _TorchViews:
    """torch views of a recorder's buffers, and the torch names the queue checks against.

    Made on the first CPU tensor a recorder sees, so torch is already imported.
    """

    def __init__(self, recorder: DynamicsRecorder) -> None:
        import torch

        assert recorder._matrix is not None
        self.tensor = torch.Tensor
        self.float32, self.int64 = torch.float32, torch.int64
        self.cat = torch.cat
        self.sample_at = torch.from_numpy(recorder._sample_at)
        self.matrix = torch.from_numpy(recorder._matrix)
        self.target = torch.from_numpy(recorder._target)


class _EpochRows(NamedTuple):
    """One epoch's rows in sample order, ready to write."""

    samples: np.ndarray
    gold_prob: np.ndarray
    margin: np.ndarray
    pred: np.ndarray
    target: np.ndarray
    probs: np.ndarray | None


def _part_schema(num_classes: int, record_probs: bool) -> pa.Schema:
    """Arrow schema of a part file. Columns are required (never null): the writer skips
    definition levels, which makes the nested probs column noticeably cheaper to write."""
    fields = [
        pa.field("sample", pa.int64(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("gold_prob", pa.float32(), nullable=False),
        pa.field("correct", pa.bool_(), nullable=False),
        pa.field("margin", pa.float32(), nullable=False),
        pa.field("pred", pa.int16(), nullable=False),
    ]
    if record_probs:
        item = pa.field("item", pa.float32(), nullable=False)
        fields.append(pa.field("probs", pa.list_(item, num_classes), nullable=False))
    return pa.schema(fields)


def _on_host(tensor: Any) -> bool:
    """Whether a tensor can be viewed as numpy without a transfer (CPU tensors)."""
    return bool(tensor.is_cpu)


def _to_numpy(value: Any) -> np.ndarray:
    """numpy view of an array-like; a CPU tensor is viewed, not copied."""
    if not _is_tensor(value):
        return np.asarray(value)
    try:
        # force=True detaches (and would copy off a device); a CPU tensor is still only viewed.
        return np.asarray(value.numpy(force=True))
    except TypeError:  # bfloat16 has no numpy dtype
        return np.asarray(value.detach().float().cpu().numpy())


def _length(value: Any) -> int:
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape):
        return int(shape[0])
    return len(value)


def _dtype_kind(value: Any) -> str:
    """numpy-style dtype kind ("f", "i", "u", "b", ...) of an array or tensor, no transfer."""
    dtype = value.dtype
    if not _is_tensor(value):
        return str(dtype.kind)
    if dtype.is_floating_point:
        return "f"
    if dtype.is_complex:
        return "c"
    if str(dtype) == "torch.bool":
        return "b"
    return "u" if str(dtype) == "torch.uint8" else "i"


def _batch_problem(
    samples: Any, logits: Any, targets: Any, *, num_classes: int | None
) -> tuple[str, str] | None:
    """(what was expected, what came) when a batch has bad shapes or dtypes; no transfer."""
    shape = tuple(logits.shape)
    expected = f"(batch, {num_classes})" if num_classes else "(batch, classes >= 2)"
    if len(shape) != 2 or (shape[1] != num_classes if num_classes else shape[1] < 2):
        return f"logits of shape {expected}", f"shape {shape}"
    if _dtype_kind(logits) not in "fiu":
        return "logits as a float array", f"dtype {logits.dtype}"
    for name, value in (("samples", samples), ("targets", targets)):
        if value is None:
            continue
        if len(tuple(value.shape)) != 1:
            return f"`{name}` to be a 1-D array of integers", f"shape {tuple(value.shape)}"
        if _dtype_kind(value) not in "iu":
            return f"`{name}` to hold integers", f"dtype {value.dtype}"
    lengths = [shape[0], _length(targets)] + ([] if samples is None else [_length(samples)])
    if len(set(lengths)) > 1:
        got = f"{lengths[0]} logit rows and {lengths[1]} targets"
        if samples is not None:
            got = f"{lengths[2]} samples, " + got
        return "one row per sample in samples, logits and targets", got
    return None


def _batch_error(problem: tuple[str, str], where: str) -> DynamicsError:
    expected, got = problem
    return DynamicsError(f"Expected {expected}{where}, but got {got}.")


def _bad_targets_error(
    targets: np.ndarray,
    names: np.ndarray,
    num_classes: int,
    where: str,
    *,
    noun: str = "sample",
) -> DynamicsError:
    bad = np.flatnonzero((targets < 0) | (targets >= num_classes))
    pairs = [f"{noun} {names[i]} -> {targets[i]}" for i in bad]
    return DynamicsError(
        f"Expected targets in [0, {num_classes}) (num_classes={num_classes}){where}, but "
        f"{len(bad)} are out of range: {describe_items(pairs)}."
    )


def _non_finite_error(names: np.ndarray, where: str, *, noun: str = "samples") -> DynamicsError:
    return DynamicsError(
        f"Expected finite logits{where}, but {noun} {describe_items(names)} have NaN or infinite "
        "logits (a diverged model, or an overflow in mixed precision?)."
    )


def reduce_logits(logits: Any, targets: Any, *, probs: bool = True) -> dict[str, np.ndarray]:
    """Reduce one batch of logits to the per-sample scores the recorder stores.

    numpy input is reduced on the CPU; a torch tensor is reduced on its own device and the
    result crosses to the host in a single transfer.

    Args:
        logits: (B, C) raw scores (before softmax), numpy array or torch tensor, C >= 2.
        targets: (B,) gold label indices in [0, C).
        probs: also return the (B, C) softmax probabilities.

    Returns:
        numpy arrays: ``gold_prob`` (B,) float32, softmax probability of the gold label (low =
        the model disagrees with the label; Swayamdipta et al. 2020); ``correct`` (B,) bool,
        argmax == gold (Toneva et al. 2019); ``margin`` (B,) float32, gold logit minus the
        largest other logit (negative = another class wins; Pleiss et al. 2020); ``pred``
        (B,) int64 argmax; ``probs`` (B, C) float32 when asked.

    Raises:
        DynamicsError: logits not 2-D, lengths that differ, non-finite logits, targets out of
            range.
    """
    problem = _batch_problem(None, logits, targets, num_classes=None)
    if problem:
        raise _batch_error(problem, "")
    num_classes = int(logits.shape[1])
    rows = np.arange(int(logits.shape[0]))
    if _is_tensor(logits) and not _on_host(logits):
        reduced = _reduce_tensor(logits, targets, None, num_classes=num_classes, want_probs=probs)
        target = reduced.target
        if target.size and (target.min() < 0 or target.max() >= num_classes):
            raise _bad_targets_error(target, rows, num_classes, "", noun="row")
    else:
        target = _to_numpy(targets).astype(np.int64, copy=False)
        if target.size and (target.min() < 0 or target.max() >= num_classes):
            raise _bad_targets_error(target, rows, num_classes, "", noun="row")
        reduced = _reduce_numpy(_to_numpy(logits), target, want_probs=probs)
    if not reduced.finite.all():
        raise _non_finite_error(rows[~reduced.finite], "", noun="rows")
    out = {
        "gold_prob": np.ascontiguousarray(reduced.gold_prob, dtype=np.float32),
        "correct": reduced.pred == target,
        "margin": np.ascontiguousarray(reduced.margin, dtype=np.float32),
        "pred": reduced.pred.astype(np.int64),
    }
    if reduced.probs is not None:
        out["probs"] = np.ascontiguousarray(reduced.probs, dtype=np.float32)
    return out


# --------------------------------------------------------------------------------------------
# Atomic files and the manifest
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, write: Any) -> None:
    """Write through ``write(tmp_path)`` to a temporary sibling, then rename over ``path``.

    Readers never see a half-written file: they see the old one or the new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would survive the rename; this file gets the umask's mode.
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1)
            fh.write("\n")

    _atomic_write(path, write)


@contextlib.contextmanager
def _manifest_lock(root: Path, enabled: bool) -> Iterator[None]:
    """Serialise manifest updates between the ranks of one recording (POSIX file lock)."""
    if not enabled:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: ranks must not update at the same time
        yield
        return
    with open(root / "_manifest.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    if not path.is_file():
        what = "directory" if root.is_dir() else "path"
        raise DynamicsError(
            f"Expected a dynamics directory with {MANIFEST_NAME}, but the {what} {root} has none "
            "(was it written by DynamicsRecorder?)."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DynamicsError(f"Expected {path} to hold JSON, but reading it failed: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DynamicsError(
            f"Expected {path} to be a dynamics manifest of format {FORMAT_VERSION}, but got "
            f"format {got!r}."
        )
    return manifest


def _epochs_on_disk(root: Path, ranks: Iterable[int]) -> set[int]:
    """Epochs for which every one of ``ranks`` has written its part file."""
    ranks = list(ranks)
    found = set()
    for folder in root.glob("epoch=*"):
        try:
            epoch = int(folder.name.partition("=")[2])
        except ValueError:
            continue
        if all((folder / _PART_TEMPLATE.format(rank=rank)).is_file() for rank in ranks):
            found.add(epoch)
    return found


def _summarise(manifest: dict[str, Any]) -> None:
    """Recompute the top-level status, epochs, ranks and reason from the per-rank entries."""
    per_rank: dict[str, dict[str, Any]] = manifest["rank_status"]
    world = int(manifest["world_size"])
    ranks = sorted(int(r) for r in per_rank)
    statuses = [entry["status"] for entry in per_rank.values()]
    if "incomplete" in statuses:
        status = "incomplete"
    elif len(ranks) == world and all(s == "complete" for s in statuses):
        status = "complete"
    else:
        status = "recording"
    epochs: set[int] = set()
    if len(ranks) == world:
        sets = [set(entry["epochs"]) for entry in per_rank.values()]
        epochs = set.intersection(*sets) if sets else set()
    reasons = [(int(r), entry["reason"]) for r, entry in per_rank.items() if entry.get("reason")]
    reason: str | None
    if not reasons:
        reason = None
    elif world == 1:
        reason = reasons[0][1]
    else:
        reason = "; ".join(f"rank {r}: {text}" for r, text in sorted(reasons))
    manifest.update(status=status, epochs=sorted(epochs), ranks=ranks, reason=reason)


# --------------------------------------------------------------------------------------------
# The recorder
# --------------------------------------------------------------------------------------------


class DynamicsRecorder:
    """Records per-sample training dynamics from any training loop, one batch at a time.

    Call :meth:`update` once per batch with the dataset row indices of the batch, its logits
    and its gold labels; an epoch ends with :meth:`end_epoch`, with the first update of a later
    epoch, or with :meth:`close`. Use it as a context manager: an exception inside the block
    marks the recording incomplete, and :func:`read_dynamics` refuses incomplete recordings.

    Memory: preallocated buffers for one epoch, reused every epoch: about
    ``num_samples * (4 * num_classes + 41)`` bytes (41 per sample without probabilities and
    with more than 32 classes), plus, while an epoch is written, a temporary copy of its rows.

    Example::

        with DynamicsRecorder("runs/r1/dynamics", num_samples=len(ds), num_classes=3) as rec:
            for epoch in range(epochs):
                for idx, x, y in loader:
                    logits = model(x)
                    ...
                    rec.update(epoch=epoch, samples=idx, logits=logits, targets=y)
                rec.end_epoch(epoch)

    Args:
        path: the dynamics directory (created if missing).
        num_samples: N, the number of rows of the dataset; samples are indices in [0, N).
        num_classes: C, the width of the logits (at least 2).
        rank: this writer's rank (torch DDP, Dask worker), in [0, world_size).
        world_size: number of writers that each record a share of every epoch. With one writer
            every epoch must cover all N samples; with more, :func:`read_dynamics` checks that
            the ranks' parts together cover every sample exactly once.
        mode: ``"train"`` (scores from the training forward pass) or ``"eval"`` (from an
            eval-mode pass at the end of each epoch, dropout off; see :func:`record_eval_pass`).
        record_probs: also store the (N, C) softmax probabilities per epoch (needed for EL2N
            and suggested labels; turn off for very many classes).
        resume: append to an existing recording (checkpoint restart): epochs must come after
            the last complete one. Without it, a directory that already holds this rank's
            recording is an error rather than silently overwritten.

    Raises:
        DynamicsError: bad arguments, or ``path`` holds a different or existing recording.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_samples: int,
        num_classes: int,
        rank: int = 0,
        world_size: int = 1,
        mode: Mode = "train",
        record_probs: bool = True,
        resume: bool = False,
    ) -> None:
        self.path = Path(path)
        self.num_samples = operator.index(num_samples)
        self.num_classes = operator.index(num_classes)
        self.rank = operator.index(rank)
        self.world_size = operator.index(world_size)
        self.mode: Mode = mode
        self.record_probs = bool(record_probs)
        if self.num_samples < 1:
            raise DynamicsError(f"Expected num_samples >= 1, but got {self.num_samples}.")
        if not 2 <= self.num_classes <= _MAX_CLASSES:
            raise DynamicsError(
                f"Expected num_classes in [2, {_MAX_CLASSES}] (predictions are stored as int16), "
                f"but got {self.num_classes}."
            )
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise DynamicsError(
                f"Expected 0 <= rank < world_size, but got rank {self.rank} and world_size "
                f"{self.world_size}; pass world_size=<number of writers> when several ranks record."
            )
        if mode not in MODES:
            raise ValueError(f"Unknown mode {mode!r}; expected one of {', '.join(MODES)}.")

        self._status = "recording"
        self._epochs: list[int] = []  # complete epochs of this rank
        self._epoch: int | None = None  # the open epoch
        self._count = 0  # rows received in the open epoch
        self._batch = 0  # batches received in the open epoch
        # Batches of CPU tensors waiting for a bulk copy (see _queue), and their rows.
        self._pending: list[tuple[Any, Any, Any, tuple[int, int, int], int]] = []
        self._queued = 0
        self._torch_views: _TorchViews | None = None
        # Each epoch's Parquet file is written on a background thread, so that training goes
        # on meanwhile (encoding, and file-system latency, which on a busy or remote disk is
        # the larger part). At most one epoch is in flight: the next end of an epoch waits.
        self._writer: ThreadPoolExecutor | None = None
        self._writing: tuple[int, Future[None]] | None = None
        self._dense = False  # the indexed epoch holds every sample once
        self._allocate()
        self._join(resume)

    # ---------------------------------------------------------------- setup

    def _allocate(self) -> None:
        n, c = self.num_samples, self.num_classes
        index_dtype = np.int32 if n <= _INT32_MAX else np.int64
        # Rows are kept in arrival order: a batch costs a few slice copies, the cheapest write
        # there is. Once per epoch they are checked (range, repeats, coverage) and put in sample
        # order: row_of[s] = arrival row of sample s, -1 = not seen.
        self._sample_at = np.empty(n, dtype=np.int64)
        self._row_of: np.ndarray = np.full(n, -1, dtype=index_dtype)
        self._positions = np.arange(n, dtype=index_dtype)
        # np.empty does not touch memory: pages are only committed as rows arrive.
        self._gold_prob = np.empty(n, dtype=np.float32)
        self._margin = np.empty(n, dtype=np.float32)
        self._pred = np.empty(n, dtype=np.int16)
        self._target = np.empty(n, dtype=np.int64)
        # Host logits are not reduced batch by batch: a dozen small numpy calls per batch cost
        # more than the training step of a small model. Their rows wait in `matrix` as raw
        # logits and are reduced at the end of the epoch, vectorised; `matrix` then holds the
        # probabilities. Without probabilities to keep, this only pays for few classes.
        self._defer = self.record_probs or c <= _DEFER_MAX_CLASSES
        self._matrix = np.empty((n, c), np.float32) if self._defer else None
        # Rows reduced on arrival (device logits) are marked; all others hold raw logits.
        self._is_reduced = np.zeros(n, dtype=bool)
        self._any_reduced = False
        self._epoch_column = np.empty(n, dtype=np.int32)
        self._schema = _part_schema(c, self.record_probs)
        # Gold label of every sample as first seen: catches sample indices that are not stable
        # dataset rows (e.g. positions in a shuffled batch order), which no single epoch shows.
        self._labels = np.full(n, -1, dtype=np.int16)

    @property
    def buffer_nbytes(self) -> int:
        """Bytes held by the recorder's buffers; constant over epochs (one epoch at most)."""
        arrays: list[np.ndarray] = [
            self._sample_at,
            self._row_of,
            self._positions,
            self._gold_prob,
            self._margin,
            self._pred,
            self._target,
            self._is_reduced,
            self._labels,
            self._epoch_column,
        ]
        if self._matrix is not None:
            arrays.append(self._matrix)
        return sum(a.nbytes for a in arrays)

    @property
    def epochs(self) -> list[int]:
        """Epochs this rank has completely recorded, ascending (the last one's file may still
        be being written until the next epoch ends or the recorder closes)."""
        return list(self._epochs)

    @property
    def status(self) -> str:
        """``"recording"``, ``"complete"`` or ``"incomplete"``."""
        return self._status

    def _manifest_template(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "mode": self.mode,
            "record_probs": self.record_probs,
            "world_size": self.world_size,
            "status": "recording",
            "epochs": [],
            "ranks": [],
            "reason": None,
            "rank_status": {},
        }

    def _join(self, resume: bool) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with _manifest_lock(self.path, self.world_size > 1):
            manifest_path = self.path / MANIFEST_NAME
            if manifest_path.exists():
                manifest = _load_manifest(self.path)
                self._check_compatible(manifest)
                entry = manifest["rank_status"].get(str(self.rank))
                if entry is not None and not resume:
                    raise DynamicsError(
                        f"Expected an empty dynamics directory, but {self.path} already holds a "
                        f"{entry['status']} recording of rank {self.rank} (epochs "
                        f"{_describe_epochs(entry['epochs'])}). Pass resume=True to append "
                        "epochs after a checkpoint restart, or choose another directory."
                    )
                if entry is not None:
                    on_disk = _epochs_on_disk(self.path, [self.rank])
                    self._epochs = sorted({int(e) for e in entry["epochs"]} | on_disk)
            else:
                manifest = self._manifest_template()
            manifest["rank_status"][str(self.rank)] = {
                "status": "recording",
                "epochs": list(self._epochs),
                "reason": None,
                "partial_epoch": None,
            }
            _summarise(manifest)
            _write_json(manifest_path, manifest)
            self._manifest = manifest

    def _check_compatible(self, manifest: dict[str, Any]) -> None:
        expected = {
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "mode": self.mode,
            "record_probs": self.record_probs,
            "world_size": self.world_size,
        }
        clashes = [
            f"{key}={manifest.get(key)!r} (here {value!r})"
            for key, value in expected.items()
            if manifest.get(key) != value
        ]
        if clashes:
            raise DynamicsError(
                f"Expected {self.path} to hold a recording with the same settings, but it was "
                f"made with {', '.join(clashes)}. Use another directory for a different run."
            )

    def _set_rank_state(self, **changes: Any) -> None:
        with _manifest_lock(self.path, self.world_size > 1):
            # A single writer owns the manifest; with several, the others' entries may change.
            manifest = _load_manifest(self.path) if self.world_size > 1 else self._manifest
            entry = manifest["rank_status"].setdefault(str(self.rank), {})
            entry.update(changes)
            _summarise(manifest)
            _write_json(self.path / MANIFEST_NAME, manifest)

    # ---------------------------------------------------------------- recording

    def _where(self) -> str:
        return f" (epoch {self._epoch}, batch {self._batch})"

    def update(self, *, epoch: int, samples: Any, logits: Any, targets: Any) -> None:
        """Record one batch.

        Host (numpy, CPU tensor) logits are kept raw and reduced once per epoch, vectorised;
        logits on an accelerator are reduced there and cross to the host in one transfer. The
        rows of an epoch are checked when it ends: every sample exactly once, finite logits,
        targets in range; the shapes and dtypes of a batch are checked at once. CPU tensors
        are copied in bulk every 64 batches: changing them in place before that is an error
        (their version counters tell), so pass a clone if the loop reuses its tensors.

        Args:
            epoch: the epoch these scores belong to (non-decreasing; a later epoch than the
                open one ends the open one).
            samples: (B,) int dataset row indices in [0, num_samples), numpy or torch.
            logits: (B, C) raw scores before softmax, numpy or torch on any device.
            targets: (B,) int gold labels in [0, C), numpy or torch.

        Raises:
            DynamicsError: a closed recorder, an epoch earlier than the open one, a shape,
                dtype or length mismatch, more rows than samples in the epoch, non-finite
                logits or targets out of range (device logits). The recording is then marked
                incomplete: it never passes for a complete one.
        """
        # This runs once per batch inside someone's training loop: the common case (host
        # arrays, the open epoch, raw logits kept) is a few attribute checks and three copies.
        try:
            if self._status != "recording":
                raise DynamicsError(
                    f"Expected an open recorder, but the recorder for {self.path} is already "
                    f"{self._status}; create a new one (resume=True) to record more epochs."
                )
            if type(epoch) is not int or epoch != self._epoch:
                self._open_epoch(epoch)
            if _is_tensor(logits):
                if not _on_host(logits):
                    self._flush()
                    self._update_device(samples, logits, targets)
                    return
                if self._defer and self._queue(samples, logits, targets):
                    return
            self._flush()
            x, s, t = _to_numpy(logits), _to_numpy(samples), _to_numpy(targets)
            start = self._count
            stop = start + (s.shape[0] if s.ndim == 1 else 0)
            if (
                self._defer
                and s.ndim == 1
                and stop <= self.num_samples
                and x.shape == (stop - start, self.num_classes)
                and t.shape == s.shape
                and x.dtype.kind in "fiu"
                and s.dtype.kind in "iu"
                and t.dtype.kind in "iu"
            ):
                assert self._matrix is not None
                self._sample_at[start:stop] = s
                self._matrix[start:stop] = x
                self._target[start:stop] = t
                self._count = stop
                self._batch += 1
            else:
                self._update_host(s, x, t)
        except DynamicsError as err:
            if self._status == "recording":
                self.mark_incomplete(str(err))
            raise

    def _queue(self, samples: Any, logits: Any, targets: Any) -> bool:
        """Hold a batch of CPU tensors for a bulk copy a few batches later.

        Copying right away costs a handful of numpy and torch calls per batch, and just after
        a training step every one of them runs on cold caches; one ``torch.cat`` per buffer
        for many batches at once costs less. The held tensors' version counters prove that
        nobody changed them in place meanwhile. Only the common case qualifies (plain CPU
        tensors, float32 logits, int64 indices); False sends a batch down the full path.
        """
        views = self._torch_views
        if views is None:
            views = self._torch_views = _TorchViews(self)
        n = samples.shape[0] if type(samples) is views.tensor and samples.dim() == 1 else -1
        x = logits.detach()
        if (
            type(targets) is not views.tensor
            or samples.dtype is not views.int64
            or targets.dtype is not views.int64
            or x.dtype is not views.float32
            or x.shape != (n, self.num_classes)
            or targets.shape != samples.shape
            or not (samples.is_cpu and targets.is_cpu)
            or self._count + self._queued + n > self.num_samples
        ):
            return False
        self._pending.append(
            (samples, x, targets, (samples._version, x._version, targets._version), self._batch)
        )
        self._queued += n
        self._batch += 1
        if len(self._pending) >= _QUEUE_BATCHES:
            self._flush()
        return True

    def _flush(self) -> None:
        """Copy the held batches into the epoch's buffers."""
        if not self._pending:
            return
        pending, self._pending, self._queued = self._pending, [], 0
        for samples, logits, targets, versions, batch in pending:
            if (samples._version, logits._version, targets._version) != versions:
                raise DynamicsError(
                    f"Expected the tensors given to update() to stay unchanged until the "
                    f"recorder copies them (up to {_QUEUE_BATCHES} batches later), but the "
                    f"samples, logits or targets of batch {batch} of epoch {self._epoch} were "
                    "modified in place afterwards; pass copies (tensor.clone())."
                )
        views = self._torch_views
        assert views is not None
        start = self._count
        stop = start + sum(item[0].shape[0] for item in pending)
        views.cat([item[0] for item in pending], out=views.sample_at[start:stop])
        views.cat([item[1] for item in pending], out=views.matrix[start:stop])
        views.cat([item[2] for item in pending], out=views.target[start:stop])
        self._count = stop

    def _update_host(self, s: np.ndarray, x: np.ndarray, t: np.ndarray) -> None:
        fine = (
            x.ndim == 2
            and s.ndim == 1
            and t.ndim == 1
            and x.shape[1] == self.num_classes
            and x.shape[0] == s.shape[0] == t.shape[0]
            and x.dtype.kind in "fiu"
            and s.dtype.kind in "iu"
            and t.dtype.kind in "iu"
        )
        if not fine:
            problem = _batch_problem(s, x, t, num_classes=self.num_classes)
            assert problem is not None
            raise _batch_error(problem, self._where())
        if not self._defer:
            t = t.astype(np.int64, copy=False)
            if t.size and (t.min() < 0 or t.max() >= self.num_classes):
                raise _bad_targets_error(t, s, self.num_classes, self._where())
            reduced = _reduce_numpy(x, t, want_probs=False)
            self._store_reduced(s, reduced)
            return
        start, stop = self._claim(s)
        assert self._matrix is not None
        self._matrix[start:stop] = x
        self._target[start:stop] = t

    def _update_device(self, samples: Any, logits: Any, targets: Any) -> None:
        problem = _batch_problem(samples, logits, targets, num_classes=self.num_classes)
        if problem:
            raise _batch_error(problem, self._where())
        device_samples = samples if _is_tensor(samples) and not _on_host(samples) else None
        reduced = _reduce_tensor(
            logits,
            targets,
            device_samples,
            num_classes=self.num_classes,
            want_probs=self.record_probs,
        )
        host = reduced.samples if reduced.samples is not None else _to_numpy(samples)
        target = reduced.target
        if target.size and (target.min() < 0 or target.max() >= self.num_classes):
            raise _bad_targets_error(target, host, self.num_classes, self._where())
        self._store_reduced(host, reduced)

    def _store_reduced(self, samples: np.ndarray, reduced: _Reduced) -> None:
        if not reduced.finite.all():
            raise _non_finite_error(samples[~reduced.finite], self._where())
        start, stop = self._claim(samples)
        if self._defer:
            self._is_reduced[start:stop] = True
            self._any_reduced = True
        self._gold_prob[start:stop] = reduced.gold_prob
        self._margin[start:stop] = reduced.margin
        self._pred[start:stop] = reduced.pred
        self._target[start:stop] = reduced.target
        if reduced.probs is not None and self._matrix is not None:
            self._matrix[start:stop] = reduced.probs

    def _claim(self, samples: np.ndarray) -> tuple[int, int]:
        """Claim the next arrival rows of the open epoch for ``samples``."""
        start = self._count
        stop = start + samples.shape[0]
        if stop > self.num_samples:
            self._raise_overflow(samples)
        self._sample_at[start:stop] = samples
        self._count = stop
        self._batch += 1
        return start, stop

    def _raise_overflow(self, samples: np.ndarray) -> None:
        n = self.num_samples
        seen = np.concatenate([self._sample_at[: self._count], samples.astype(np.int64)])
        bad = seen[(seen < 0) | (seen >= n)]
        if bad.size:
            raise DynamicsError(
                f"Expected sample indices in [0, {n}) (num_samples={n}){self._where()}, but got "
                f"{describe_items(np.unique(bad))}."
            )
        counts = np.bincount(seen, minlength=n)
        raise DynamicsError(
            f"Expected each sample once per epoch, but batch {self._batch} of epoch "
            f"{self._epoch} brings the epoch to {len(seen)} rows for {n} samples: samples "
            f"{describe_items(np.flatnonzero(counts > 1))} were recorded more than once."
        )

    def _open_epoch(self, epoch: Any) -> None:
        try:
            epoch = operator.index(epoch)
        except TypeError:
            raise DynamicsError(
                f"Expected `epoch` to be an int, but got {type(epoch).__name__} {epoch!r}."
            ) from None
        if epoch < 0:
            raise DynamicsError(f"Expected epoch >= 0, but got {epoch}.")
        if self._epoch is not None and epoch > self._epoch:
            self._finish_epoch()
        if self._epoch is None:
            if self._epochs and epoch <= self._epochs[-1]:
                raise DynamicsError(
                    f"Expected an epoch after {self._epochs[-1]} (epochs "
                    f"{_describe_epochs(self._epochs)} are already recorded in {self.path}), but "
                    f"got epoch {epoch}: epochs must not go backwards."
                )
            self._epoch = epoch
            self._count = 0
            self._batch = 0
        elif epoch < self._epoch:
            raise DynamicsError(
                f"Expected epoch {self._epoch} or later (epoch {self._epoch} is being recorded), "
                f"but got epoch {epoch}: epochs must not go backwards."
            )

    def end_epoch(self, epoch: int | None = None) -> None:
        """Check the open epoch and write it to ``epoch=E/part-R.parquet``.

        Args:
            epoch: the epoch to end; it must be the open one. Ending an epoch that is already
                written, or calling without an open epoch and no ``epoch``, does nothing.

        Raises:
            DynamicsError: ``epoch`` is not the open epoch; a sample index out of range or
                recorded twice; (single writer) samples missing from the epoch; non-finite
                logits; targets out of range; a sample whose target differs from an earlier
                epoch. The recording is then marked incomplete.
        """
        try:
            if epoch is not None:
                epoch = operator.index(epoch)
                if self._epoch is None and epoch in self._epochs:
                    return
                if self._epoch is None:
                    self._open_epoch(epoch)
                elif epoch != self._epoch:
                    raise DynamicsError(
                        f"Expected end_epoch({self._epoch}) for the open epoch, but got "
                        f"end_epoch({epoch})."
                    )
            if self._epoch is not None:
                self._finish_epoch()
        except DynamicsError as err:
            if self._status == "recording":
                self.mark_incomplete(str(err))
            raise

    def _index_epoch(self, *, strict: bool) -> None:
        """Fill ``row_of`` from the arrival order; check range, repeats and coverage."""
        n, count, epoch = self.num_samples, self._count, self._epoch
        samples = self._sample_at[:count]
        positions = self._positions[:count]
        self._row_of.fill(-1)
        if count and (samples.min() < 0 or samples.max() >= n):
            valid = (samples >= 0) & (samples < n)
            if strict:
                raise DynamicsError(
                    f"Expected sample indices in [0, {n}) (num_samples={n}) in epoch {epoch}, but "
                    f"got {describe_items(np.unique(samples[~valid]))}."
                )
            samples, positions = samples[valid], positions[valid]
        self._row_of[samples] = positions
        self._dense = count == n and bool((self._row_of >= 0).all())
        if not strict:
            return
        # A repeated sample keeps only its last row: its earlier rows point elsewhere.
        lost = self._row_of[samples] != positions
        if lost.any():
            raise DynamicsError(
                f"Expected each sample once per epoch, but in epoch {epoch} samples "
                f"{describe_items(np.unique(samples[lost]))} were recorded more than once."
            )
        if self.world_size == 1 and count < n:
            missing = np.flatnonzero(self._row_of < 0)
            raise DynamicsError(
                f"Expected every sample in [0, {n}) once in epoch {epoch}, but {len(missing)} of "
                f"{n} are missing: samples {describe_items(missing)} (a sampler that drops the "
                "last batch, or a subset of the data?)."
            )

    def _epoch_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(samples present, their arrival rows), in sample order; after :meth:`_index_epoch`."""
        if self._dense:
            return self._positions, self._row_of
        present = np.flatnonzero(self._row_of >= 0)
        return present, self._row_of[present]

    def _checked_reduce(
        self,
        x: np.ndarray,
        t: np.ndarray,
        names: Any,
        *,
        strict: bool,
        rows: np.ndarray | None = None,
    ) -> _Reduced:
        """Reduce raw rows (``x[rows]``); with ``strict``, reject bad targets and non-finite
        logits. ``names()`` gives the sample indices of the rows, for messages."""
        where = f" in epoch {self._epoch}"
        if not strict:
            t = np.clip(t, 0, self.num_classes - 1)
        elif t.min() < 0 or t.max() >= self.num_classes:
            raise _bad_targets_error(t, names(), self.num_classes, where)
        reduced = _reduce_numpy(x, t, want_probs=self.record_probs, rows=rows)
        if strict and not reduced.finite.all():
            raise _non_finite_error(names()[~reduced.finite], where)
        return reduced

    def _epoch_rows(self, *, strict: bool) -> _EpochRows:
        """The open epoch in sample order, raw rows reduced; after :meth:`_index_epoch`."""
        samples, rows = self._epoch_arrays()
        target = self._target[rows]
        if self._defer and not self._any_reduced:
            # Every row holds raw logits: reduce them straight into sample order instead of
            # reducing in arrival order and gathering every output after.
            assert self._matrix is not None
            reduced = self._checked_reduce(
                self._matrix, target, lambda: samples, strict=strict, rows=rows
            )
            gold_prob, margin, pred = reduced.gold_prob, reduced.margin, reduced.pred
            probs = reduced.probs
            return _EpochRows(samples, gold_prob, margin, pred.astype(np.int16), target, probs)
        self._resolve_raw(strict=strict)
        return _EpochRows(
            samples,
            self._gold_prob[rows],
            self._margin[rows],
            self._pred[rows],
            target,
            np.take(self._matrix, rows, axis=0)
            if self.record_probs and self._matrix is not None
            else None,
        )

    def _resolve_raw(self, *, strict: bool) -> None:
        """Reduce, in place and in arrival order, the rows that still hold raw logits."""
        count = self._count
        if not self._defer:
            return
        raw = np.flatnonzero(~self._is_reduced[:count])
        assert self._matrix is not None
        if raw.size == 0:
            return
        reduced = self._checked_reduce(
            self._matrix,
            self._target[raw],
            lambda: self._sample_at[raw],
            strict=strict,
            rows=raw,
        )
        self._gold_prob[raw] = reduced.gold_prob
        self._margin[raw] = reduced.margin
        self._pred[raw] = reduced.pred
        if reduced.probs is not None:
            self._matrix[raw] = reduced.probs
        self._is_reduced[raw] = True
        self._any_reduced = True

    def _finish_epoch(self) -> None:
        epoch = self._epoch
        assert epoch is not None
        self._wait_for_writes()
        self._flush()
        self._index_epoch(strict=True)
        rows = self._epoch_rows(strict=True)
        samples, target = rows.samples, rows.target
        known = self._labels[samples]
        changed = (known >= 0) & (known != target)
        if changed.any():
            which = np.flatnonzero(changed)
            pairs = [f"sample {samples[i]}: {known[i]} -> {target[i]}" for i in which]
            raise DynamicsError(
                f"Expected the same gold label for a sample in every epoch, but in epoch {epoch} "
                f"{len(which)} samples changed label: {describe_items(pairs)}. `samples` must be "
                "stable dataset row indices, not positions in a shuffled batch order."
            )
        self._labels[samples] = target
        table = self._part_table(epoch, rows)
        path, partial = (
            _part_path(self.path, epoch, self.rank),
            _partial_path(self.path, epoch, self.rank),
        )

        def write() -> None:
            _atomic_write(path, lambda tmp: _write_table(table, tmp))
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="cartoflow-dynamics")
        self._writing = (epoch, self._writer.submit(write))
        # The part file appearing (an atomic rename to a new name) is what records the epoch
        # as complete; the manifest catches up on close. Rewriting it here would cost more
        # than the epoch's Parquet file: on ext4, renaming over an existing file flushes it.
        self._epochs.append(epoch)
        if self._any_reduced:
            self._is_reduced[: self._count] = False
            self._any_reduced = False
        self._epoch = None
        self._count = 0
        self._batch = 0

    def _wait_for_writes(self) -> None:
        """Wait for the epoch being written; a failed write becomes a DynamicsError."""
        if self._writing is None:
            return
        (epoch, future), self._writing = self._writing, None
        try:
            future.result()
        except Exception as err:
            self._epochs.remove(epoch)
            raise DynamicsError(
                f"Expected epoch {epoch} to be written to "
                f"{_part_path(self.path, epoch, self.rank)}, but writing it failed: "
                f"{type(err).__name__}: {err}"
            ) from err

    def _stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _part_table(self, epoch: int, rows: _EpochRows) -> pa.Table:
        m = len(rows.samples)
        self._epoch_column[:m] = epoch
        columns = [
            pa.array(rows.samples.astype(np.int64, copy=False)),
            pa.array(self._epoch_column[:m]),
            pa.array(rows.gold_prob),
            pa.array(rows.pred == rows.target),
            pa.array(rows.margin),
            pa.array(rows.pred),
        ]
        schema = self._schema
        if rows.probs is not None:
            flat = pa.array(rows.probs.reshape(-1))
            columns.append(pa.FixedSizeListArray.from_arrays(flat, type=schema.field("probs").type))
        return pa.Table.from_arrays(columns, schema=schema).replace_schema_metadata(
            {"cartoflow.format": str(FORMAT_VERSION), "cartoflow.rank": str(self.rank)}
        )

    def close(self) -> None:
        """End the open epoch (if any) and mark the recording complete.

        Raises:
            DynamicsError: the open epoch fails its checks (see :meth:`end_epoch`).
        """
        if self._status != "recording":
            return
        self.end_epoch()
        try:
            self._wait_for_writes()
        except DynamicsError as err:
            self.mark_incomplete(str(err))
            raise
        self._stop_writer()
        self._status = "complete"
        self._set_rank_state(
            status="complete", epochs=list(self._epochs), reason=None, partial_epoch=None
        )

    def mark_incomplete(self, reason: str) -> None:
        """Mark the recording incomplete (training failed) and close the recorder.

        Rows of the open epoch are kept in ``epoch=E/_part-R.partial.parquet`` for inspection;
        the leading underscore keeps Parquet dataset readers from taking them for a complete
        part, and :func:`read_dynamics` never reads them.

        Args:
            reason: what went wrong, stored in the manifest and shown by :func:`read_dynamics`.
        """
        if self._status == "incomplete":
            return
        partial = None
        with contextlib.suppress(Exception):
            self._wait_for_writes()  # a failed write leaves its epoch off the list
        self._stop_writer()
        with contextlib.suppress(Exception):
            self._flush()
        self._pending, self._queued = [], 0
        if self._epoch is not None and self._count > 0:
            partial = self._epoch
            # Best effort: the rows may be what failed (NaN, bad labels); losing the partial
            # file must not hide the reason.
            with contextlib.suppress(Exception):
                self._index_epoch(strict=False)
                table = self._part_table(partial, self._epoch_rows(strict=False))
                path = _partial_path(self.path, partial, self.rank)
                _atomic_write(path, lambda tmp: _write_table(table, tmp))
        self._status = "incomplete"
        self._epoch = None
        self._set_rank_state(
            status="incomplete",
            epochs=list(self._epochs),
            reason=str(reason),
            partial_epoch=partial,
        )

    def __enter__(self) -> DynamicsRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif self._status == "recording":
            self.mark_incomplete(f"{exc_type.__name__}: {exc}")

    def __repr__(self) -> str:
        return (
            f"DynamicsRecorder({str(self.path)!r}, num_samples={self.num_samples}, "
            f"num_classes={self.num_classes}, rank={self.rank}, mode={self.mode!r}, "
            f"status={self._status!r}, epochs={_describe_epochs(self._epochs)})"
        )


def _write_table(table: pa.Table, path: str) -> None:
    # Float scores do not compress (snappy and lz4 files come out the same size, only slower to
    # write and read), and dictionary pages would only cost time. The sample column is sorted,
    # so delta encoding shrinks it to almost nothing.
    # An OSFile skips pyarrow's filesystem resolution of a path string.
    with pa.OSFile(path, "wb") as sink:
        pq.write_table(
            table,
            sink,
            compression="none",
            use_dictionary=["epoch"],
            column_encoding={"sample": "DELTA_BINARY_PACKED"},
            write_statistics=["sample", "epoch"],
        )


def record_eval_pass(
    recorder: DynamicsRecorder, batches: Iterable[tuple[Any, Any, Any]], *, epoch: int
) -> None:
    """Record one whole pass (e.g. an eval-mode pass over the training set) as ``epoch``.

    Framework-neutral: the caller runs the model (in eval mode, without gradients) and yields
    ``(samples, logits, targets)`` per batch; this records them and ends the epoch.

    Args:
        recorder: usually a recorder made with ``mode="eval"``.
        batches: iterable of ``(samples (B,), logits (B, C), targets (B,))``.
        epoch: the training epoch after which the pass runs.

    Raises:
        DynamicsError: as :meth:`DynamicsRecorder.update` and :meth:`DynamicsRecorder.end_epoch`.
    """
    for samples, logits, targets in batches:
        recorder.update(epoch=epoch, samples=samples, logits=logits, targets=targets)
    recorder.end_epoch(epoch)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingDynamics:
    """Recorded training dynamics as dense arrays, epochs x samples.

    Attributes:
        gold_prob: (E, N) float32 softmax probability of the gold label (low = the model
            disagrees with the label; Swayamdipta et al. 2020).
        correct: (E, N) bool, prediction == gold label (Toneva et al. 2019).
        margin: (E, N) float32 gold logit minus the largest other logit (negative = another
            class wins; Pleiss et al. 2020).
        pred: (E, N) int16 predicted class.
        probs: (E, N, C) float32 softmax probabilities, or None when not recorded or not read.
        num_classes: C.
        mode: ``"train"`` or ``"eval"``: which pass the scores come from.
        epochs: the recorded epoch numbers, one per row (``0..E-1`` when not given).
    """

    gold_prob: np.ndarray
    correct: np.ndarray
    margin: np.ndarray
    pred: np.ndarray
    probs: np.ndarray | None
    num_classes: int
    mode: str = "train"
    epochs: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        shape = np.shape(self.gold_prob)
        if len(shape) != 2:
            raise DynamicsError(
                f"Expected gold_prob of shape (epochs, samples), but got shape {shape}."
            )
        for name in ("correct", "margin", "pred"):
            got = np.shape(getattr(self, name))
            if got != shape:
                raise DynamicsError(
                    f"Expected {name} of shape {shape} like gold_prob, but got shape {got}."
                )
        if self.probs is not None and np.shape(self.probs) != (*shape, self.num_classes):
            raise DynamicsError(
                f"Expected probs of shape {(*shape, self.num_classes)}, but got shape "
                f"{np.shape(self.probs)}."
            )
        if not self.epochs:
            object.__setattr__(self, "epochs", tuple(range(shape[0])))
        elif len(self.epochs) != shape[0]:
            raise DynamicsError(
                f"Expected one epoch number per row ({shape[0]}), but got {len(self.epochs)}."
            )

    @property
    def num_epochs(self) -> int:
        """E, the number of recorded epochs."""
        return int(self.gold_prob.shape[0])

    @property
    def num_samples(self) -> int:
        """N, the number of samples."""
        return int(self.gold_prob.shape[1])


def _column_numpy(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if column.null_count:
        raise DynamicsError(f"Expected no nulls in column {name}, but found {column.null_count}.")
    return np.asarray(column.to_numpy())


def _probs_numpy(table: pa.Table, num_classes: int) -> np.ndarray:
    column = table.column("probs")
    chunks = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    flat = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    return flat.reshape(-1, num_classes)


def _read_epoch(
    root: Path,
    epoch: int,
    *,
    world_size: int,
    num_samples: int,
    num_classes: int,
    names: list[str],
    out: dict[str, np.ndarray],
    row: int,
) -> None:
    """Read every rank's part of one epoch into row ``row`` of the output arrays."""
    paths = [_part_path(root, epoch, rank) for rank in range(world_size)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DynamicsError(
            f"Expected the part files of complete epoch {epoch}, but {describe_items(missing)} "
            "do not exist (files moved or deleted after recording?)."
        )
    tables = [pq.read_table(p, columns=["sample", *names]) for p in paths]
    samples_per_part = [_column_numpy(t, "sample") for t in tables]
    lengths = [len(s) for s in samples_per_part]
    samples = (
        samples_per_part[0] if len(samples_per_part) == 1 else np.concatenate(samples_per_part)
    )
    # The writer stores each epoch in sample order: one full part is then exactly 0..N-1.
    dense = (
        len(samples) == num_samples
        and samples[0] == 0
        and samples[-1] == num_samples - 1
        and np.array_equal(samples, np.arange(num_samples))
    )
    if not dense:
        _check_coverage(samples, lengths, epoch, num_samples)
    for name in names:
        parts = [
            _probs_numpy(t, num_classes) if name == "probs" else _column_numpy(t, name)
            for t in tables
        ]
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if dense:
            out[name][row] = values
        else:
            out[name][row][samples] = values


def _check_coverage(samples: np.ndarray, lengths: list[int], epoch: int, num_samples: int) -> None:
    if samples.size and (samples.min() < 0 or samples.max() >= num_samples):
        bad = samples[(samples < 0) | (samples >= num_samples)]
        raise DynamicsError(
            f"Expected sample indices in [0, {num_samples}) in epoch {epoch}, but the part files "
            f"hold {describe_items(bad)}."
        )
    counts = np.bincount(samples, minlength=num_samples)
    if (counts > 1).any():
        repeated = np.flatnonzero(counts > 1)
        bounds = np.cumsum(lengths)
        ranks: set[int] = set()
        for s in repeated[:5]:
            ranks.update(
                int(r) for r in np.searchsorted(bounds, np.flatnonzero(samples == s), "right")
            )
        raise DynamicsError(
            f"Expected each sample exactly once per epoch across ranks, but in epoch {epoch} "
            f"samples {describe_items(repeated)} were recorded more than once (by ranks "
            f"{describe_items(sorted(ranks))}). A DistributedSampler pads the last batch with "
            "repeated samples: record only each rank's first len(dataset) // world_size indices, "
            "or give each rank a disjoint shard."
        )
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        raise DynamicsError(
            f"Expected every sample in [0, {num_samples}) once in epoch {epoch}, but "
            f"{len(missing)} are missing from all ranks' parts: samples {describe_items(missing)}."
        )


def read_dynamics(
    path: str | os.PathLike[str],
    *,
    allow_incomplete: bool = False,
    columns: Collection[str] | None = None,
) -> TrainingDynamics:
    """Read a recording written by :class:`DynamicsRecorder` into dense (epochs, samples) arrays.

    Args:
        path: the dynamics directory.
        allow_incomplete: read the complete epochs of a recording marked incomplete (training
            crashed) or still recording; by default such a recording is an error.
        columns: which of :data:`COLUMNS` to load. ``gold_prob``, ``correct``, ``margin`` and
            ``pred`` are always loaded (about 11 bytes per sample and epoch); ``probs`` is
            loaded only when listed, or when ``columns`` is None and probabilities were
            recorded.

    Returns:
        :class:`TrainingDynamics` with one row per complete epoch, ascending, and one column per
        sample (index = dataset row).

    Raises:
        DynamicsError: no manifest, a recording that is not complete (unless
            ``allow_incomplete``), no complete epoch, missing part files, or parts that do not
            cover every sample exactly once.
        ValueError: an unknown column name.
    """
    root = Path(path)
    manifest = _load_manifest(root)
    wanted = set(COLUMNS if columns is None else columns)
    unknown = sorted(wanted - set(COLUMNS))
    if unknown:
        raise ValueError(
            f"Unknown dynamics columns {', '.join(map(repr, unknown))}; expected some of "
            f"{', '.join(COLUMNS)}."
        )
    record_probs = bool(manifest.get("record_probs", True))
    if "probs" in wanted and not record_probs:
        if columns is not None:
            raise DynamicsError(
                f"Expected a probs column, but {root} was recorded with record_probs=False."
            )
        wanted.discard("probs")
    status = manifest["status"]
    world_size = int(manifest["world_size"])
    epochs = [int(e) for e in manifest["epochs"]]
    if status != "complete":
        # The manifest is rewritten on close and on failure; a process that was killed left
        # only its part files, each of which marks a complete epoch of its rank.
        epochs = sorted(set(epochs) | _epochs_on_disk(root, range(world_size)))
    if status != "complete" and not allow_incomplete:
        reason = manifest.get("reason")
        raise DynamicsError(
            f"Expected a complete recording, but {root} is marked {status}"
            + (f" ({reason})" if reason else "")
            + f"; complete epochs: {_describe_epochs(epochs)}. Pass allow_incomplete=True to "
            "read the complete epochs anyway."
        )
    if not epochs:
        raise DynamicsError(
            f"Expected at least one complete epoch, but {root} (status {status}) holds none."
        )
    n = int(manifest["num_samples"])
    c = int(manifest["num_classes"])
    e = len(epochs)
    names = [name for name in COLUMNS if name in wanted or name != "probs"]
    out: dict[str, np.ndarray] = {
        "gold_prob": np.empty((e, n), dtype=np.float32),
        "correct": np.empty((e, n), dtype=bool),
        "margin": np.empty((e, n), dtype=np.float32),
        "pred": np.empty((e, n), dtype=np.int16),
    }
    if "probs" in names:
        out["probs"] = np.empty((e, n, c), dtype=np.float32)
    for row, epoch in enumerate(epochs):
        _read_epoch(
            root,
            epoch,
            world_size=world_size,
            num_samples=n,
            num_classes=c,
            names=names,
            out=out,
            row=row,
        )
    return TrainingDynamics(
        gold_prob=out["gold_prob"],
        correct=out["correct"],
        margin=out["margin"],
        pred=out["pred"],
        probs=out.get("probs"),
        num_classes=c,
        mode=str(manifest["mode"]),
        epochs=tuple(epochs),
    )
