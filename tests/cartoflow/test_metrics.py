"""Metrics against slow, obviously-correct per-sample twins, plus every bad-input path."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cartoflow import metrics as m
from cartoflow.errors import DataValidationError, DynamicsError

FAST = settings(max_examples=60, deadline=None)

# --------------------------------------------------------------------------------------------
# Slow twins: one sample at a time, plain Python floats and lists.
# --------------------------------------------------------------------------------------------


def column(array: np.ndarray, n: int) -> list:
    return [array[e][n].item() for e in range(len(array))]


def ref_confidence(ps: list[float]) -> float:
    return sum(ps) / len(ps)


def ref_variability(ps: list[float]) -> float:
    mean = ref_confidence(ps)
    return math.sqrt(sum((p - mean) ** 2 for p in ps) / len(ps))


def ref_aleatoric(ps: list[float]) -> float:
    return sum(p * (1 - p) for p in ps) / len(ps)


def ref_forgetfulness(flags: list[bool]) -> int:
    events = 0
    for before, after in itertools.pairwise(flags):
        if before and not after:
            events += 1
    return events


def ref_el2n(rows: list[list[float]], label: int) -> float:
    norms = []
    for row in rows:
        onehot = [1.0 if c == label else 0.0 for c in range(len(row))]
        norms.append(math.sqrt(sum((p - t) ** 2 for p, t in zip(row, onehot, strict=True))))
    return sum(norms) / len(norms)


def ref_suggestion(rows: list[list[float]], last_epochs: int) -> tuple[list[int], float]:
    """All classes tied for the best mean probability over the window, and that mean."""
    window = rows[-last_epochs:]
    means = [sum(row[c] for row in window) / len(window) for c in range(len(rows[0]))]
    best = max(means)
    return [c for c, value in enumerate(means) if best - value <= 1e-6], best


def ref_vote(preds: list[int], last_epochs: int) -> int:
    window = preds[-last_epochs:]
    counts = Counter(window)
    top = max(counts.values())
    return next(p for p in reversed(window) if counts[p] == top)


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 7), st.integers(1, 9))
unit_floats = st.floats(0.0, 1.0, width=32)
gold_probs = shapes.flatmap(lambda s: hnp.arrays(np.float32, s, elements=unit_floats))
corrects = shapes.flatmap(lambda s: hnp.arrays(np.bool_, s))
margins = shapes.flatmap(lambda s: hnp.arrays(np.float32, s, elements=st.floats(-30, 30, width=32)))


@st.composite
def prob_tensors(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(E, N, C) probabilities (exact one-hots included) and (N,) labels."""
    epochs, samples = draw(shapes)
    classes = draw(st.integers(2, 4))
    weights = draw(
        hnp.arrays(
            np.float64,
            (epochs, samples, classes),
            elements=st.one_of(st.just(0.0), st.floats(1e-3, 1.0)),
        )
    )
    weights[weights.sum(axis=2) == 0] = 1.0
    probs = (weights / weights.sum(axis=2, keepdims=True)).astype(np.float32)
    labels = draw(hnp.arrays(np.int64, samples, elements=st.integers(0, classes - 1)))
    return probs, labels


# --------------------------------------------------------------------------------------------
# Each metric against its twin
# --------------------------------------------------------------------------------------------


@FAST
@given(gold_probs)
def test_gold_prob_metrics_match_reference(gold_prob: np.ndarray) -> None:
    conf, var = m.confidence(gold_prob), m.variability(gold_prob)
    close, alea = m.threshold_closeness(gold_prob), m.aleatoric(gold_prob)
    for n in range(gold_prob.shape[1]):
        ps = column(gold_prob, n)
        expected = ref_confidence(ps)
        assert conf[n] == pytest.approx(expected, abs=1e-9)
        # variability is accumulated in float32 (two-pass), the precision of the inputs.
        assert var[n] == pytest.approx(ref_variability(ps), rel=1e-5, abs=1e-6)
        assert close[n] == pytest.approx(expected * (1 - expected), abs=1e-9)
        assert alea[n] == pytest.approx(ref_aleatoric(ps), abs=1e-6)


@FAST
@given(corrects)
def test_correct_metrics_match_reference(correct: np.ndarray) -> None:
    count, frac = m.correctness(correct), m.corr_frac(correct)
    forgot, never = m.forgetfulness(correct), m.never_learnt(correct)
    assert count.dtype == np.int64 and forgot.dtype == np.int64 and never.dtype == np.bool_
    for n in range(correct.shape[1]):
        flags = column(correct, n)
        assert count[n] == sum(flags)
        assert frac[n] == pytest.approx(sum(flags) / len(flags))
        assert forgot[n] == ref_forgetfulness(flags)
        assert never[n] == (not any(flags))


@FAST
@given(margins)
def test_aum_matches_reference(margin: np.ndarray) -> None:
    result = m.aum(margin)
    for n in range(margin.shape[1]):
        assert result[n] == pytest.approx(ref_confidence(column(margin, n)), abs=1e-6)


@FAST
@given(prob_tensors(), st.integers(1, 4))
def test_probs_metrics_match_reference(case: tuple[np.ndarray, np.ndarray], last: int) -> None:
    probs, labels = case
    score = m.el2n(probs, labels)
    label, prob = (
        m.suggested_label(probs, last_epochs=last),
        m.suggested_prob(probs, last_epochs=last),
    )
    for n in range(probs.shape[1]):
        rows = [[float(v) for v in probs[e, n]] for e in range(probs.shape[0])]
        assert score[n] == pytest.approx(ref_el2n(rows, int(labels[n])), rel=1e-5, abs=1e-6)
        tied, best = ref_suggestion(rows, last)
        assert label[n] in tied
        assert prob[n] == pytest.approx(best, abs=1e-6)


@FAST
@given(
    shapes.flatmap(lambda s: hnp.arrays(np.int16, s, elements=st.integers(0, 3))),
    st.integers(1, 5),
)
def test_vote_matches_reference(pred: np.ndarray, last: int) -> None:
    result = m.suggested_label_by_vote(pred, last_epochs=last)
    for n in range(pred.shape[1]):
        assert result[n] == ref_vote(column(pred, n), last)


def test_el2n_keeps_precision_near_the_onehot() -> None:
    probs = np.array([[[1 - 1e-6, 5e-7, 5e-7]]], dtype=np.float32)
    expected = math.sqrt(
        sum((float(p) - t) ** 2 for p, t in zip(probs[0, 0], (1, 0, 0), strict=True))
    )
    assert m.el2n(probs, np.array([0]))[0] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("flags", "count", "forgotten", "never"),
    [
        pytest.param([0, 0, 0, 0], 0, 0, True, id="never-learnt"),
        pytest.param([0, 0, 0, 1], 1, 0, False, id="learnt-at-last-epoch"),
        pytest.param([1, 0, 1, 0, 1], 3, 2, False, id="oscillating-from-correct"),
        pytest.param([0, 1, 0, 1, 0], 2, 2, False, id="oscillating-from-wrong"),
        pytest.param([1, 1, 1, 0], 3, 1, False, id="forgotten-at-last-epoch"),
        pytest.param([1, 1, 1, 1], 4, 0, False, id="always-correct"),
        pytest.param([1], 1, 0, False, id="single-epoch-correct"),
        pytest.param([0], 0, 0, True, id="single-epoch-wrong"),
    ],
)
def test_forgetfulness_edge_cases(
    flags: list[int], count: int, forgotten: int, never: bool
) -> None:
    correct = np.array(flags, dtype=bool)[:, None]
    assert m.correctness(correct)[0] == count
    assert m.forgetfulness(correct)[0] == forgotten
    assert m.never_learnt(correct)[0] == never


def test_variability_is_population_std() -> None:
    gold = np.array([[0.0], [1.0]], dtype=np.float32)
    assert m.variability(gold)[0] == pytest.approx(0.5)


def test_metrics_accept_zero_samples() -> None:
    empty = np.zeros((3, 0), dtype=np.float32)
    assert m.confidence(empty).shape == (0,)
    assert m.forgetfulness(np.zeros((3, 0), dtype=bool)).shape == (0,)


def test_integer_correct_flags_are_accepted() -> None:
    assert m.correctness(np.array([[1, 0], [1, 1]]))[0] == 2


# --------------------------------------------------------------------------------------------
# compute_metrics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeDynamics:
    gold_prob: np.ndarray
    correct: np.ndarray
    margin: np.ndarray
    pred: np.ndarray | None
    probs: np.ndarray | None
    num_classes: int


def make_dynamics(epochs: int = 4, samples: int = 6, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, samples)
    logits = rng.normal(size=(epochs, samples, classes)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    rows = np.arange(samples)
    gold = probs[:, rows, labels]
    pred = probs.argmax(axis=2).astype(np.int16)
    others = np.where(np.eye(classes, dtype=bool)[labels], -np.inf, logits)
    margin = logits[:, rows, labels] - others.max(axis=2)
    dynamics = FakeDynamics(gold, pred == labels, margin, pred, probs.astype(np.float32), classes)
    return dynamics, labels


EXPECTED_COLUMNS = [
    "sample",
    "id",
    "label",
    "label_name",
    "confidence",
    "variability",
    "correctness",
    "corr_frac",
    "forgetfulness",
    "never_learnt",
    "threshold_closeness",
    "aum",
    "el2n",
    "aleatoric",
    "region",
    "suggested_label",
    "suggested_prob",
]


def test_compute_metrics_columns_and_values() -> None:
    dynamics, labels = make_dynamics()
    ids = [f"q{i}" for i in range(6)]
    frame = m.compute_metrics(dynamics, ids=ids, labels=labels, label_names=["a", "b", "c"])
    assert list(frame.columns) == EXPECTED_COLUMNS
    assert frame["sample"].tolist() == list(range(6))
    assert frame["id"].tolist() == ids
    assert frame["label_name"].tolist() == [["a", "b", "c"][i] for i in labels]
    assert frame["correctness"].dtype == np.int64
    assert frame["never_learnt"].dtype == bool
    np.testing.assert_allclose(frame["confidence"], m.confidence(dynamics.gold_prob))
    np.testing.assert_allclose(frame["variability"], m.variability(dynamics.gold_prob))
    np.testing.assert_array_equal(frame["forgetfulness"], m.forgetfulness(dynamics.correct))
    np.testing.assert_allclose(frame["aum"], m.aum(dynamics.margin), rtol=1e-6)
    np.testing.assert_allclose(frame["el2n"], m.el2n(dynamics.probs, labels))
    np.testing.assert_array_equal(
        frame["suggested_label"], m.suggested_label(dynamics.probs, last_epochs=3)
    )
    assert set(frame["region"].cat.categories) == {"easy", "ambiguous", "hard"}
    assert frame.notna().all().all()


def test_compute_metrics_without_probs_votes_and_drops_prob_columns() -> None:
    dynamics, labels = make_dynamics()
    no_probs = FakeDynamics(
        dynamics.gold_prob, dynamics.correct, dynamics.margin, dynamics.pred, None, 3
    )
    frame = m.compute_metrics(no_probs, labels=labels, last_epochs=2)
    assert "el2n" not in frame.columns and "suggested_prob" not in frame.columns
    np.testing.assert_array_equal(
        frame["suggested_label"], m.suggested_label_by_vote(dynamics.pred, last_epochs=2)
    )
    assert frame["id"].tolist() == [str(i) for i in range(6)]


def test_compute_metrics_without_labels_has_no_label_columns() -> None:
    dynamics, _ = make_dynamics()
    frame = m.compute_metrics(dynamics)
    assert "label" not in frame.columns and "el2n" not in frame.columns
    assert "suggested_label" in frame.columns


def test_metrics_from_arrays_matches_compute_metrics() -> None:
    dynamics, labels = make_dynamics(seed=3)
    direct = m.metrics_from_arrays(
        dynamics.gold_prob,
        dynamics.correct,
        dynamics.margin,
        pred=dynamics.pred,
        probs=dynamics.probs,
        labels=labels,
    )
    pd.testing.assert_frame_equal(direct, m.compute_metrics(dynamics, labels=labels))


# --------------------------------------------------------------------------------------------
# Regions and registry
# --------------------------------------------------------------------------------------------


def test_assign_regions_cutoffs_and_boundaries() -> None:
    frame = pd.DataFrame(
        {
            "confidence": [0.9, 0.2, 0.9, 0.5, 0.49, 0.1],
            "variability": [0.05, 0.05, 0.25, 0.0, 0.1999, 0.2],
        },
        index=list("abcdef"),
    )
    regions = m.assign_regions(frame)
    assert regions.tolist() == ["easy", "hard", "ambiguous", "easy", "hard", "ambiguous"]
    assert list(regions.index) == list("abcdef")
    custom = m.assign_regions(
        frame, cutoffs=m.RegionCutoffs(ambiguous_variability=0.3, easy_confidence=0.95)
    )
    assert custom.tolist() == ["hard"] * 6


def test_region_cutoffs_reject_bad_values() -> None:
    with pytest.raises(ValueError, match=r"less than or equal to 0\.5"):
        m.RegionCutoffs(ambiguous_variability=0.7)
    with pytest.raises(ValueError, match="Extra inputs"):
        m.RegionCutoffs(ambiguous=0.2)  # type: ignore[call-arg]


def test_assign_regions_names_missing_columns() -> None:
    with pytest.raises(DataValidationError, match="variability missing"):
        m.assign_regions(pd.DataFrame({"confidence": [0.5]}))


def test_registry_lists_every_metric_with_direction_and_paper() -> None:
    assert list(m.METRICS)[:3] == ["confidence", "variability", "correctness"]
    for metric in m.METRICS.values():
        assert metric.direction and metric.paper
    assert m.get_metric("aum").name == "aum"
    with pytest.raises(ValueError, match=r"one of confidence, variability.*got 'conf'"):
        m.get_metric("conf")


# --------------------------------------------------------------------------------------------
# Bad input: each error says what was expected and what came
# --------------------------------------------------------------------------------------------

GOOD = np.full((3, 4), 0.5, dtype=np.float32)
GOOD_FLAGS = np.ones((3, 4), dtype=bool)
GOOD_PROBS = np.full((3, 4, 2), 0.5, dtype=np.float32)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: m.confidence(np.zeros(4)), r"`gold_prob` to be a 2-D array .* got a 1-D array"),
        (lambda: m.variability(np.zeros((0, 4))), r"at least one epoch, but got shape \(0, 4\)"),
        (
            lambda: m.threshold_closeness(np.array([[0.5, 1.5]])),
            r"probabilities in \[0, 1\], but got 1\.5 at samples 1",
        ),
        (lambda: m.aleatoric(np.array([[0.5, np.nan]])), r"probabilities .* got nan at samples 1"),
        (lambda: m.aleatoric(np.array([["a"]])), r"floating-point numbers, but got dtype <U1"),
        (lambda: m.correctness(np.zeros((2, 2, 2), bool)), r"`correct` to be a 2-D array"),
        (lambda: m.corr_frac(np.array([[0.5]])), r"boolean array .* got dtype float64"),
        (lambda: m.forgetfulness(np.array([[0, 2]])), r"boolean array .* with values 0, 2"),
        (lambda: m.never_learnt(np.zeros(3, bool)), r"`correct` to be a 2-D array"),
        (lambda: m.aum(np.array([[1.0, np.inf]])), r"finite numbers, but got inf at samples 1"),
        (lambda: m.el2n(GOOD, np.zeros(4, int)), r"`probs` to be a 3-D array of shape"),
        (
            lambda: m.el2n(np.full((3, 4, 2), 0.4, np.float32), np.zeros(4, int)),
            r"sum to 1 .* samples 0, 1, 2, 3 sum to 0\.8",
        ),
        (lambda: m.el2n(GOOD_PROBS, np.zeros(3, int)), r"one label index per sample \(4\).*\(3,\)"),
        (lambda: m.el2n(GOOD_PROBS, np.array([0, 1, 2, 0])), r"in \[0, 2\), but samples 2 hold 2"),
        (lambda: m.el2n(GOOD_PROBS, np.zeros(4)), r"integer class indices, but got dtype float64"),
        (lambda: m.el2n(np.ones((3, 4, 1), np.float32), np.zeros(4, int)), "at least 2 classes"),
        (lambda: m.suggested_label(GOOD_PROBS, last_epochs=0), r"at least 1, but got 0"),
        (lambda: m.suggested_prob(-GOOD_PROBS), r"probabilities in \[0, 1\], but got -0\.5"),
        (lambda: m.suggested_label_by_vote(GOOD), r"`pred` to hold class indices, but got dtype"),
    ],
)
def test_each_function_rejects_bad_input(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"correct": GOOD_FLAGS[:, :3]}, DynamicsError, r"`correct` .* \(3, 4\), but got \(3, 3\)"),
        ({"margin": GOOD[:2]}, DynamicsError, r"`margin` .* \(3, 4\), but got \(2, 4\)"),
        ({"pred": np.zeros((3, 5), int)}, DynamicsError, r"`pred` .* but got \(3, 5\)"),
        ({"probs": GOOD_PROBS[:, :2]}, DynamicsError, r"`probs` .* but got \(3, 2\)"),
        (
            {"probs": GOOD_PROBS, "num_classes": 3},
            DynamicsError,
            "num_classes=3 classes, but got 2",
        ),
        ({"ids": ["a", "b"]}, DataValidationError, r"one id per sample .* \(4\), but got 2"),
        ({"label_names": ["x", "y"]}, DataValidationError, "label_names only"),
        (
            {"labels": np.zeros(4, int), "label_names": ["x"], "num_classes": 2},
            DataValidationError,
            r"one label name per class \(2\), but got 1",
        ),
        (
            {"labels": np.array([0, 1, 0, 1]), "label_names": ["x", "x"]},
            DataValidationError,
            "unique label names",
        ),
    ],
)
def test_metrics_from_arrays_rejects_mismatched_inputs(kwargs, error, message: str) -> None:
    arrays = {"gold_prob": GOOD, "correct": GOOD_FLAGS, "margin": GOOD}
    for name in ("correct", "margin"):
        if name in kwargs:
            arrays[name] = kwargs.pop(name)
    with pytest.raises(error, match=message):
        m.metrics_from_arrays(arrays["gold_prob"], arrays["correct"], arrays["margin"], **kwargs)


def test_labels_that_disagree_with_the_dynamics_are_named() -> None:
    dynamics, labels = make_dynamics()
    wrong = labels.copy()
    wrong[[1, 4]] = (wrong[[1, 4]] + 1) % 3
    with pytest.raises(DataValidationError, match=r"samples 1, 4 disagree; .*another dataset"):
        m.compute_metrics(dynamics, labels=wrong)


def test_compute_metrics_reads_a_real_training_dynamics() -> None:
    dynamics_module = pytest.importorskip("cartoflow.dynamics")
    fake, labels = make_dynamics()
    real = dynamics_module.TrainingDynamics(
        gold_prob=fake.gold_prob,
        correct=fake.correct,
        margin=fake.margin,
        pred=fake.pred,
        probs=fake.probs,
        num_classes=3,
    )
    pd.testing.assert_frame_equal(
        m.compute_metrics(real, labels=labels), m.compute_metrics(fake, labels=labels)
    )
