"""Threshold samples: a calibrated "mislabeled" cut-off for AUM (Pleiss et al. 2020).

Area Under the Margin (arXiv 2001.10528) ranks samples by their mean margin (gold logit
minus the largest other logit); mislabeled samples have low, often negative, AUM. To know
*how* low is low, the paper plants samples that are mislabeled on purpose:

1. :func:`assign_threshold_samples` moves a random ``N / (C + 1)`` of the samples to a fake
   extra class with index ``C``. No real feature pattern predicts that class, so these
   samples behave like mislabeled ones.
2. The training stage trains a ``C + 1``-way classifier on the new labels and records
   dynamics as usual (margins are taken against the *assigned* label, so a threshold
   sample's margin is its fake class's logit minus the best other logit).
3. :func:`aum_cutoff` takes the 99th percentile of the threshold samples' AUM.
4. Real samples with AUM below the cut-off are flagged (:func:`flag_mislabeled`);
   :func:`estimate_mislabeled` counts them. ``select_pools(..., aum_cutoff=cutoff,
   exclude=is_threshold)`` turns the flags into the relabel pool.

Threshold samples cannot be scored themselves (their real label was hidden). The paper
runs twice with disjoint threshold sets to score everything; pass the first run's
``is_threshold`` as ``exclude`` to the second call of :func:`assign_threshold_samples`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cartoflow.errors import DataValidationError, describe_items

__all__ = [
    "assign_threshold_samples",
    "aum_cutoff",
    "estimate_mislabeled",
    "flag_mislabeled",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _check_labels(labels: npt.ArrayLike, num_classes: int) -> IntArray:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise ValueError(f"Expected `num_classes` to be an int, but got {num_classes!r}.")
    if num_classes < 2:
        raise ValueError(f"Expected `num_classes` to be at least 2, but got {num_classes}.")
    array = np.asarray(labels)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise DataValidationError(
            f"Expected `labels` to be a 1-D array of class indices, but got a {array.ndim}-D "
            f"array of dtype {array.dtype}."
        )
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        raise DataValidationError(
            f"Expected `labels` to hold class indices in [0, {num_classes}), but samples "
            f"{describe_items(np.flatnonzero(bad))} hold {describe_items(np.unique(array[bad]))}."
        )
    return array.astype(np.int64, copy=False)


def _check_mask(name: str, values: npt.ArrayLike, size: int) -> BoolArray:
    mask = np.asarray(values)
    if mask.shape != (size,) or mask.dtype != np.bool_:
        raise DataValidationError(
            f"Expected `{name}` to be a bool array of shape ({size},), but got {mask.dtype} "
            f"of shape {mask.shape}."
        )
    return mask


def _check_aum(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DataValidationError(
            f"Expected `aum` to be a 1-D array (one AUM per sample), but got shape {array.shape}."
        )
    bad = ~np.isfinite(array)
    if bad.any():
        raise DataValidationError(
            f"Expected finite AUM values, but samples {describe_items(np.flatnonzero(bad))} "
            "hold NaN or infinity."
        )
    return array


def assign_threshold_samples(
    labels: npt.ArrayLike,
    *,
    num_classes: int,
    seed: int = 0,
    exclude: npt.ArrayLike | None = None,
) -> tuple[IntArray, BoolArray]:
    """Move a random ``1 / (C + 1)`` share of the samples to a fake class ``C``.

    Pleiss et al. 2020, section 3: with C real classes, N / (C + 1) threshold samples make
    the fake class as large as an average real class.

    Args:
        labels: (N,) int gold label indices in [0, C).
        num_classes: C, the number of real classes.
        seed: random seed; the same seed picks the same samples.
        exclude: (N,) bool, samples that must not become threshold samples (e.g. those of
            a first run, to score every sample over two runs).

    Returns:
        ``(new_labels, is_threshold)``: (N,) int64 labels with the threshold samples set to
        ``num_classes``, and the (N,) bool mask of threshold samples. Train a
        ``num_classes + 1``-way model on ``new_labels``.
    """
    gold = _check_labels(labels, num_classes)
    size = gold.shape[0]
    eligible = np.ones(size, dtype=bool)
    if exclude is not None:
        eligible &= ~_check_mask("exclude", exclude, size)
    pool = np.flatnonzero(eligible)
    count = min(size // (num_classes + 1), pool.shape[0])
    chosen = np.random.default_rng(seed).choice(pool, size=count, replace=False)
    is_threshold = np.zeros(size, dtype=bool)
    is_threshold[chosen] = True
    new_labels = gold.copy()
    new_labels[is_threshold] = num_classes
    return new_labels, is_threshold


def aum_cutoff(
    aum_values: npt.ArrayLike, is_threshold: npt.ArrayLike, *, percentile: float = 99.0
) -> float:
    """The AUM below which a sample counts as mislabeled: a percentile of threshold samples.

    Pleiss et al. 2020 use the 99th percentile: at most 1% of (surely mislabeled)
    threshold samples score above it, so a real sample below it looks more mislabeled than
    99% of the planted ones.

    Args:
        aum_values: (N,) AUM of every sample, w.r.t. the labels trained on (the fake class
            for threshold samples), e.g. ``cartoflow.metrics.aum(dynamics.margin)``.
        is_threshold: (N,) bool mask from :func:`assign_threshold_samples`.
        percentile: in [0, 100].

    Returns:
        The cut-off (float). Low AUM = likely mislabeled.
    """
    values = _check_aum(aum_values)
    mask = _check_mask("is_threshold", is_threshold, values.shape[0])
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"Expected `percentile` in [0, 100], but got {percentile!r}.")
    if not mask.any():
        raise DataValidationError(
            "Expected at least one threshold sample in `is_threshold`, but got none; "
            "assign them with assign_threshold_samples before training."
        )
    return float(np.percentile(values[mask], percentile))


def flag_mislabeled(
    aum_values: npt.ArrayLike, is_threshold: npt.ArrayLike, cutoff: float
) -> BoolArray:
    """Real (non-threshold) samples whose AUM is below ``cutoff`` (Pleiss et al. 2020).

    Args:
        aum_values: (N,) AUM of every sample.
        is_threshold: (N,) bool mask of threshold samples (never flagged).
        cutoff: from :func:`aum_cutoff`.

    Returns:
        (N,) bool. True = likely mislabeled.
    """
    values = _check_aum(aum_values)
    mask = _check_mask("is_threshold", is_threshold, values.shape[0])
    if not np.isfinite(cutoff):
        raise ValueError(f"Expected a finite `cutoff`, but got {cutoff!r}.")
    return np.asarray((values < cutoff) & ~mask, dtype=bool)


def estimate_mislabeled(aum: npt.ArrayLike, is_threshold: npt.ArrayLike, cutoff: float) -> int:
    """How many real samples look mislabeled: the count of :func:`flag_mislabeled`.

    Args:
        aum: (N,) AUM of every sample.
        is_threshold: (N,) bool mask of threshold samples (not counted).
        cutoff: from :func:`aum_cutoff`.

    Returns:
        The estimated number of mislabeled samples among the real ones.
    """
    return int(np.count_nonzero(flag_mislabeled(aum, is_threshold, cutoff)))
