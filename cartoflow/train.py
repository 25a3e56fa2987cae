"""Train a text classifier while recording its training dynamics (torch).

:func:`train_classifier` trains the default :class:`~cartoflow.models.FastTextClassifier` (or any
:class:`~cartoflow.models.TextModel`) and writes per-sample, per-epoch dynamics with
:class:`~cartoflow.dynamics.DynamicsRecorder`. By default the dynamics come from the logits of the
training forward pass itself, so recording costs no extra forward pass (Swayamdipta et al. 2020
record at epoch ends; Pleiss et al. 2020 average margins over the training updates: the training
pass serves both). ``record="eval"`` adds an eval-mode pass over the training set at the end of
every epoch instead (no dropout, weights after the epoch's updates).

:func:`train_with_threshold_samples` runs the threshold-sample experiment of Area Under the
Margin (Pleiss et al. 2020, arXiv 2001.10528): a random 1/(C+1) share of the samples is moved to a
fake class C, the model learns C + 1 classes, and the 99th percentile of the threshold samples'
AUM is the cut-off below which a real sample is likely mislabeled.

Runs are deterministic for a seed on CPU: the model is initialised under ``torch.manual_seed``
(inside ``torch.random.fork_rng``, so the caller's RNG stream is untouched), batches are shuffled
by a numpy ``Generator`` and deterministic algorithms are switched on for the run.

A dynamics directory is never shared by two runs: a run into a directory that already holds a
recording, complete or incomplete, raises ``FileExistsError`` unless ``overwrite=True``. A run
that stops early (wrong-shaped logits, a non-finite loss, any exception) keeps the epochs it
finished and marks the recording incomplete, so that :func:`cartoflow.dynamics.read_dynamics`
refuses it unless asked with ``allow_incomplete=True``. To continue a recording from your own
loop after a checkpoint restart, use ``DynamicsRecorder(..., resume=True)`` directly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F

from cartoflow.errors import (
    DataValidationError,
    TrainingError,
    TrainingStopped,
    describe_items,
    describe_rows,
)
from cartoflow.featurize import HashedNgrams
from cartoflow.models import MODELS, FastTextClassifier, MiniLMClassifier, TextModel, build_model
from cartoflow.train_config import ARCHITECTURE_NAMES, OPTIMIZER_NAMES, TrainConfig

__all__ = [
    "ARCHITECTURES",
    "OPTIMIZERS",
    "EpochStats",
    "EvalResult",
    "LazyAdam",
    "ThresholdRunResult",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "evaluate_predictions",
    "load_model",
    "load_model_meta",
    "log_progress",
    "make_model",
    "predict_proba",
    "save_model",
    "train_classifier",
    "train_with_threshold_samples",
]

logger = logging.getLogger(__name__)

MODEL_FORMAT = 1


class EpochStats(TypedDict):
    """One epoch of training, as passed to the progress callback and kept in the history."""

    epoch: int  # 0-based, the same number as the dynamics' ``epoch=E`` folder
    epochs: int  # total epochs in the run
    loss: float  # mean training cross-entropy over the epoch's batches (sample-weighted)
    train_accuracy: float  # accuracy of the training forward passes (dropout on, mid-epoch weights)
    eval_accuracy: float | None  # accuracy on the eval set after the epoch, None without one
    seconds: float  # wall-clock seconds of the epoch, recording and evaluation included


@dataclass(frozen=True)
class EvalResult:
    """Classification quality on a labelled set.

    Attributes:
        accuracy: Fraction predicted right. High = good.
        macro_f1: Unweighted mean of ``per_class_f1`` over all C classes. High = good.
        per_class_f1: C floats in label-index order; a class with no true and no predicted
            samples scores 0 (scikit-learn's ``zero_division=0``).
        confusion: (C, C) int64 counts, rows = true label, columns = predicted label.
    """

    accuracy: float
    macro_f1: float
    per_class_f1: list[float]
    confusion: np.ndarray

    @property
    def num_samples(self) -> int:
        return int(self.confusion.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the confusion matrix as nested lists)."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class_f1": list(self.per_class_f1),
            "confusion": self.confusion.tolist(),
            "num_samples": self.num_samples,
        }


@dataclass
class TrainResult:
    """What :func:`train_classifier` hands back.

    Attributes:
        model: The trained model, in eval mode.
        history: One :class:`EpochStats` per epoch.
        eval: Quality on the eval set after the last epoch (None without an eval set).
        dynamics_dir: Where the dynamics were recorded (None when not recorded).
        config: The configuration used.
    """

    model: nn.Module
    history: list[EpochStats]
    eval: EvalResult | None
    dynamics_dir: Path | None
    config: TrainConfig

    @property
    def seconds(self) -> float:
        """Total training seconds over all epochs."""
        return float(sum(stats["seconds"] for stats in self.history))


@dataclass
class ThresholdRunResult:
    """What :func:`train_with_threshold_samples` hands back (Pleiss et al. 2020).

    Attributes:
        train: The run on the C + 1 classes (its model has C + 1 outputs: not a final model).
        cutoff: AUM cut-off: the ``percentile``-th percentile of the threshold samples' AUM.
            A real sample with AUM below it is likely mislabeled.
        estimated_mislabeled: Estimated number of mislabeled real samples.
        aum: (N,) float64 AUM of every sample against its given label; NaN for the threshold
            samples, whose label during the run was the fake class. Low = likely mislabeled.
        is_threshold: (N,) bool, True for the samples moved to the fake class.
        threshold_aum: AUM of the threshold samples against the fake class.
    """

    train: TrainResult
    cutoff: float
    estimated_mislabeled: int
    aum: np.ndarray
    is_threshold: np.ndarray
    threshold_aum: np.ndarray = field(repr=False)

    @property
    def flagged(self) -> np.ndarray:
        """(N,) bool: real samples whose AUM is below the cut-off (likely mislabeled)."""
        return ~self.is_threshold & (np.nan_to_num(self.aum, nan=np.inf) < self.cutoff)


# ----------------------------------------------------------------------------------- registries


def _fasttext(config: TrainConfig, num_classes: int) -> nn.Module:
    featurizer = HashedNgrams(
        buckets=config.buckets, ngram_range=config.ngram_range, word_ngrams=config.word_ngrams
    )
    return FastTextClassifier(
        config.buckets,
        config.dim,
        num_classes,
        config.hidden,
        dropout=config.dropout,
        featurizer=featurizer,
    )


def _minilm(config: TrainConfig, num_classes: int) -> nn.Module:
    return MiniLMClassifier(
        num_classes, config.hidden if config.hidden is not None else 256, dropout=config.dropout
    )


#: Architecture name -> builder(config, num_classes).
ARCHITECTURES: dict[str, Callable[[TrainConfig, int], nn.Module]] = {
    "fasttext": _fasttext,
    "minilm": _minilm,
}

Optimizers = list[torch.optim.Optimizer]


class LazyAdam(torch.optim.Optimizer):
    """Adam for sparse gradients that touches only the rows present in the batch.

    The same update as ``torch.optim.SparseAdam`` ("lazy" Adam: moments of absent rows are not
    decayed), written with ``index_select`` / ``index_copy_`` so that a step costs O(rows in the
    batch x D). ``SparseAdam`` in recent torch releases costs O(table size) per step, tens of
    milliseconds for a 2**18 x 64 table on CPU.

    Args:
        params: Parameters that receive sparse gradients (``EmbeddingBag(sparse=True)``).
        lr: Learning rate.
        betas: Decay rates of the first and second moments.
        eps: Added to the denominator for stability.
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a (sparse or dense) gradient."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                else:
                    rows = torch.arange(param.shape[0], device=param.device)
                    values = grad
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                step = state["step"]
                exp_avg = state["exp_avg"].index_select(0, rows)
                exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
                exp_avg.mul_(beta1).add_(values, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(values, values, value=1 - beta2)
                state["exp_avg"].index_copy_(0, rows, exp_avg)
                state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                param.index_add_(0, rows, exp_avg.div_(denom).mul_(-step_size))
        return loss


def _adam(dense: list[nn.Parameter], sparse: list[nn.Parameter], config: TrainConfig) -> Optimizers:
    out: Optimizers = []
    if dense:
        out.append(torch.optim.Adam(dense, lr=config.lr, weight_decay=config.weight_decay))
    if sparse:
        out.append(LazyAdam(sparse, lr=config.lr))
    return out


def _sgd(dense: list[nn.Parameter], sparse: list[nn.Parameter], config: TrainConfig) -> Optimizers:
    groups: list[dict[str, Any]] = []
    if dense:
        groups.append({"params": dense, "weight_decay": config.weight_decay})
    if sparse:
        groups.append({"params": sparse, "weight_decay": 0.0})  # decay would densify the grad
    return [torch.optim.SGD(groups, lr=config.lr)]


#: Optimizer name -> builder(dense params, sparse-gradient params, config).
OPTIMIZERS: dict[
    str, Callable[[list[nn.Parameter], list[nn.Parameter], TrainConfig], Optimizers]
] = {"adam": _adam, "sgd": _sgd}
# TrainConfig validates names without importing torch; keep both lists in step.
assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES and tuple(OPTIMIZERS) == OPTIMIZER_NAMES


def make_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The model ``config.architecture`` names, with C = ``num_classes`` outputs."""
    return ARCHITECTURES[config.architecture](config, num_classes)


# ------------------------------------------------------------------------------------- helpers


def log_progress(stats: EpochStats) -> None:
    """Default progress callback: one INFO line per epoch on the ``cartoflow.train`` logger."""
    eval_part = "" if stats["eval_accuracy"] is None else f", eval acc {stats['eval_accuracy']:.4f}"
    logger.info(
        "epoch %d/%d: loss %.4f, train acc %.4f%s, %.1f s",
        stats["epoch"] + 1,
        stats["epochs"],
        stats["loss"],
        stats["train_accuracy"],
        eval_part,
        stats["seconds"],
    )


def _rows_hold(rows: np.ndarray) -> str:
    """``"row 3 holds"`` / ``"rows 3, 9 hold"``."""
    return f"{describe_rows(rows.tolist())} {'holds' if len(rows) == 1 else 'hold'}"


def _check_labels(
    labels: npt.ArrayLike, *, num_classes: int, num_texts: int, what: str
) -> np.ndarray:
    """(N,) int64 labels in [0, C), else DataValidationError naming the rows."""
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) != num_texts:
        raise DataValidationError(
            f"Expected `{what}` to be a 1-D array with one label per text ({num_texts}), "
            f"but got shape {array.shape}."
        )
    if array.dtype.kind == "f":
        integral = np.isfinite(array) & (array == np.round(array))
        if not integral.all():
            raise DataValidationError(
                f"Expected `{what}` to hold integer class indices, but "
                f"{_rows_hold(np.flatnonzero(~integral))} {array[~integral][:3].tolist()}."
            )
    elif array.dtype.kind not in "iub":
        raise DataValidationError(
            f"Expected `{what}` to hold integer class indices (encode names with LabelMap), "
            f"but got dtype {array.dtype}."
        )
    array = array.astype(np.int64)
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        raise DataValidationError(
            f"Expected `{what}` to hold class indices in [0, {num_classes}), but "
            f"{_rows_hold(np.flatnonzero(bad))} {describe_items(np.unique(array[bad]))}."
        )
    return array


def _check_model(model: Any, num_classes: int) -> nn.Module:
    """The model as an ``nn.Module`` with the TextModel methods, else TypeError/ValueError."""
    missing = [name for name in ("featurize", "embed") if not callable(getattr(model, name, None))]
    if not isinstance(model, nn.Module) or missing:
        raise TypeError(
            "Expected a torch.nn.Module implementing cartoflow.models.TextModel (featurize, "
            f"forward, embed, config), but got {type(model).__name__}"
            f"{' without ' + ', '.join(missing) if missing else ''}."
        )
    declared = getattr(model, "num_classes", num_classes)
    if declared != num_classes:
        raise ValueError(
            f"Expected a model with {num_classes} outputs (num_classes), but the model declares "
            f"num_classes={declared}."
        )
    return model


def _sparse_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(dense params, params of sparse-gradient embeddings): each needs its own optimiser."""
    sparse_ids: set[int] = set()
    sparse: list[nn.Parameter] = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (
            isinstance(module, nn.Embedding | nn.EmbeddingBag)
            and module.sparse
            and isinstance(weight, nn.Parameter)
            and id(weight) not in sparse_ids
        ):
            sparse_ids.add(id(weight))
            sparse.append(weight)
    dense = [p for p in model.parameters() if p.requires_grad and id(p) not in sparse_ids]
    return dense, [p for p in sparse if p.requires_grad]


class _Determinism:
    """The process-wide deterministic-algorithms flag, shared by runs that overlap in threads.

    The first run to start saves the caller's setting and switches the flag on; the last to end
    restores it. Saving and restoring per run would leave the flag on whenever two runs overlap.
    """

    lock = threading.Lock()
    active = 0
    saved = (False, False)

    @classmethod
    @contextmanager
    def on(cls) -> Iterator[None]:
        with cls.lock:
            if cls.active == 0:
                cls.saved = (
                    torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled(),
                )
                # warn_only: a custom model's op without a deterministic kernel warns, not fails.
                torch.use_deterministic_algorithms(True, warn_only=True)
            cls.active += 1
        try:
            yield
        finally:
            with cls.lock:
                cls.active -= 1
                if cls.active == 0:
                    torch.use_deterministic_algorithms(cls.saved[0], warn_only=cls.saved[1])


@contextmanager
def _torch_session(config: TrainConfig) -> Iterator[None]:
    """Seeded, deterministic, thread-limited torch state for one run; restored afterwards."""
    threads = torch.get_num_threads()
    devices = [torch.device(config.device).index or 0] if config.device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), _Determinism.on():
        try:
            if config.num_threads is not None:
                torch.set_num_threads(config.num_threads)
            torch.manual_seed(config.seed)
            yield
        finally:
            torch.set_num_threads(threads)


def _is_recording_entry(path: Path) -> bool:
    """The manifest, its lock and temporary files, and the ``epoch=E`` folders."""
    return path.name.startswith(("_manifest", "._manifest")) or (
        path.is_dir() and path.name.startswith("epoch=")
    )


def _prepare_dynamics_dir(path: str | os.PathLike[str] | None, *, overwrite: bool) -> Path | None:
    """Refuse to mix two runs' dynamics; with ``overwrite`` remove an old recording's files."""
    if path is None:
        return None
    target = Path(path)
    if not target.exists():
        return target
    if not target.is_dir():
        raise FileExistsError(f"Expected {target} to be a dynamics directory, but it is a file.")
    entries = list(target.iterdir())
    if not entries:
        return target
    others = [e.name for e in entries if not _is_recording_entry(e)]
    manifest = target / "_manifest.json"
    status = "unfinished"
    if manifest.exists():
        try:
            status = str(json.loads(manifest.read_text()).get("status", "unknown"))
        except (OSError, ValueError):
            status = "unreadable"
    if others:
        raise FileExistsError(
            f"Expected {target} to be empty or to hold a dynamics recording, but it holds "
            f"{describe_items(sorted(others))}; choose another dynamics directory."
        )
    if not overwrite:
        raise FileExistsError(
            f"{target} already holds a dynamics recording (status: {status}); a new run would "
            "mix with it. Pass overwrite=True to replace it, or choose a new directory. "
            "To continue it from your own training loop, use DynamicsRecorder(..., resume=True)."
        )
    for entry in entries:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return target


def _kept_note(dyn_path: Path | None) -> str:
    if dyn_path is None:
        return ""
    return (
        f" Training stopped; the dynamics of the finished epochs are kept in {dyn_path} "
        "and marked incomplete."
    )


def _batch_logits(
    model: nn.Module, batch: Any, *, size: int, num_classes: int, where: str, note: str = ""
) -> torch.Tensor:
    """Run the model on one batch and check it returned float logits of shape (size, C)."""
    logits = model(batch)
    if not isinstance(logits, torch.Tensor):
        raise TrainingError(
            f"Expected the model to return a logits tensor of shape ({size}, {num_classes}) "
            f"at {where}, but it returned {type(logits).__name__}.{note}"
        )
    if tuple(logits.shape) != (size, num_classes) or not logits.is_floating_point():
        raise TrainingError(
            f"Expected logits of shape ({size}, {num_classes}) (batch, classes) and a float "
            f"dtype at {where}, but got shape {tuple(logits.shape)} and dtype {logits.dtype}."
            f"{note}"
        )
    return logits


def _predict_logits(
    model: nn.Module, features: Any, *, num_classes: int, batch_size: int
) -> torch.Tensor:
    """(N, C) float32 CPU logits of all rows of ``features`` in eval mode (no grad)."""
    was_training = model.training
    model.eval()
    parts: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for b, start in enumerate(range(0, len(features), batch_size)):
                index = np.arange(start, min(start + batch_size, len(features)))
                logits = _batch_logits(
                    model,
                    features.take(index),
                    size=len(index),
                    num_classes=num_classes,
                    where=f"prediction batch {b}",
                )
                parts.append(logits.float().cpu())
    finally:
        model.train(was_training)
    if not parts:
        return torch.zeros((0, num_classes))
    return torch.cat(parts)


def _model_num_classes(model: nn.Module) -> int:
    value = getattr(model, "num_classes", None)
    if not isinstance(value, int):
        raise TypeError(
            "Expected the model to declare `num_classes` (an int), "
            f"but {type(model).__name__} declares {value!r}."
        )
    return value


# ------------------------------------------------------------------------------------ evaluate


def evaluate_predictions(
    labels: npt.ArrayLike, predictions: npt.ArrayLike, *, num_classes: int
) -> EvalResult:
    """Accuracy, macro-F1, per-class F1 and confusion matrix of predicted class indices.

    Args:
        labels: (N,) int true class indices in [0, C).
        predictions: (N,) int predicted class indices in [0, C).
        num_classes: C; classes absent from both arrays still count in the macro average.

    Returns:
        :class:`EvalResult`; all scores high = good.
    """
    y = _check_labels(
        labels, num_classes=num_classes, num_texts=len(np.asarray(labels)), what="labels"
    )
    p = _check_labels(predictions, num_classes=num_classes, num_texts=len(y), what="predictions")
    confusion = np.bincount(y * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )
    tp = np.diag(confusion).astype(np.float64)
    # F1 = 2 TP / (2 TP + FP + FN); 0 where a class never occurs nor is predicted.
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    f1 = np.divide(2 * tp, denominator, out=np.zeros(num_classes), where=denominator > 0)
    accuracy = float(tp.sum() / len(y)) if len(y) else 0.0
    return EvalResult(
        accuracy=accuracy,
        macro_f1=float(f1.mean()),
        per_class_f1=[float(v) for v in f1],
        confusion=confusion.astype(np.int64),
    )


def predict_proba(model: nn.Module, texts: Sequence[str], *, batch_size: int = 4096) -> np.ndarray:
    """(N, C) float32 softmax probabilities of a trained model, in eval mode."""
    num_classes = _model_num_classes(model)
    features = cast(TextModel, model).featurize(list(texts))
    logits = _predict_logits(model, features, num_classes=num_classes, batch_size=batch_size)
    return torch.softmax(logits, dim=1).numpy()


def evaluate(
    model: nn.Module,
    texts: Sequence[str],
    labels: npt.ArrayLike,
    *,
    num_classes: int | None = None,
    batch_size: int = 4096,
) -> EvalResult:
    """Evaluate a trained model on labelled texts.

    Args:
        model: A trained :class:`~cartoflow.models.TextModel`.
        texts: N texts.
        labels: (N,) int64 class indices in [0, C).
        num_classes: C; default the model's ``num_classes``.
        batch_size: Texts per forward pass.

    Returns:
        :class:`EvalResult` (accuracy, macro-F1, per-class F1, confusion matrix).
    """
    classes = _model_num_classes(model) if num_classes is None else num_classes
    features = cast(TextModel, model).featurize(list(texts))
    y = _check_labels(labels, num_classes=classes, num_texts=len(features), what="labels")
    return _evaluate_features(model, features, y, num_classes=classes, batch_size=batch_size)


def _evaluate_features(
    model: nn.Module, features: Any, labels: np.ndarray, *, num_classes: int, batch_size: int
) -> EvalResult:
    logits = _predict_logits(model, features, num_classes=num_classes, batch_size=batch_size)
    return evaluate_predictions(labels, logits.argmax(dim=1).numpy(), num_classes=num_classes)


# -------------------------------------------------------------------------------------- train


def train_classifier(
    texts: Sequence[str],
    labels: npt.ArrayLike,
    *,
    num_classes: int,
    config: TrainConfig | None = None,
    dynamics_dir: str | os.PathLike[str] | None = None,
    eval_texts: Sequence[str] | None = None,
    eval_labels: npt.ArrayLike | None = None,
    progress: Callable[[EpochStats], None] | None = None,
    model: nn.Module | None = None,
    overwrite: bool = False,
    stop: Callable[[], str | None] | None = None,
) -> TrainResult:
    """Train a classifier and record its training dynamics.

    Args:
        texts: N training texts; sample i of the dynamics is ``texts[i]``.
        labels: (N,) int class indices in [0, C).
        num_classes: C.
        config: Training configuration; default ``TrainConfig()``.
        dynamics_dir: Where to record dynamics (``epoch=E/part-0.parquet`` + ``_manifest.json``);
            None records nothing. Must be empty or absent unless ``overwrite``.
        eval_texts: Texts of the eval set, scored after every epoch (optional).
        eval_labels: (M,) int class indices of the eval set (with ``eval_texts``).
        progress: Called with an :class:`EpochStats` after every epoch; default
            :func:`log_progress` (logging at INFO).
        model: A :class:`~cartoflow.models.TextModel` to train instead of the one
            ``config.architecture`` builds; its ``num_classes`` must equal C. It is trained in
            place.
        overwrite: Replace a recording already in ``dynamics_dir``.
        stop: Asked before every batch; a reason (a string) stops the training there with
            :class:`~cartoflow.errors.TrainingStopped`. A round stops its training this way when
            a quality gate beside it fails.

    Returns:
        :class:`TrainResult` with the model (eval mode), per-epoch history, final eval result and
        the dynamics directory.

    Raises:
        DataValidationError: Labels out of range or not one per text; eval set half given.
        FileExistsError: ``dynamics_dir`` holds a recording and ``overwrite`` is False.
        TrainingError: The model returned logits of the wrong shape, or the loss was not
            finite; the message names the epoch and the batch, and the dynamics recorded so far
            are kept and marked incomplete.
        TrainingStopped: ``stop`` gave a reason; the dynamics recorded so far are kept and
            marked incomplete.
    """
    config = config or TrainConfig()
    progress = progress or log_progress
    text_list = list(texts)
    num_samples = len(text_list)
    if num_samples == 0:
        raise DataValidationError("Expected at least one training text, but got none.")
    y = _check_labels(labels, num_classes=num_classes, num_texts=num_samples, what="labels")
    if (eval_texts is None) != (eval_labels is None):
        raise DataValidationError(
            "Expected both `eval_texts` and `eval_labels` or neither, but got only "
            f"{'eval_texts' if eval_texts is not None else 'eval_labels'}."
        )
    eval_list = list(eval_texts) if eval_texts is not None else None
    y_eval = (
        _check_labels(
            eval_labels, num_classes=num_classes, num_texts=len(eval_list), what="eval_labels"
        )
        if eval_list is not None and eval_labels is not None
        else None
    )
    dyn_path = _prepare_dynamics_dir(dynamics_dir, overwrite=overwrite)

    with _torch_session(config):
        net = _check_model(
            model if model is not None else make_model(config, num_classes), num_classes
        )
        net.to(config.device)
        byo = cast(TextModel, net)
        features = byo.featurize(text_list)
        if len(features) != num_samples:
            raise TrainingError(
                f"Expected featurize() to return features for {num_samples} texts, "
                f"but it returned {len(features)}."
            )
        eval_features = byo.featurize(eval_list) if eval_list is not None else None
        history = _fit(
            net,
            features,
            y,
            num_classes=num_classes,
            config=config,
            dyn_path=dyn_path,
            eval_features=eval_features,
            eval_labels=y_eval,
            progress=progress,
            stop=stop,
        )
        net.eval()
        final_eval = None
        if eval_features is not None and y_eval is not None:
            final_eval = _evaluate_features(
                net,
                eval_features,
                y_eval,
                num_classes=num_classes,
                batch_size=config.eval_batch_size,
            )
    return TrainResult(
        model=net, history=history, eval=final_eval, dynamics_dir=dyn_path, config=config
    )


def _fit(
    model: nn.Module,
    features: Any,
    labels: np.ndarray,
    *,
    num_classes: int,
    config: TrainConfig,
    dyn_path: Path | None,
    eval_features: Any,
    eval_labels: np.ndarray | None,
    progress: Callable[[EpochStats], None],
    stop: Callable[[], str | None] | None = None,
) -> list[EpochStats]:
    """The epoch loop; dynamics go to ``dyn_path`` when given; ``stop`` is asked per batch."""
    num_samples = len(labels)
    dense, sparse = _sparse_split(model)
    optimizers = OPTIMIZERS[config.optimizer](dense, sparse, config)
    batches_per_epoch = math.ceil(num_samples / config.batch_size)
    total_steps = batches_per_epoch * config.epochs
    targets = torch.from_numpy(labels).to(config.device)
    rng = np.random.default_rng(config.seed)
    history: list[EpochStats] = []

    recorder = None
    if dyn_path is not None:
        from cartoflow.dynamics import DynamicsRecorder

        recorder = DynamicsRecorder(
            dyn_path,
            num_samples=num_samples,
            num_classes=num_classes,
            mode=config.record,
            record_probs=config.record_probs,
        )
    record_train = recorder is not None and config.record == "train"
    step = 0
    try:
        for epoch in range(config.epochs):
            started = time.perf_counter()
            model.train()
            order = rng.permutation(num_samples)
            loss_sum = torch.zeros((), dtype=torch.float64)
            correct = 0
            for b in range(batches_per_epoch):
                index = order[b * config.batch_size : (b + 1) * config.batch_size]
                where = f"epoch {epoch}, batch {b} (of {batches_per_epoch})"
                reason = stop() if stop is not None else None
                if reason:
                    raise TrainingStopped(
                        f"Training was asked to stop at {where}: {reason}." + _kept_note(dyn_path)
                    )
                logits = _batch_logits(
                    model,
                    features.take(index),
                    size=len(index),
                    num_classes=num_classes,
                    where=where,
                    note=_kept_note(dyn_path),
                )
                batch_targets = targets[torch.from_numpy(index).to(config.device)]
                loss = F.cross_entropy(logits, batch_targets)
                if not torch.isfinite(loss):
                    bad = ~torch.isfinite(logits.detach()).all(dim=1).cpu().numpy()
                    detail = (
                        f"; non-finite logits for samples {describe_items(index[bad].tolist())}"
                        if bad.any()
                        else ""
                    )
                    raise TrainingError(
                        f"The training loss is {loss.item()} at {where}{detail}."
                        + _kept_note(dyn_path)
                    )
                if record_train:
                    assert recorder is not None
                    recorder.update(
                        epoch=epoch, samples=index, logits=logits.detach(), targets=batch_targets
                    )
                if config.lr_schedule == "linear":
                    scale = 1.0 - step / total_steps
                    for optimizer in optimizers:
                        for group in optimizer.param_groups:
                            group["lr"] = config.lr * scale
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for optimizer in optimizers:
                    optimizer.step()
                step += 1
                loss_sum += loss.detach().double().cpu() * len(index)
                correct += int((logits.detach().argmax(dim=1) == batch_targets).sum())
            if recorder is not None:
                if config.record == "eval":
                    _record_eval_pass(
                        model, features, targets, recorder, epoch, num_classes, config
                    )
                recorder.end_epoch(epoch)
            eval_accuracy = None
            if eval_features is not None and eval_labels is not None:
                eval_accuracy = _evaluate_features(
                    model,
                    eval_features,
                    eval_labels,
                    num_classes=num_classes,
                    batch_size=config.eval_batch_size,
                ).accuracy
            stats: EpochStats = {
                "epoch": epoch,
                "epochs": config.epochs,
                "loss": float(loss_sum) / num_samples,
                "train_accuracy": correct / num_samples,
                "eval_accuracy": eval_accuracy,
                "seconds": time.perf_counter() - started,
            }
            history.append(stats)
            progress(stats)
    except BaseException as exc:
        if recorder is not None:
            recorder.mark_incomplete(f"training stopped: {type(exc).__name__}: {exc}")
            recorder.close()
        raise
    if recorder is not None:
        recorder.close()
    return history


def _record_eval_pass(
    model: nn.Module,
    features: Any,
    targets: torch.Tensor,
    recorder: Any,
    epoch: int,
    num_classes: int,
    config: TrainConfig,
) -> None:
    """Record dynamics from an eval-mode pass over all training samples, in sample order."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b, start in enumerate(range(0, len(features), config.eval_batch_size)):
                index = np.arange(start, min(start + config.eval_batch_size, len(features)))
                logits = _batch_logits(
                    model,
                    features.take(index),
                    size=len(index),
                    num_classes=num_classes,
                    where=f"epoch {epoch}, eval-mode recording batch {b}",
                )
                recorder.update(
                    epoch=epoch,
                    samples=index,
                    logits=logits,
                    targets=targets[start : start + len(index)],
                )
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------- threshold samples


def train_with_threshold_samples(
    texts: Sequence[str],
    labels: npt.ArrayLike,
    *,
    num_classes: int,
    config: TrainConfig | None = None,
    dynamics_dir: str | os.PathLike[str] | None = None,
    percentile: float = 99.0,
    eval_texts: Sequence[str] | None = None,
    eval_labels: npt.ArrayLike | None = None,
    progress: Callable[[EpochStats], None] | None = None,
    model: nn.Module | None = None,
    overwrite: bool = False,
    stop: Callable[[], str | None] | None = None,
) -> ThresholdRunResult:
    """Area Under the Margin threshold-sample run (Pleiss et al. 2020, arXiv 2001.10528).

    A random 1/(C+1) share of the samples is relabelled to a fake class C (so the model has
    C + 1 outputs). Threshold samples are mislabeled by construction, so their AUM shows how low
    the AUM of a mislabeled sample is; the ``percentile``-th percentile of their AUM is the
    cut-off, and real samples below it are counted as likely mislabeled.

    Args:
        texts: N training texts.
        labels: (N,) int class indices in [0, C).
        num_classes: C, the number of real classes.
        config: Training configuration (the seed also picks the threshold samples).
        dynamics_dir: Where to record this run's dynamics; default a temporary directory that
            is deleted afterwards.
        percentile: Percentile of the threshold samples' AUM used as the cut-off (99 in the
            paper).
        eval_texts: Eval texts (scored with C + 1 classes, the fake class never true).
        eval_labels: (M,) int eval class indices in [0, C).
        progress: Per-epoch callback, as in :func:`train_classifier`.
        model: A model with C + 1 outputs, instead of the configured architecture.
        overwrite: Replace a recording already in ``dynamics_dir``.
        stop: Asked before every batch, as in :func:`train_classifier`.

    Returns:
        :class:`ThresholdRunResult` with the cut-off, the estimated mislabeled count and the
        AUM of every real sample (low = likely mislabeled).
    """
    from cartoflow.aum import assign_threshold_samples, aum_cutoff, estimate_mislabeled
    from cartoflow.dynamics import read_dynamics
    from cartoflow.metrics import aum as aum_metric

    config = config or TrainConfig()
    y = _check_labels(labels, num_classes=num_classes, num_texts=len(texts), what="labels")
    new_labels, is_threshold = assign_threshold_samples(
        y, num_classes=num_classes, seed=config.seed
    )
    is_threshold = np.asarray(is_threshold, dtype=bool)
    with tempfile.TemporaryDirectory(prefix="cartoflow-aum-") as scratch:
        path = Path(dynamics_dir) if dynamics_dir is not None else Path(scratch) / "dynamics"
        result = train_classifier(
            texts,
            new_labels,
            num_classes=num_classes + 1,
            config=config,
            dynamics_dir=path,
            eval_texts=eval_texts,
            eval_labels=eval_labels,
            progress=progress,
            model=model,
            overwrite=overwrite,
            stop=stop,
        )
        dynamics = read_dynamics(path, columns=["margin"])
        margins = np.asarray(aum_metric(dynamics.margin), dtype=np.float64)
    if dynamics_dir is None:
        result.dynamics_dir = None
    cutoff = float(aum_cutoff(margins, is_threshold, percentile=percentile))
    estimated = int(estimate_mislabeled(margins, is_threshold, cutoff))
    real_aum = np.where(is_threshold, np.nan, margins)
    return ThresholdRunResult(
        train=result,
        cutoff=cutoff,
        estimated_mislabeled=estimated,
        aum=real_aum,
        is_threshold=is_threshold,
        threshold_aum=margins[is_threshold],
    )


# --------------------------------------------------------------------------------- save / load


def _meta_path(path: Path) -> Path:
    if path.suffix == ".json":
        raise ValueError(f"Expected a weights path such as model.pt, but got {path}.")
    return path.with_suffix(".json")


def save_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    config: TrainConfig | None = None,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Save a model's ``state_dict`` to ``path`` and its metadata to ``path`` with ``.json``.

    The metadata holds the model kind, the keyword arguments that rebuild it (featurizer
    parameters included), ``num_classes`` and, when given, the training config and label names.
    Both files are written to a temporary name first and then renamed.

    Args:
        model: A :class:`~cartoflow.models.TextModel` (``kind`` and ``config()`` are needed).
        path: Weights file, e.g. ``runs/r1/baseline/model.pt`` (meta: ``model.json``).
        config: The training configuration, stored for the record.
        label_names: Class names in label-index order, stored for the record.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    target = Path(path)
    meta_file = _meta_path(target)
    kind = getattr(model, "kind", type(model).__name__)
    make_config = getattr(model, "config", None)
    meta = {
        "format": MODEL_FORMAT,
        "kind": kind,
        "model_config": make_config() if callable(make_config) else None,
        "num_classes": getattr(model, "num_classes", None),
        "train_config": config.model_dump(mode="json") if config is not None else None,
        "label_names": list(label_names) if label_names is not None else None,
        "torch": torch.__version__,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_weights = target.with_name(f".{target.name}.tmp")
    tmp_meta = meta_file.with_name(f".{meta_file.name}.tmp")
    torch.save(model.state_dict(), tmp_weights)
    tmp_meta.write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    os.replace(tmp_weights, target)
    os.replace(tmp_meta, meta_file)
    return target


def load_model_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata :func:`save_model` wrote beside the weights at ``path``."""
    meta_file = _meta_path(Path(path))
    if not meta_file.exists():
        raise FileNotFoundError(f"Expected model metadata at {meta_file} (written by save_model).")
    meta: dict[str, Any] = json.loads(meta_file.read_text())
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(
            f"Expected model metadata format {MODEL_FORMAT} in {meta_file}, "
            f"but got {meta.get('format')!r}."
        )
    return meta


def load_model(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    map_location: str = "cpu",
) -> nn.Module:
    """Load a model saved by :func:`save_model`, with ``torch.load(weights_only=True)``.

    Args:
        path: The weights file.
        model: An instance to load the weights into (needed for a custom model kind); default
            rebuilds a registered kind (``fasttext``, ``minilm``) from the metadata.
        map_location: Device to load the tensors on.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: The weights or the metadata are missing.
        ValueError: An unregistered kind and no ``model`` given.
    """
    target = Path(path)
    meta = load_model_meta(target)
    state = torch.load(target, map_location=map_location, weights_only=True)
    assign = False  # copy the saved tensors into the model's own
    if model is None:
        if meta["kind"] not in MODELS:
            raise ValueError(
                f"{target} holds a model of kind {meta['kind']!r}, which is not one of "
                f"{sorted(MODELS)}; pass an instance with load_model(path, model=...)."
            )
        # A kind whose every tensor is saved is built on the meta device and given the saved
        # tensors: initialising the parameters only to overwrite them took most of a load
        # (0.3 s for the demo's 2M x 64 embedding table).
        assign = bool(getattr(MODELS[meta["kind"]], "whole_state_saved", False))
        with torch.device("meta") if assign else contextlib.nullcontext():
            model = build_model(meta["kind"], meta["model_config"])
    model.load_state_dict(state, assign=assign)
    return model.eval()
