"""Threshold samples and the calibrated AUM cut-off (Pleiss et al. 2020)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartoflow.aum import (
    assign_threshold_samples,
    aum_cutoff,
    estimate_mislabeled,
    flag_mislabeled,
)
from cartoflow.errors import DataValidationError


def ref_percentile(values: list[float], percentile: float) -> float:
    """Linear interpolation between the closest ranks, one value at a time."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * percentile / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_threshold_samples_take_one_in_c_plus_one_and_the_fake_class() -> None:
    labels = np.arange(40) % 3
    new_labels, is_threshold = assign_threshold_samples(labels, num_classes=3, seed=7)
    assert is_threshold.sum() == 10
    assert (new_labels[is_threshold] == 3).all()
    assert (new_labels[~is_threshold] == labels[~is_threshold]).all()
    again, same = assign_threshold_samples(labels, num_classes=3, seed=7)
    assert (again == new_labels).all() and (same == is_threshold).all()


def test_second_assignment_avoids_the_first() -> None:
    labels = np.zeros(30, dtype=np.int64)
    _, first = assign_threshold_samples(labels, num_classes=2, seed=0)
    _, second = assign_threshold_samples(labels, num_classes=2, seed=1, exclude=first)
    assert first.sum() == second.sum() == 10
    assert not (first & second).any()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-20, 20), min_size=1, max_size=30),
    st.floats(0, 100),
)
def test_cutoff_is_the_percentile_of_threshold_samples(values: list[float], q: float) -> None:
    real = [5.0, -50.0, 50.0]  # must not influence the cut-off
    aum = np.array(real + values)
    is_threshold = np.array([False] * len(real) + [True] * len(values))
    assert aum_cutoff(aum, is_threshold, percentile=q) == pytest.approx(
        ref_percentile(values, q), abs=1e-9
    )


def test_flags_only_real_samples_below_the_cutoff() -> None:
    aum = np.array([-3.0, -1.0, 0.5, 2.0, -4.0, -0.9])
    is_threshold = np.array([False, False, False, False, True, True])
    cutoff = aum_cutoff(aum, is_threshold)
    assert cutoff == pytest.approx(-0.9 - 0.031)
    assert flag_mislabeled(aum, is_threshold, cutoff).tolist() == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    assert estimate_mislabeled(aum, is_threshold, cutoff) == 2


def test_estimate_recovers_planted_noise() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 4000)
    _, is_threshold = assign_threshold_samples(labels, num_classes=3, seed=0)
    noisy = ~is_threshold & (rng.random(4000) < 0.1)
    # Clean samples learn a large margin; planted and real noise stay far below it.
    aum = np.where(noisy | is_threshold, rng.normal(-2.0, 0.5, 4000), rng.normal(4.0, 0.5, 4000))
    count = estimate_mislabeled(aum, is_threshold, aum_cutoff(aum, is_threshold))
    assert abs(count - noisy.sum()) <= 0.02 * noisy.sum()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: assign_threshold_samples(np.array([0, 3]), num_classes=3),
            DataValidationError,
            r"in \[0, 3\), but samples 1 hold 3",
        ),
        (
            lambda: assign_threshold_samples(np.array([[0]]), num_classes=3),
            DataValidationError,
            "1-D array of class indices, but got a 2-D",
        ),
        (lambda: assign_threshold_samples([0, 0], num_classes=1), ValueError, "at least 2"),
        (
            lambda: assign_threshold_samples([0, 1], num_classes=2, exclude=[True]),
            DataValidationError,
            r"`exclude` to be a bool array of shape \(2,\)",
        ),
        (
            lambda: aum_cutoff(np.zeros(3), np.zeros(3, bool)),
            DataValidationError,
            "at least one threshold sample",
        ),
        (
            lambda: aum_cutoff(np.array([0.0, np.nan]), np.ones(2, bool)),
            DataValidationError,
            "finite AUM values, but samples 1",
        ),
        (
            lambda: aum_cutoff(np.zeros(2), np.ones(2, bool), percentile=120),
            ValueError,
            r"in \[0, 100\], but got 120",
        ),
        (
            lambda: aum_cutoff(np.zeros((2, 2)), np.ones(2, bool)),
            DataValidationError,
            r"1-D array \(one AUM per sample\), but got shape \(2, 2\)",
        ),
        (
            lambda: flag_mislabeled(np.zeros(2), np.ones(3, bool), 0.0),
            DataValidationError,
            r"`is_threshold` to be a bool array of shape \(2,\), but got bool of shape \(3,\)",
        ),
        (
            lambda: estimate_mislabeled(np.zeros(2), np.ones(2, bool), float("inf")),
            ValueError,
            "finite `cutoff`",
        ),
    ],
)
def test_bad_input_is_named(call, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()
