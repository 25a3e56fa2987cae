"""Per-sample scores from training dynamics, vectorised over (epochs, samples) arrays.

Every metric takes arrays recorded once per epoch for every training sample, shaped
``(E, N)`` (epochs, samples), reduces over ``axis=0`` and returns one value per sample,
shape ``(N,)``. No per-sample Python loops and no sentinel values: a sample that was never
predicted correctly has ``forgetfulness == 0`` and ``never_learnt == True``, not 10000.

Sources:

- Dataset Cartography, Swayamdipta et al. 2020 (arXiv 2009.10795): confidence,
  variability, correctness, the data map and its easy / ambiguous / hard regions.
- Area Under the Margin, Pleiss et al. 2020 (arXiv 2001.10528): AUM, the mean margin.
- Forgetting events, Toneva et al. 2019 (arXiv 1812.05159): forgetfulness.
- Deep Learning on a Data Diet, Paul et al. 2021 (arXiv 2107.07075): EL2N.

Inputs are validated once, at the boundary (each public function, or
:func:`metrics_from_arrays` for the whole table); the kernels behind them trust their input.
Means are accumulated in float64 from the float32 recordings; passes that need temporaries
go one epoch row (or one block of samples) at a time, so the memory on top of the inputs
stays O(N) instead of another (E, N) float64 copy. Computing the whole table for 1M samples
x 10 epochs x 3 classes takes about 0.4 s of one core (benchmarks/bench_metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from cartoflow.errors import DataValidationError, DynamicsError, describe_items

__all__ = [
    "METRICS",
    "REGIONS",
    "DynamicsLike",
    "Metric",
    "MetricInputs",
    "RegionCutoffs",
    "aleatoric",
    "assign_regions",
    "aum",
    "compute_metrics",
    "confidence",
    "corr_frac",
    "correctness",
    "el2n",
    "forgetfulness",
    "get_metric",
    "metrics_from_arrays",
    "never_learnt",
    "suggested_label",
    "suggested_label_by_vote",
    "suggested_prob",
    "threshold_closeness",
    "variability",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Softmax outputs in float32 can overshoot [0, 1] or miss a sum of 1 by rounding only.
_PROB_TOL = 1e-4
_SUM_TOL = 1e-3

REGIONS: tuple[str, ...] = ("easy", "ambiguous", "hard")
"""Data-map regions, in the order of the categories of the ``region`` column."""
_REGION_DTYPE = pd.CategoricalDtype(list(REGIONS))


class DynamicsLike(Protocol):
    """What :func:`compute_metrics` reads from a :class:`cartoflow.dynamics.TrainingDynamics`."""

    @property
    def gold_prob(self) -> np.ndarray: ...
    @property
    def correct(self) -> np.ndarray: ...
    @property
    def margin(self) -> np.ndarray: ...
    @property
    def pred(self) -> np.ndarray | None: ...
    @property
    def probs(self) -> np.ndarray | None: ...
    @property
    def num_classes(self) -> int: ...


# --------------------------------------------------------------------------------------------
# Validation (once, at the boundary)
# --------------------------------------------------------------------------------------------


def _as_epochs_array(name: str, values: npt.ArrayLike, *, ndim: int = 2) -> np.ndarray:
    array = np.asarray(values)
    layout = "(epochs, samples)" if ndim == 2 else "(epochs, samples, classes)"
    if array.ndim != ndim:
        raise DynamicsError(
            f"Expected `{name}` to be a {ndim}-D array of shape {layout}, "
            f"but got a {array.ndim}-D array of shape {array.shape}."
        )
    if array.shape[0] == 0:
        raise DynamicsError(
            f"Expected `{name}` to hold at least one epoch, but got shape {array.shape}."
        )
    return array


def _bad_samples(bad: np.ndarray) -> np.ndarray:
    """Sample indices (axis 1) where any entry of ``bad`` is true."""
    axes = tuple(axis for axis in range(bad.ndim) if axis != 1)
    return np.flatnonzero(bad.any(axis=axes))


def _check_real(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind in "iu":
        return array.astype(np.float64)
    if array.dtype.kind != "f":
        raise DynamicsError(
            f"Expected `{name}` to hold floating-point numbers, but got dtype {array.dtype}."
        )
    return array


def _check_finite(name: str, values: npt.ArrayLike, *, ndim: int = 2) -> np.ndarray:
    array = _check_real(name, _as_epochs_array(name, values, ndim=ndim))
    if array.size and not np.isfinite(array.sum(dtype=np.float64)):
        # The sum is one cheap pass; only on failure do we pay for locating the culprits.
        bad = ~np.isfinite(array)
        if bad.any():
            raise DynamicsError(
                f"Expected `{name}` to hold finite numbers, but got "
                f"{describe_items(np.unique(array[bad]))} at samples "
                f"{describe_items(_bad_samples(bad))}."
            )
    return array


def _check_probabilities(
    name: str, values: npt.ArrayLike, *, ndim: int = 2, upper: bool = True
) -> np.ndarray:
    array = _check_real(name, _as_epochs_array(name, values, ndim=ndim))
    if array.size == 0:
        return array
    # NaN propagates through min/max, so it fails the test below. ``upper=False`` skips the
    # max pass when a sum-to-one check follows (non-negative values summing to 1 are <= 1).
    low = array.min()
    high = array.max() if upper else 1.0
    if not (low >= -_PROB_TOL and high <= 1 + _PROB_TOL):
        bad = ~((array >= -_PROB_TOL) & (array <= 1 + _PROB_TOL))
        raise DynamicsError(
            f"Expected `{name}` to hold probabilities in [0, 1], but got "
            f"{describe_items(np.unique(array[bad]))} at samples "
            f"{describe_items(_bad_samples(bad))}."
        )
    return array


def _check_correct(values: npt.ArrayLike) -> BoolArray:
    array = _as_epochs_array("correct", values)
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind in "iu" and (array.size == 0 or (array.min() >= 0 and array.max() <= 1)):
        return array.astype(np.bool_)
    raise DynamicsError(
        f"Expected `correct` to be a boolean array (or 0/1 integers), but got dtype "
        f"{array.dtype}"
        + (f" with values {describe_items(np.unique(array))}." if array.size else ".")
    )


def _check_same_shape(name: str, array: np.ndarray, like_name: str, like: np.ndarray) -> None:
    if array.shape[:2] != like.shape[:2]:
        raise DynamicsError(
            f"Expected `{name}` to have the (epochs, samples) shape of `{like_name}`, "
            f"{like.shape[:2]}, but got {array.shape[:2]}."
        )


def _check_probs(values: npt.ArrayLike) -> np.ndarray:
    probs = _check_probabilities("probs", values, ndim=3, upper=False)
    if probs.shape[2] < 2:
        raise DynamicsError(
            f"Expected `probs` to hold at least 2 classes on its last axis, "
            f"but got shape {probs.shape}."
        )
    worst = 0.0
    for block in _blocks(probs.shape[1]):
        deviation = _sum_classes(probs[:, block])
        deviation -= 1
        worst = max(worst, float(np.abs(deviation, out=deviation).max(initial=0.0)))
    if worst > _SUM_TOL:
        totals = _sum_classes(probs)
        bad = np.abs(totals - 1) > _SUM_TOL
        raise DynamicsError(
            f"Expected each row of `probs` to sum to 1 (a softmax output), but samples "
            f"{describe_items(_bad_samples(bad))} sum to "
            f"{describe_items(np.unique(totals[bad].round(4)))}."
        )
    return probs


_BLOCK = 1 << 14


def _blocks(size: int) -> Iterator[slice]:
    """Slices of at most ``_BLOCK`` samples: (E, block, C) working sets stay in cache, which
    makes the class-axis passes about twice as fast as over the whole array."""
    for start in range(0, size, _BLOCK):
        yield slice(start, min(start + _BLOCK, size))


def _sum_classes(values: np.ndarray) -> np.ndarray:
    """float32 sum over the last (class) axis."""
    if values.shape[-1] > 16:
        return values.sum(axis=-1, dtype=np.float32)
    # numpy reduces a short innermost axis several times slower than it adds C strided views.
    total = values[..., 0].astype(np.float32)
    for column in range(1, values.shape[-1]):
        total += values[..., column]
    return total


def _check_labels(values: npt.ArrayLike, *, num_samples: int, num_classes: int | None) -> IntArray:
    labels = np.asarray(values)
    if labels.ndim != 1 or labels.shape[0] != num_samples:
        raise DataValidationError(
            f"Expected `labels` to be a 1-D array with one label index per sample "
            f"({num_samples}), but got shape {labels.shape}."
        )
    if labels.dtype.kind not in "iu":
        raise DataValidationError(
            f"Expected `labels` to hold integer class indices, but got dtype {labels.dtype}; "
            "encode class names first (cartoflow.datasets.LabelMap.encode)."
        )
    if labels.size:
        high = num_classes if num_classes is not None else np.iinfo(np.int64).max
        bad = (labels < 0) | (labels >= high)
        if bad.any():
            expected = f"[0, {num_classes})" if num_classes is not None else "non-negative"
            raise DataValidationError(
                f"Expected `labels` to hold class indices in {expected}, but samples "
                f"{describe_items(np.flatnonzero(bad))} hold "
                f"{describe_items(np.unique(labels[bad]))}."
            )
    return labels.astype(np.int64, copy=False)


def _check_last_epochs(last_epochs: int) -> int:
    if isinstance(last_epochs, bool) or not isinstance(last_epochs, int | np.integer):
        raise ValueError(f"Expected `last_epochs` to be an int, but got {last_epochs!r}.")
    if last_epochs < 1:
        raise ValueError(f"Expected `last_epochs` to be at least 1, but got {last_epochs}.")
    return int(last_epochs)


# --------------------------------------------------------------------------------------------
# Kernels (trust their input)
# --------------------------------------------------------------------------------------------


def _mean(values: np.ndarray) -> FloatArray:
    return values.mean(axis=0, dtype=np.float64)


def _variability(gold_prob: np.ndarray, mean: FloatArray) -> FloatArray:
    # Two-pass population variance, one epoch row at a time: exact where E[p^2] - E[p]^2
    # would cancel, and O(N) extra memory where np.std would allocate an (E, N) float64.
    # float32 is safe here: deviations of [0, 1] values carry ~1e-7 relative error, and the
    # sum of E squares stays within ~E * 6e-8 of the float64 result.
    center = mean.astype(np.float32)
    deviation = np.empty_like(center)
    total = np.zeros_like(center)
    for row in gold_prob:
        np.subtract(row, center, out=deviation, casting="unsafe")
        deviation *= deviation
        total += deviation
    variance = total.astype(np.float64)
    variance /= gold_prob.shape[0]
    return np.sqrt(variance, out=variance)


def _aleatoric(mean: FloatArray, spread: FloatArray) -> FloatArray:
    # mean(p (1 - p)) = mean(p) - mean(p^2) = c (1 - c) - std^2: no extra pass over (E, N).
    return np.maximum(mean * (1.0 - mean) - spread * spread, 0.0)


def _correctness(correct: BoolArray) -> IntArray:
    return np.count_nonzero(correct, axis=0).astype(np.int64, copy=False)


def _never_learnt(correct: BoolArray) -> BoolArray:
    return np.asarray(~correct.any(axis=0), dtype=np.bool_)


def _forgetfulness(correct: BoolArray) -> IntArray:
    forgotten = correct[:-1] & ~correct[1:]
    return np.count_nonzero(forgotten, axis=0).astype(np.int64, copy=False)


def _el2n(probs: np.ndarray, labels: IntArray) -> FloatArray:
    num_samples, num_classes = probs.shape[1], probs.shape[2]
    gold_cells = np.arange(num_samples) * num_classes + labels
    total = np.zeros(num_samples, dtype=np.float64)
    for block in _blocks(num_samples):
        onehot = np.zeros((block.stop - block.start, num_classes), dtype=np.float32)
        onehot.reshape(-1)[gold_cells[block] - block.start * num_classes] = 1
        error = np.empty_like(onehot)
        for epoch_probs in probs[:, block]:
            # Subtract the one-hot rather than expanding sum(p^2) - 2 p_y + 1: near the
            # one-hot the expansion cancels to float32 noise whose square root is ~3e-4,
            # while p_y - 1 is exact there (Sterbenz): the norm keeps float32 precision.
            np.subtract(epoch_probs, onehot, out=error)
            error *= error
            squared = _sum_classes(error)
            total[block] += np.sqrt(squared, out=squared)
    total /= probs.shape[0]
    return total


def _mean_last_probs(probs: np.ndarray, last_epochs: int) -> FloatArray:
    return probs[-last_epochs:].mean(axis=0, dtype=np.float64)


def _suggest(probs: np.ndarray, last_epochs: int) -> tuple[IntArray, FloatArray]:
    mean = _mean_last_probs(probs, last_epochs)
    label = mean.argmax(axis=1)
    prob = np.take_along_axis(mean, label[:, None], axis=1)[:, 0]
    return label.astype(np.int64, copy=False), prob


def _vote(pred: np.ndarray, last_epochs: int) -> IntArray:
    window = pred[-last_epochs:]
    best = window[-1].astype(np.int64)
    best_count = np.zeros(pred.shape[1], dtype=np.int64)
    # O(k^2 N) for a window of k epochs, independent of the number of classes. Candidates
    # are visited oldest first with `>=`, so ties go to the most recent epoch's prediction.
    for candidate in window:
        count = np.count_nonzero(window == candidate, axis=0)
        better = count >= best_count
        best[better] = candidate[better]
        best_count[better] = count[better]
    return best


# --------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------


def confidence(gold_prob: npt.ArrayLike) -> FloatArray:
    """Mean probability of the gold label over epochs (Swayamdipta et al. 2020).

    Args:
        gold_prob: (E, N) softmax probability of each sample's gold label at each epoch.

    Returns:
        (N,) float64 in [0, 1]. Low = the model does not believe the label: hard to learn,
        or likely mislabeled when the variability is low too.
    """
    return _mean(_check_probabilities("gold_prob", gold_prob))


def variability(gold_prob: npt.ArrayLike) -> FloatArray:
    """Population standard deviation (ddof=0) of the gold probability over epochs.

    From Swayamdipta et al. 2020 (Dataset Cartography).

    Args:
        gold_prob: (E, N) probability of the gold label at each epoch.

    Returns:
        (N,) float64 in [0, 0.5]. High = ambiguous: the model keeps changing its mind.
        Low = the model is consistent (consistently right, or consistently wrong).
    """
    gold = _check_probabilities("gold_prob", gold_prob)
    return _variability(gold, _mean(gold))


def correctness(correct: npt.ArrayLike) -> IntArray:
    """Number of epochs at which the prediction equalled the gold label.

    From Swayamdipta et al. 2020 (Dataset Cartography).

    Args:
        correct: (E, N) bool, prediction == gold label at each epoch.

    Returns:
        (N,) int64 in [0, E]. Low = hard to learn or mislabeled.
    """
    return _correctness(_check_correct(correct))


def corr_frac(correct: npt.ArrayLike) -> FloatArray:
    """Fraction of epochs predicted correctly, ``correctness / E`` (Swayamdipta et al. 2020).

    Args:
        correct: (E, N) bool, prediction == gold label at each epoch.

    Returns:
        (N,) float64 in [0, 1]. Low = hard to learn or mislabeled.
    """
    flags = _check_correct(correct)
    return _correctness(flags) / flags.shape[0]


def forgetfulness(correct: npt.ArrayLike) -> IntArray:
    """Forgetting events: correct at epoch t, wrong at epoch t + 1 (Toneva et al. 2019).

    A sample that was never predicted correctly has 0 forgetting events (see
    :func:`never_learnt` to tell it apart from a sample learnt once and kept).

    Args:
        correct: (E, N) bool, prediction == gold label at each epoch.

    Returns:
        (N,) int64 in [0, E // 2]. High = forgotten again and again: an unstable sample
        near the decision boundary, or a label the model fights against.
    """
    return _forgetfulness(_check_correct(correct))


def never_learnt(correct: npt.ArrayLike) -> BoolArray:
    """Whether a sample was predicted wrongly at every epoch (Toneva et al. 2019).

    Args:
        correct: (E, N) bool, prediction == gold label at each epoch.

    Returns:
        (N,) bool. True = never learnt: hard, or likely mislabeled.
    """
    return _never_learnt(_check_correct(correct))


def threshold_closeness(gold_prob: npt.ArrayLike) -> FloatArray:
    """``confidence * (1 - confidence)``, peaking at confidence 0.5.

    Used by the reference report; related to the cartography view that samples with
    confidence near 0.5 sit at the decision threshold (Swayamdipta et al. 2020).

    Args:
        gold_prob: (E, N) probability of the gold label at each epoch.

    Returns:
        (N,) float64 in [0, 0.25]. High = at the decision threshold (uncertain).
    """
    mean = confidence(gold_prob)
    return mean * (1.0 - mean)


def aum(margin: npt.ArrayLike) -> FloatArray:
    """Area Under the Margin: mean over epochs of gold logit minus the largest other logit.

    From Pleiss et al. 2020 (arXiv 2001.10528). The paper averages over every update; here
    the margin is recorded once per sample per epoch, which is the same average sampled at
    the epochs.

    Args:
        margin: (E, N) gold logit minus the largest other logit, at each epoch.

    Returns:
        (N,) float64, unbounded. Low (negative) = the model keeps preferring another
        class: likely mislabeled. Calibrate the cut-off with :mod:`cartoflow.aum`.
    """
    return _mean(_check_finite("margin", margin))


def el2n(probs: npt.ArrayLike, labels: npt.ArrayLike) -> FloatArray:
    """Error L2-norm ``||softmax - onehot(label)||_2``, averaged over epochs.

    From Paul et al. 2021 (arXiv 2107.07075), who score early in training and average over
    several runs; here the average is over the recorded epochs (pass ``probs[:k]`` for the
    early-training score of the paper).

    Args:
        probs: (E, N, C) softmax probabilities at each epoch.
        labels: (N,) int gold label indices in [0, C).

    Returns:
        (N,) float64 in [0, sqrt(2)]. High = far from the label: hard or mislabeled.
    """
    checked = _check_probs(probs)
    gold = _check_labels(labels, num_samples=checked.shape[1], num_classes=checked.shape[2])
    return _el2n(checked, gold)


def aleatoric(gold_prob: npt.ArrayLike) -> FloatArray:
    """Mean over epochs of ``p * (1 - p)`` for the gold probability p.

    The aleatoric-uncertainty estimate of Swayamdipta et al. 2020 (Dataset Cartography,
    appendix), after Kendall & Gal's decomposition.

    Args:
        gold_prob: (E, N) probability of the gold label at each epoch.

    Returns:
        (N,) float64 in [0, 0.25]. High = inherently uncertain (ambiguous or noisy).
    """
    gold = _check_probabilities("gold_prob", gold_prob)
    mean = _mean(gold)
    return _aleatoric(mean, _variability(gold, mean))


def suggested_label(probs: npt.ArrayLike, *, last_epochs: int = 3) -> IntArray:
    """The class with the highest mean probability over the last ``last_epochs`` epochs.

    The model's own answer late in training, offered to annotators next to the gold label.

    Args:
        probs: (E, N, C) softmax probabilities at each epoch.
        last_epochs: how many final epochs to average (all of them if E is smaller).

    Returns:
        (N,) int64 class indices. Differs from the label = the model disagrees with it.
    """
    return _suggest(_check_probs(probs), _check_last_epochs(last_epochs))[0]


def suggested_prob(probs: npt.ArrayLike, *, last_epochs: int = 3) -> FloatArray:
    """Mean probability of :func:`suggested_label` over the last ``last_epochs`` epochs.

    Args:
        probs: (E, N, C) softmax probabilities at each epoch.
        last_epochs: how many final epochs to average (all of them if E is smaller).

    Returns:
        (N,) float64 in [1/C, 1]. High = the model is sure of its suggestion.
    """
    return _suggest(_check_probs(probs), _check_last_epochs(last_epochs))[1]


def suggested_label_by_vote(pred: npt.ArrayLike, *, last_epochs: int = 3) -> IntArray:
    """Majority vote of the predictions over the last ``last_epochs`` epochs.

    The fallback for :func:`suggested_label` when probabilities were not recorded (very
    many classes). Ties go to the most recent epoch's prediction.

    Args:
        pred: (E, N) int predicted class at each epoch.
        last_epochs: how many final epochs vote (all of them if E is smaller).

    Returns:
        (N,) int64 class indices.
    """
    array = _as_epochs_array("pred", pred)
    if array.dtype.kind not in "iu":
        raise DynamicsError(f"Expected `pred` to hold class indices, but got dtype {array.dtype}.")
    return _vote(array, _check_last_epochs(last_epochs))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricInputs:
    """Validated arrays a :class:`Metric` computes from; build it with :meth:`validate`.

    Attributes:
        gold_prob: (E, N) float gold-label probability.
        correct: (E, N) bool.
        margin: (E, N) float gold logit minus best other logit.
        pred: (E, N) int predicted class, or None.
        probs: (E, N, C) float probabilities, or None.
        labels: (N,) int64 gold label indices, or None.
        last_epochs: window for the suggested label.
    """

    gold_prob: np.ndarray
    correct: BoolArray
    margin: np.ndarray
    pred: np.ndarray | None
    probs: np.ndarray | None
    labels: IntArray | None
    last_epochs: int

    @classmethod
    def validate(
        cls,
        gold_prob: npt.ArrayLike,
        correct: npt.ArrayLike,
        margin: npt.ArrayLike,
        *,
        pred: npt.ArrayLike | None = None,
        probs: npt.ArrayLike | None = None,
        labels: npt.ArrayLike | None = None,
        num_classes: int | None = None,
        last_epochs: int = 3,
    ) -> MetricInputs:
        """Check shapes, dtypes and ranges once; raise DynamicsError / DataValidationError."""
        gold = _check_probabilities("gold_prob", gold_prob)
        flags = _check_correct(correct)
        _check_same_shape("correct", flags, "gold_prob", gold)
        margins = _check_finite("margin", margin)
        _check_same_shape("margin", margins, "gold_prob", gold)
        preds = None
        if pred is not None:
            preds = _as_epochs_array("pred", pred)
            _check_same_shape("pred", preds, "gold_prob", gold)
            if preds.dtype.kind not in "iu":
                raise DynamicsError(
                    f"Expected `pred` to hold class indices, but got dtype {preds.dtype}."
                )
        checked_probs = None
        if probs is not None:
            checked_probs = _check_probs(probs)
            _check_same_shape("probs", checked_probs, "gold_prob", gold)
            if num_classes is not None and checked_probs.shape[2] != num_classes:
                raise DynamicsError(
                    f"Expected `probs` to hold num_classes={num_classes} classes, "
                    f"but got {checked_probs.shape[2]}."
                )
            num_classes = checked_probs.shape[2]
        gold_labels = None
        if labels is not None:
            gold_labels = _check_labels(labels, num_samples=gold.shape[1], num_classes=num_classes)
            if checked_probs is not None:
                _check_labels_match(gold, checked_probs, gold_labels)
        return cls(
            gold_prob=gold,
            correct=flags,
            margin=margins,
            pred=preds,
            probs=checked_probs,
            labels=gold_labels,
            last_epochs=_check_last_epochs(last_epochs),
        )

    @property
    def num_epochs(self) -> int:
        """E."""
        return int(self.gold_prob.shape[0])

    @property
    def num_samples(self) -> int:
        """N."""
        return int(self.gold_prob.shape[1])

    @cached_property
    def mean_gold(self) -> FloatArray:
        """(N,) confidence, shared by the metrics that build on it."""
        return _mean(self.gold_prob)

    @cached_property
    def correct_count(self) -> IntArray:
        """(N,) correctness, shared by correctness and corr_frac."""
        return _correctness(self.correct)

    @cached_property
    def spread(self) -> FloatArray:
        """(N,) variability, shared by the metrics that build on it."""
        return _variability(self.gold_prob, self.mean_gold)

    @cached_property
    def suggestion(self) -> tuple[IntArray, FloatArray]:
        """(N,) suggested label and its mean probability (needs ``probs``)."""
        assert self.probs is not None
        return _suggest(self.probs, self.last_epochs)


def _check_labels_match(gold: np.ndarray, probs: np.ndarray, labels: IntArray) -> None:
    # One epoch is enough to catch labels from another dataset version or another order.
    recorded = probs[-1, np.arange(labels.shape[0]), labels]
    bad = np.abs(recorded - gold[-1]) > _PROB_TOL
    if bad.any():
        raise DataValidationError(
            "Expected `labels` to be the labels the dynamics were recorded with "
            "(gold_prob == probs[label] at every epoch), but at the last epoch samples "
            f"{describe_items(np.flatnonzero(bad))} disagree; were the dynamics recorded on "
            "another dataset version or sample order?"
        )


@dataclass(frozen=True)
class Metric:
    """One registered metric: how to compute it and how to read it.

    Attributes:
        name: column name in the metrics table.
        compute: function of validated :class:`MetricInputs` returning an (N,) array.
        requires: MetricInputs fields that must all be present (not None).
        any_of: MetricInputs fields of which at least one must be present.
        direction: which direction is bad, in words.
        paper: where the metric comes from.
    """

    name: str
    compute: Callable[[MetricInputs], np.ndarray]
    requires: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    direction: str = ""
    paper: str = ""

    def available(self, inputs: MetricInputs) -> bool:
        """Whether ``inputs`` hold what this metric needs."""
        present = {
            name for name in (*self.requires, *self.any_of) if getattr(inputs, name) is not None
        }
        return set(self.requires) <= present and (
            not self.any_of or bool(present & set(self.any_of))
        )


def _suggested_label_column(inputs: MetricInputs) -> IntArray:
    if inputs.probs is not None:
        return inputs.suggestion[0]
    assert inputs.pred is not None
    return _vote(inputs.pred, inputs.last_epochs)


def _el2n_column(inputs: MetricInputs) -> FloatArray:
    assert inputs.probs is not None and inputs.labels is not None
    return _el2n(inputs.probs, inputs.labels)


_CARTOGRAPHY = "Swayamdipta et al. 2020, Dataset Cartography (arXiv 2009.10795)"

METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "confidence",
            lambda x: x.mean_gold,
            direction="low = hard to learn or likely mislabeled",
            paper=_CARTOGRAPHY,
        ),
        Metric(
            "variability",
            lambda x: x.spread,
            direction="high = ambiguous; low with low confidence = likely mislabeled",
            paper=_CARTOGRAPHY,
        ),
        Metric(
            "correctness",
            lambda x: x.correct_count,
            direction="low = hard to learn or likely mislabeled",
            paper=_CARTOGRAPHY,
        ),
        Metric(
            "corr_frac",
            lambda x: x.correct_count / x.num_epochs,
            direction="low = hard to learn or likely mislabeled",
            paper=_CARTOGRAPHY,
        ),
        Metric(
            "forgetfulness",
            lambda x: _forgetfulness(x.correct),
            direction="high = unstable, forgotten again and again",
            paper="Toneva et al. 2019, forgetting events (arXiv 1812.05159)",
        ),
        Metric(
            "never_learnt",
            lambda x: _never_learnt(x.correct),
            direction="True = never predicted correctly: hard or likely mislabeled",
            paper="Toneva et al. 2019, forgetting events (arXiv 1812.05159)",
        ),
        Metric(
            "threshold_closeness",
            lambda x: x.mean_gold * (1.0 - x.mean_gold),
            direction="high = confidence near 0.5, at the decision threshold",
            paper=_CARTOGRAPHY,
        ),
        Metric(
            "aum",
            lambda x: _mean(x.margin),
            direction="low (negative) = likely mislabeled",
            paper="Pleiss et al. 2020, Area Under the Margin (arXiv 2001.10528)",
        ),
        Metric(
            "el2n",
            _el2n_column,
            requires=("probs", "labels"),
            direction="high = far from the label: hard or likely mislabeled",
            paper="Paul et al. 2021, Deep Learning on a Data Diet (arXiv 2107.07075)",
        ),
        Metric(
            "aleatoric",
            lambda x: _aleatoric(x.mean_gold, x.spread),
            direction="high = inherently uncertain",
            paper=_CARTOGRAPHY,
        ),
        Metric(
            "suggested_label",
            _suggested_label_column,
            any_of=("probs", "pred"),
            direction="differs from the label = the model disagrees with it",
            paper="argmax of the mean probabilities over the last epochs",
        ),
        Metric(
            "suggested_prob",
            lambda x: x.suggestion[1],
            requires=("probs",),
            direction="high = the model is sure of its suggestion",
            paper="mean probability of the suggested label over the last epochs",
        ),
    )
}
"""Metric name -> :class:`Metric`, in the column order of :func:`compute_metrics`."""


def get_metric(name: str) -> Metric:
    """The registered metric called ``name``; ValueError listing the valid names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(
            f"Expected a metric name, one of {', '.join(METRICS)}, but got {name!r}."
        ) from None


# --------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------


class RegionCutoffs(BaseModel):
    """Absolute cut-offs of the data-map regions of Swayamdipta et al. 2020.

    The paper describes three regions: *easy-to-learn* (high confidence, low variability),
    *ambiguous* (high variability) and *hard-to-learn* (low confidence, low variability). It
    picks its training subsets by rank (e.g. the top 33% by variability); cartoflow uses
    absolute cut-offs so that a sample's region does not depend on the rest of the data
    set, and before/after maps of two dataset versions are comparable.

    A sample is ``ambiguous`` when ``variability >= ambiguous_variability``; otherwise it is
    ``easy`` when ``confidence >= easy_confidence`` and ``hard`` below.

    Defaults: variability is at most 0.5 (a probability that flips between 0 and 1 every
    epoch); the paper's maps put ambiguous samples around 0.3-0.45 and the easy and hard
    corners below about 0.15, so 0.2 separates the arc's top from its two feet. A confidence
    of 0.5 means the gold label gets better-than-even odds on average.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ambiguous_variability: float = Field(
        default=0.2,
        ge=0.0,
        le=0.5,
        description="Variability at or above which a sample is ambiguous.",
    )
    easy_confidence: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Confidence at or above which a not-ambiguous sample is easy (else hard).",
    )


def _region_codes(
    confidence_values: np.ndarray, variability_values: np.ndarray, cutoffs: RegionCutoffs
) -> npt.NDArray[np.int8]:
    codes = np.where(confidence_values >= cutoffs.easy_confidence, 0, 2).astype(np.int8)
    codes[variability_values >= cutoffs.ambiguous_variability] = 1
    return codes


def assign_regions(metrics: pd.DataFrame, *, cutoffs: RegionCutoffs | None = None) -> pd.Series:
    """Data-map region of every sample (Swayamdipta et al. 2020), see :class:`RegionCutoffs`.

    Args:
        metrics: frame with ``confidence`` and ``variability`` columns, one row per sample.
        cutoffs: region cut-offs; the documented defaults when None.

    Returns:
        Categorical Series named ``region`` with categories ``easy``, ``ambiguous``, ``hard``,
        aligned to ``metrics.index``. ``hard`` = low confidence and low variability: likely
        mislabeled or truly hard.
    """
    missing = [name for name in ("confidence", "variability") if name not in metrics.columns]
    if missing:
        raise DataValidationError(
            f"Expected the metrics frame to have columns confidence and variability, but "
            f"{', '.join(missing)} missing (got columns {', '.join(map(str, metrics.columns))})."
        )
    codes = _region_codes(
        metrics["confidence"].to_numpy(dtype=np.float64),
        metrics["variability"].to_numpy(dtype=np.float64),
        cutoffs or RegionCutoffs(),
    )
    return pd.Series(
        pd.Categorical.from_codes(codes, dtype=_REGION_DTYPE),
        index=metrics.index,
        name="region",
    )


# --------------------------------------------------------------------------------------------
# The metrics table
# --------------------------------------------------------------------------------------------


def _string_column(values: Any) -> Any:
    return pd.array(values, dtype="str")


def _id_column(ids: Sequence[Any] | npt.ArrayLike | None, num_samples: int) -> Any:
    if ids is None:
        return _string_column(pc.cast(pa.array(np.arange(num_samples)), pa.large_string()))
    column = ids if isinstance(ids, pd.Series) else pd.Series(np.asarray(ids), copy=False)
    if column.ndim != 1 or len(column) != num_samples:
        raise DataValidationError(
            f"Expected `ids` to hold one id per sample in the dynamics ({num_samples}), "
            f"but got {len(column)}."
        )
    return column.astype("str").array


def metrics_from_arrays(
    gold_prob: npt.ArrayLike,
    correct: npt.ArrayLike,
    margin: npt.ArrayLike,
    *,
    pred: npt.ArrayLike | None = None,
    probs: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    num_classes: int | None = None,
    ids: Sequence[Any] | npt.ArrayLike | None = None,
    label_names: Sequence[str] | None = None,
    last_epochs: int = 3,
    cutoffs: RegionCutoffs | None = None,
) -> pd.DataFrame:
    """The per-sample metrics table from raw (E, N) arrays; see :func:`compute_metrics`.

    Args:
        gold_prob: (E, N) float gold-label probability at each epoch.
        correct: (E, N) bool prediction == gold label.
        margin: (E, N) float gold logit minus the largest other logit.
        pred: (E, N) int predictions; only used for ``suggested_label`` without ``probs``.
        probs: (E, N, C) float probabilities, or None (then no el2n / suggested_prob).
        labels: (N,) int gold label indices, or None (then no label / el2n columns).
        num_classes: C, to check labels when ``probs`` is None.
        ids: (N,) sample ids (any type, stored as str); the sample index when None.
        label_names: C class names; adds a categorical ``label_name`` column.
        last_epochs: window of the suggested label.
        cutoffs: region cut-offs (defaults when None).

    Returns:
        One row per sample, in sample order; columns as in :func:`compute_metrics`.

    Raises:
        DynamicsError: arrays of the wrong dimension, shape, dtype or range.
        DataValidationError: ids, labels or label_names that do not fit the dynamics.
    """
    inputs = MetricInputs.validate(
        gold_prob,
        correct,
        margin,
        pred=pred,
        probs=probs,
        labels=labels,
        num_classes=num_classes,
        last_epochs=last_epochs,
    )
    num_samples = inputs.num_samples
    columns: dict[str, Any] = {
        "sample": np.arange(num_samples, dtype=np.int64),
        "id": _id_column(ids, num_samples),
    }
    if inputs.labels is not None:
        columns["label"] = inputs.labels
        if label_names is not None:
            columns["label_name"] = _label_name_column(
                inputs.labels, label_names, num_classes=num_classes or _num_classes(inputs)
            )
    elif label_names is not None:
        raise DataValidationError(
            "Expected `labels` together with `label_names` (names decode label indices), "
            "but got label_names only."
        )
    for metric in METRICS.values():
        if metric.available(inputs):
            columns[metric.name] = metric.compute(inputs)
    columns["region"] = pd.Categorical.from_codes(
        _region_codes(columns["confidence"], columns["variability"], cutoffs or RegionCutoffs()),
        dtype=_REGION_DTYPE,
    )
    order = [name for name in columns if not name.startswith("suggested_")]
    order += [name for name in columns if name.startswith("suggested_")]
    return pd.DataFrame({name: columns[name] for name in order}, copy=False)


def _num_classes(inputs: MetricInputs) -> int | None:
    return None if inputs.probs is None else int(inputs.probs.shape[2])


def _label_name_column(
    labels: IntArray, label_names: Sequence[str], *, num_classes: int | None
) -> pd.Categorical[Any]:
    names = [str(name) for name in label_names]
    if num_classes is not None and len(names) != num_classes:
        raise DataValidationError(
            f"Expected one label name per class ({num_classes}), but got {len(names)}: "
            f"{describe_items(names)}."
        )
    if len(set(names)) != len(names):
        raise DataValidationError(f"Expected unique label names, but got {describe_items(names)}.")
    if labels.size and labels.max() >= len(names):
        bad = np.flatnonzero(labels >= len(names))
        raise DataValidationError(
            f"Expected labels below the number of label names ({len(names)}), but samples "
            f"{describe_items(bad)} hold {describe_items(np.unique(labels[bad]))}."
        )
    return pd.Categorical.from_codes(labels, dtype=pd.CategoricalDtype(names))


def compute_metrics(
    dynamics: DynamicsLike,
    *,
    ids: Sequence[Any] | npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    label_names: Sequence[str] | None = None,
    last_epochs: int = 3,
    cutoffs: RegionCutoffs | None = None,
) -> pd.DataFrame:
    """Every registered metric for every sample of recorded training dynamics.

    Args:
        dynamics: a :class:`cartoflow.dynamics.TrainingDynamics` (only ``gold_prob``,
            ``correct``, ``margin``, ``pred``, ``probs`` and ``num_classes`` are read).
        ids: (N,) sample ids, in sample order; ``str(sample)`` when None.
        labels: (N,) int gold label indices the dynamics were recorded with. Without them
            there is no ``label`` or ``el2n`` column.
        label_names: class names, one per class; adds a categorical ``label_name`` column.
        last_epochs: how many final epochs the suggested label averages over.
        cutoffs: data-map region cut-offs (:class:`RegionCutoffs` defaults when None).

    Returns:
        One row per sample, in sample order, with columns ``sample`` (int64), ``id`` (str),
        ``label`` (int64) [+ ``label_name``], ``confidence``, ``variability``,
        ``correctness`` (int64), ``corr_frac``, ``forgetfulness`` (int64), ``never_learnt``
        (bool), ``threshold_closeness``, ``aum``, ``el2n`` (with probs and labels),
        ``aleatoric``, ``region`` (categorical easy / ambiguous / hard),
        ``suggested_label`` (int64) and ``suggested_prob`` (with probs). Without probs the
        suggested label is the majority vote of ``pred`` over the last epochs.

    Raises:
        DynamicsError: dynamics arrays of the wrong shape, dtype or range.
        DataValidationError: ids, labels or label_names that do not fit the dynamics.
    """
    return metrics_from_arrays(
        dynamics.gold_prob,
        dynamics.correct,
        dynamics.margin,
        pred=getattr(dynamics, "pred", None),
        probs=getattr(dynamics, "probs", None),
        labels=labels,
        num_classes=getattr(dynamics, "num_classes", None),
        ids=ids,
        label_names=label_names,
        last_epochs=last_epochs,
        cutoffs=cutoffs,
    )
