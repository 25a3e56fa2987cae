"""Data-quality suites: each passes its contract's frame, and each check catches its own break.

Every case below breaks exactly one check of a passing frame and asserts that this check, and
no other, fails, with the right example ids. Great Expectations is slow to import (seconds),
so the cached context is warmed once per module.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartoflow.errors import DataQualityError, DataValidationError
from cartoflow.quality import (
    SUITES,
    build_data_docs,
    dynamics_summary,
    failure_rows,
    format_suites_table,
    list_suites,
    preload,
    raise_for_failures,
    run_suite,
    runner,
)
from cartoflow.quality.suites import REMOVE, SKIP


@pytest.fixture(scope="module", autouse=True)
def gx_context() -> None:
    """Import GX and build the cached ephemeral context once for the whole module."""
    preload()


# --------------------------------------------------------------------------- passing frames
def dataset() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "text": ["good film", "bad plot", "fine", "great cast", "dull", "ok"],
            "label": ["pos", "neg", "pos", "neg", "pos", "neg"],
            "group": ["g1", "g2", "g3", "g4", "g5", "g6"],
        }
    )


DATASET_PARAMS = {"labels": ["neg", "neu", "pos"], "min_class_share": 0.2, "max_text_length": 50}

N, E, C = 4, 3, 3


def dynamics() -> pd.DataFrame:
    """N samples x E epochs, sample-major within each epoch, with valid probabilities."""
    probs = np.tile(np.array([0.6, 0.3, 0.1], dtype=np.float32), (N * E, 1))
    return pd.DataFrame(
        {
            "sample": np.tile(np.arange(N, dtype=np.int64), E),
            "epoch": np.repeat(np.arange(E, dtype=np.int32), N),
            "gold_prob": probs[:, 0],
            "correct": np.ones(N * E, dtype=bool),
            "margin": np.full(N * E, 0.5, dtype=np.float32),
            "pred": np.zeros(N * E, dtype=np.int16),
            "probs": list(probs),
        }
    )


DYNAMICS_PARAMS = {"num_samples": N, "num_epochs": E}


def row(epoch: int, sample: int) -> int:
    return epoch * N + sample


def metrics() -> pd.DataFrame:
    confidence = np.array([0.9, 0.2, 0.5, 0.7])
    return pd.DataFrame(
        {
            "sample": np.arange(4, dtype=np.int64),
            "id": ["s0", "s1", "s2", "s3"],
            "label": np.array([0, 1, 0, 1], dtype=np.int64),
            "confidence": confidence,
            "variability": [0.1, 0.05, 0.3, 0.2],
            "correctness": np.array([4, 0, 2, 3], dtype=np.int64),
            "corr_frac": [1.0, 0.0, 0.5, 0.75],
            "forgetfulness": np.array([0, 0, 1, 2], dtype=np.int64),
            "never_learnt": [False, True, False, False],
            "threshold_closeness": confidence * (1 - confidence),
            "aum": [2.0, -1.0, 0.1, 0.5],
            "region": ["easy", "hard", "ambiguous", "easy"],
        }
    )


METRICS_PARAMS = {"num_epochs": 4, "num_samples": 4, "labels": [0, 1]}


def pools() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample": np.array([0, 2, 5, 7], dtype=np.int64),
            "id": ["s0", "s2", "s5", "s7"],
            "label": ["0", "1", "2", "1"],
            "pool": ["relabel", "relabel", "hard", "very_hard"],
            "rule": ["relabel: c<0.3", "relabel: c<0.3", "hard: 0.35<c<0.5", "very_hard"],
            "group": ["g0", "g2", "g5", "g7"],
        }
    )


POOLS_PARAMS = {
    "training_ids": [f"s{i}" for i in range(10)],
    "labels": ["0", "1", "2"],
    "budgets": {"relabel": 2, "hard": 1, "very_hard": None},
}


def annotations() -> pd.DataFrame:
    return pd.DataFrame({"id": ["b1", "b2", "b3", "b4"], "new_label": ["0", "1", REMOVE, "2"]})


ANNOTATIONS_PARAMS = {"batch_ids": ["b1", "b2", "b3", "b4"], "labels": ["0", "1", "2"]}


def parent() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["p1", "p2", "p3", "p4", "p5"],
            "text": ["one", "two", "three", "four", "five"],
            "label": ["0", "1", "1", "2", "0"],
        }
    )


def decisions() -> pd.DataFrame:
    """Shaped like ``cartoflow.versions.decide`` output."""
    return pd.DataFrame(
        {
            "sample_id": ["p1", "p2", "p6", "p3"],
            "action": ["fix", "remove", "add", "keep"],
            "new_label": ["1", None, "2", "1"],
        }
    )


def new_version() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["p1", "p3", "p4", "p5", "p6"],
            "text": ["one", "three", "four", "five", "six"],
            "label": ["1", "1", "2", "0", "2"],
        }
    )


def new_version_params() -> dict[str, Any]:
    return {"parent": parent(), "decisions": decisions(), "labels": ["0", "1", "2"]}


MODEL_PARAMS = {
    "baseline_macro_f1": 0.80,
    "retrained_macro_f1": 0.82,
    "tolerance": 0.01,
    "baseline_accuracy": 0.80,
    "retrained_accuracy": 0.81,
}

GOOD: dict[str, Callable[[], tuple[Any, dict[str, Any]]]] = {
    "dataset": lambda: (dataset(), dict(DATASET_PARAMS)),
    "dynamics": lambda: (dynamics(), dict(DYNAMICS_PARAMS)),
    "metrics": lambda: (metrics(), dict(METRICS_PARAMS)),
    "pools": lambda: (pools(), dict(POOLS_PARAMS)),
    "annotations": lambda: (annotations(), dict(ANNOTATIONS_PARAMS)),
    "new_version": lambda: (new_version(), new_version_params()),
    "model": lambda: (None, dict(MODEL_PARAMS)),
}


# --------------------------------------------------------------------------- breaking cases
def _set(column: str, index: int, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        values = frame[column].astype(object).to_numpy(copy=True)
        values[index] = value
        frame[column] = values
        return frame

    return edit


def _drop_column(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.drop(columns=[column])


def _drop_rows(*rows: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.drop(index=list(rows)).reset_index(drop=True)


def _append(**values: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        extra = frame.iloc[[0]].copy()
        for column, value in values.items():
            extra[column] = [value]
        return pd.concat([frame, extra], ignore_index=True)

    return edit


def _set_probs(index: int, probs: list[float]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        values = list(frame["probs"])
        values[index] = np.array(probs, dtype=np.float32)
        frame["probs"] = values
        return frame

    return edit


def _replace_row(index: int, **values: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for column, value in values.items():
            frame = _set(column, index, value)(frame)
        return frame

    return edit


def _same_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame


@dataclass(frozen=True)
class Case:
    """Break ``check`` of ``suite``: edit the passing frame and/or its parameters."""

    suite: str
    check: str
    edit: Callable[[pd.DataFrame], pd.DataFrame] = _same_frame
    examples: list[Any] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    edit_params: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def id(self) -> str:
        return f"{self.suite}-{self.check}"


EPOCHS = ["epoch=0", "epoch=1", "epoch=2"]
CASES = [
    # dataset
    Case("dataset", "required_columns", _drop_column("text"), ["text"]),
    Case("dataset", "has_rows", lambda f: f.iloc[0:0]),
    Case("dataset", "id_not_null", _set("id", 2, None), ["<row 2>"]),
    Case("dataset", "id_unique", _set("id", 3, "a"), ["a"]),
    Case("dataset", "text_not_null", _set("text", 1, None), ["b"]),
    Case("dataset", "text_is_string", _set("text", 4, 42), ["e"]),
    Case("dataset", "text_not_blank", _set("text", 2, "  \t"), ["c"]),
    Case("dataset", "text_length", _set("text", 3, "x" * 51), ["d"]),
    Case("dataset", "label_not_null", _set("label", 0, None), ["a"]),
    # a whole class renamed, so that the unknown class still holds min_class_share
    Case(
        "dataset", "label_in_set", lambda f: f.replace({"label": {"pos": "meh"}}), ["a", "c", "e"]
    ),
    Case("dataset", "class_share_min", _set("label", 5, "neu"), ["f"]),
    Case("dataset", "group_not_null", _set("group", 1, None), ["b"]),
    # dynamics
    Case("dynamics", "required_columns", _drop_column("margin"), EPOCHS),
    Case("dynamics", "has_epochs", lambda f: f.iloc[0:0], params={"num_epochs": None}),
    Case("dynamics", "epochs_contiguous", lambda f: f.replace({"epoch": {2: 3}}), ["epoch=3"]),
    Case("dynamics", "epoch_count", lambda f: f[f["epoch"] < 2]),
    Case("dynamics", "no_missing_samples", _drop_rows(row(1, 2)), ["epoch=1"]),
    Case("dynamics", "no_duplicate_rows", _append(epoch=2, sample=0), ["epoch=2"]),
    Case("dynamics", "sample_in_range", _append(epoch=0, sample=N), ["epoch=0"]),
    Case("dynamics", "gold_prob_in_unit_interval", _set("gold_prob", row(1, 3), 1.5), ["epoch=1"]),
    Case(
        "dynamics", "probs_in_unit_interval", _set_probs(row(2, 1), [1.2, -0.2, 0.0]), ["epoch=2"]
    ),
    Case("dynamics", "probs_sum_to_one", _set_probs(row(0, 0), [0.5, 0.3, 0.1]), ["epoch=0"]),
    Case("dynamics", "margin_finite", _set("margin", row(2, 3), np.inf), ["epoch=2"]),
    # metrics
    Case(
        "metrics", "required_columns", _drop_column("threshold_closeness"), ["threshold_closeness"]
    ),
    Case("metrics", "row_count", _drop_rows(3)),
    Case("metrics", "sample_unique", _set("sample", 3, 2), ["s2", "s3"]),
    Case("metrics", "id_unique", _set("id", 1, "s0"), ["s0"]),
    Case("metrics", "label_in_set", _set("label", 2, 5), ["s2"]),
    Case("metrics", "confidence_range", _set("confidence", 0, 1.2), ["s0"]),
    Case("metrics", "variability_range", _set("variability", 2, 0.6), ["s2"]),
    Case("metrics", "correctness_range", _set("correctness", 0, 5), ["s0"]),
    Case("metrics", "corr_frac_range", _set("corr_frac", 3, 1.5), ["s3"]),
    Case("metrics", "threshold_closeness_range", _set("threshold_closeness", 1, 0.3), ["s1"]),
    Case("metrics", "forgetfulness_range", _set("forgetfulness", 3, 3), ["s3"]),
    Case("metrics", "never_learnt_iff_zero_correctness", _set("never_learnt", 1, False), ["s1"]),
    Case("metrics", "no_nan", _set("aum", 2, np.nan), ["s2"]),
    # pools
    Case("pools", "required_columns", _drop_column("rule"), ["rule"]),
    Case("pools", "id_unique", _set("id", 1, "s0"), ["s0"]),
    Case("pools", "group_unique", _set("group", 2, "g0"), ["s0", "s5"]),
    Case("pools", "id_in_training", _set("id", 3, "zz"), ["zz"]),
    Case("pools", "pool_known", _set("pool", 3, "other"), ["s7"]),
    Case("pools", "pool_within_budget", _set("pool", 2, "relabel"), ["s0", "s2", "s5"]),
    Case("pools", "label_in_set", _set("label", 0, "9"), ["s0"]),
    Case("pools", "rule_not_null", _set("rule", 1, None), ["s2"]),
    # annotations (coverage lowered where a broken id also leaves a batch id unanswered)
    Case("annotations", "required_columns", _drop_column("new_label"), ["new_label"]),
    Case("annotations", "id_not_null", _set("id", 0, None), ["<row 0>"], {"min_coverage": 0.5}),
    Case("annotations", "id_unique", _set("id", 1, "b1"), ["b1"], {"min_coverage": 0.5}),
    Case("annotations", "id_in_batch", _append(id="zz"), ["zz"]),
    Case("annotations", "new_label_valid", _set("new_label", 1, "7"), ["b2"]),
    Case("annotations", "coverage", _set("new_label", 3, SKIP), ["b4"]),
    # new version
    Case("new_version", "required_columns", _drop_column("text"), ["text"]),
    Case("new_version", "row_arithmetic", _drop_rows(3)),
    Case("new_version", "id_not_null", _set("id", 4, None), ["<row 4>"]),
    Case("new_version", "id_unique", _replace_row(2, id="p3", text="three", label="1"), ["p3"]),
    Case("new_version", "label_in_set", _set("label", 4, "9"), ["p6"]),
    Case(
        "new_version",
        "removed_rows_absent",
        _replace_row(3, id="p2", text="two", label="1"),
        ["p2"],
    ),
    Case(
        "new_version",
        "action_known",
        examples=["p3"],
        edit_params=lambda p: {
            **p,
            "decisions": p["decisions"].replace({"action": {"keep": "frobnicate"}}),
        },
    ),
    Case("new_version", "new_rows_added", _set("id", 3, "p7"), ["p7"]),
    Case("new_version", "fixed_labels_applied", _set("label", 0, "0"), ["p1"]),
    Case("new_version", "unchanged_rows_identical", _set("text", 2, "FOUR"), ["p4"]),
    # model (the break is in the scores)
    Case("model", "macro_f1_not_worse", examples=["retrained"], params={"retrained_macro_f1": 0.7}),
    Case("model", "accuracy_not_worse", examples=["retrained"], params={"retrained_accuracy": 0.7}),
]


def _run(case: Case, **extra: Any) -> dict[str, Any]:
    frame, params = GOOD[case.suite]()
    params.update(case.params)
    if case.edit_params is not None:
        params = case.edit_params(params)
    params = {k: v for k, v in params.items() if v is not None}
    if frame is not None:
        frame = case.edit(frame)
    return run_suite(case.suite, frame, **params, **extra)


def failed(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["expectation"]: r for r in result["results"] if not r["success"]}


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("suite", list(SUITES))
def test_passing_frame_passes_every_check(suite: str) -> None:
    frame, params = GOOD[suite]()
    result = run_suite(suite, frame, **params)
    assert failed(result) == {}
    assert result["success"] is True
    assert result["skipped"] == []
    assert result["statistics"]["evaluated"] == len(SUITES[suite].checks)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_break_fails_exactly_its_check(case: Case) -> None:
    result = _run(case)
    failures = failed(result)
    assert set(failures) == {case.check}, failures
    item = failures[case.check]
    assert sorted(item["examples"]) == sorted(case.examples)
    assert item["unexpected_count"] >= 1
    assert result["success"] is (item["severity"] == "warning")


def test_every_declared_check_has_a_breaking_case() -> None:
    declared = {(suite, check) for suite, check, _, _ in list_suites()}
    assert declared == {(c.suite, c.check) for c in CASES}


def test_suites_do_not_modify_their_input() -> None:
    for suite, make in GOOD.items():
        frame, params = make()
        if frame is None:
            continue
        frame = _set(frame.columns[1], 0, None)(frame)  # a break that adds example fallbacks
        before = frame.copy(deep=True)
        params_before = {
            k: v.copy(deep=True) for k, v in params.items() if isinstance(v, pd.DataFrame)
        }
        run_suite(suite, frame, **params)
        pd.testing.assert_frame_equal(frame, before)
        for name, value in params_before.items():
            pd.testing.assert_frame_equal(params[name], value)


def test_result_is_plain_data() -> None:
    result = _run(Case("dataset", "label_in_set", _set("label", 4, "meh")))
    assert pickle.loads(pickle.dumps(result)) == result
    assert json.loads(json.dumps(result)) == result


def test_examples_are_capped_at_twenty_but_the_count_is_not() -> None:
    frame = pd.DataFrame(
        {"id": [f"r{i}" for i in range(30)], "text": ["t"] * 30, "label": ["x"] * 15 + ["y"] * 15}
    )
    result = run_suite("dataset", frame, labels=["y"], min_class_share=0.0)
    item = failed(result)["label_in_set"]
    assert item["unexpected_count"] == 15
    frame["label"] = "bad"
    item = failed(run_suite("dataset", frame, labels=["y"], min_class_share=0.0))["label_in_set"]
    assert item["unexpected_count"] == 30
    assert len(item["examples"]) == 20


def test_error_names_check_count_and_ids() -> None:
    result = _run(Case("dataset", "id_unique", _set("id", 3, "a")))
    with pytest.raises(DataQualityError) as raised:
        raise_for_failures(result)
    message = str(raised.value)
    assert "`dataset`" in message
    assert "id_unique" in message and "2 unexpected" in message and "example ids: a" in message
    assert [f["expectation"] for f in raised.value.failures] == ["id_unique"]


def test_error_message_shows_unexpected_values_and_lists_warnings() -> None:
    frame = annotations()
    frame.loc[1, "new_label"] = "7"
    frame.loc[3, "new_label"] = SKIP
    result = run_suite("annotations", frame, **ANNOTATIONS_PARAMS)
    with pytest.raises(DataQualityError) as raised:
        raise_for_failures(result)
    message = str(raised.value)
    assert "new_label_valid" in message and "'7'" in message and "example ids: b2" in message
    assert "Warnings (reported, not blocking):" in message and "coverage" in message
    rows = failure_rows(result)
    assert {(r["expectation"], r["severity"], r["examples"]) for r in rows} == {
        ("new_label_valid", "error", "b2"),
        ("coverage", "warning", "b4"),
    }


def test_warnings_alone_do_not_raise() -> None:
    result = _run(Case("annotations", "coverage", _set("new_label", 3, SKIP)))
    assert result["success"] is True
    raise_for_failures(result)


def test_annotation_markers_match_case_insensitively_and_blanks_are_unanswered() -> None:
    frame = pd.DataFrame(
        {"id": ["b1", "b2", "b3", "b4"], "new_label": ["0", "<REMOVE>", "  ", None]}
    )
    result = run_suite("annotations", frame, **ANNOTATIONS_PARAMS)
    assert set(failed(result)) == {"coverage"}
    assert sorted(failed(result)["coverage"]["examples"]) == ["b3", "b4"]


def test_coverage_counts_batch_ids_missing_from_the_file() -> None:
    result = run_suite(
        "annotations",
        annotations(),
        batch_ids=["b1", "b2", "b3", "b4", "b5"],
        labels=["0", "1", "2"],
    )
    item = failed(result)["coverage"]
    assert item["examples"] == ["b5"]
    assert item["unexpected_percent"] == pytest.approx(20.0)
    passing = run_suite(
        "annotations",
        annotations(),
        batch_ids=["b1", "b2", "b3", "b4", "b5"],
        labels=["0", "1", "2"],
        min_coverage=0.8,
    )
    assert failed(passing) == {}


def test_table_level_failures_report_observed_values() -> None:
    result = _run(Case("new_version", "row_arithmetic", _drop_rows(3)))
    item = failed(result)["row_arithmetic"]
    assert item["observed_value"] == 4 and item["unexpected_count"] == 1
    with pytest.raises(DataQualityError, match="observed: 4"):
        raise_for_failures(result)


def test_severity_override_turns_an_error_into_a_warning() -> None:
    case = Case("dataset", "class_share_min", _set("label", 5, "neu"))
    result = _run(case, severities={"class_share_min": "warning"})
    assert result["success"] is True
    assert failed(result)["class_share_min"]["severity"] == "warning"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: run_suite("nope", dataset()), "among dataset, dynamics"),
        (lambda: run_suite("dataset", dataset(), bogus=1), "parameters of suite `dataset`"),
        (lambda: run_suite("dataset", None), "Expected a frame"),
        (lambda: run_suite("dataset", dataset(), severities={"nope": "error"}), "among required"),
        (lambda: run_suite("dataset", dataset(), severities={"id_unique": "fatal"}), "'fatal'"),
        (lambda: run_suite("model", dataset(), **MODEL_PARAMS), "not a frame"),
        (lambda: run_suite("model", None, **{**MODEL_PARAMS, "tolerance": -1}), "tolerance"),
        (lambda: run_suite("metrics", metrics(), num_epochs=0), "num_epochs >= 1"),
        (lambda: run_suite("annotations", annotations(), min_coverage=2), "min_coverage"),
    ],
)
def test_bad_arguments_raise_value_error(call: Callable[[], Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_new_version_needs_decision_columns() -> None:
    params = new_version_params()
    params["decisions"] = params["decisions"].drop(columns=["action"])
    with pytest.raises(DataValidationError, match="action"):
        run_suite("new_version", new_version(), **params)


def test_new_version_accepts_an_id_column_in_decisions() -> None:
    params = new_version_params()
    params["decisions"] = params["decisions"].rename(columns={"sample_id": "id"})
    assert failed(run_suite("new_version", new_version(), **params)) == {}


def test_optional_inputs_skip_their_checks() -> None:
    frame = dataset().drop(columns=["group"])
    result = run_suite("dataset", frame, min_class_share=0.0)
    assert {s["expectation"] for s in result["skipped"]} == {
        "label_in_set",
        "class_share_min",
        "group_not_null",
    }
    assert result["success"] is True
    no_probs = run_suite("dynamics", dynamics().drop(columns=["probs"]), num_samples=N)
    assert {s["expectation"] for s in no_probs["skipped"]} == {
        "epoch_count",
        "probs_in_unit_interval",
        "probs_sum_to_one",
    }


def test_dynamics_accepts_an_arrow_table_with_fixed_size_probs() -> None:
    frame = dynamics()
    flat = np.stack(frame["probs"].to_list()).ravel()
    table = pa.Table.from_pandas(frame.drop(columns=["probs"]), preserve_index=False).append_column(
        "probs", pa.FixedSizeListArray.from_arrays(pa.array(flat), C)
    )
    assert failed(run_suite("dynamics", table, **DYNAMICS_PARAMS)) == {}
    broken = table.set_column(
        table.schema.get_field_index("probs"),
        "probs",
        pa.FixedSizeListArray.from_arrays(
            pa.array(np.where(np.arange(flat.size) == 4, 0.9, flat)), C
        ),
    )
    assert failed(run_suite("dynamics", broken, **DYNAMICS_PARAMS))["probs_sum_to_one"][
        "examples"
    ] == ["epoch=0"]


def test_dynamics_without_sample_or_epoch_reports_only_the_missing_columns() -> None:
    result = run_suite("dynamics", dynamics().drop(columns=["epoch"]), **DYNAMICS_PARAMS)
    assert set(failed(result)) == {"required_columns"}
    item = failed(result)["required_columns"]
    assert item["examples"] == ["all epochs"]
    assert item["unexpected_values"] == ["epoch"]
    assert len(result["skipped"]) == len(SUITES["dynamics"].checks) - 1


def test_dynamics_probs_that_are_not_lists_fail_both_probs_checks() -> None:
    frame = dynamics().assign(probs=0.5)
    result = run_suite("dynamics", frame, **DYNAMICS_PARAMS)
    assert set(failed(result)) == {"probs_in_unit_interval", "probs_sum_to_one"}
    assert failed(result)["probs_sum_to_one"]["examples"] == EPOCHS


def test_a_check_gx_could_not_evaluate_fails_and_says_why() -> None:
    from types import SimpleNamespace

    from cartoflow.quality.base import ExpectationSpec
    from cartoflow.quality.runner import _item

    nested = {"metric x": {"raised_exception": True, "exception_message": "boom"}}
    validation = SimpleNamespace(
        success=True,  # GX may report success with a metric exception inside
        result={},
        exception_info=nested,
        expectation_config=SimpleNamespace(type="expect_column_values_to_be_unique", kwargs={}),
    )
    item = _item(ExpectationSpec("id_unique", None, "error", "ids are unique"), validation)
    assert item["success"] is False and item["exception"] == "boom"
    with pytest.raises(DataQualityError, match=r"id_unique .*could not be evaluated: boom"):
        raise_for_failures({"suite": "dataset", "results": [item]})


def _slow_summary(frame: pd.DataFrame, num_samples: int) -> dict[int, tuple[int, int, int]]:
    """Per epoch (missing, duplicate, out-of-range) counted one row at a time."""
    out: dict[int, tuple[int, int, int]] = {}
    for epoch in sorted(set(frame["epoch"])):
        seen: dict[int, int] = {}
        out_of_range = 0
        for sample in frame.loc[frame["epoch"] == epoch, "sample"]:
            if 0 <= sample < num_samples:
                seen[sample] = seen.get(sample, 0) + 1
            else:
                out_of_range += 1
        duplicates = sum(count - 1 for count in seen.values())
        out[int(epoch)] = (num_samples - len(seen), duplicates, out_of_range)
    return out


@settings(max_examples=60, deadline=None)
@given(
    num_samples=st.integers(1, 6),
    rows=st.lists(st.tuples(st.integers(0, 3), st.integers(-2, 8)), min_size=1, max_size=40),
    sort_based=st.booleans(),
)
def test_dynamics_summary_matches_a_row_by_row_count(
    num_samples: int, rows: list[tuple[int, int]], sort_based: bool
) -> None:
    frame = pd.DataFrame(rows, columns=["epoch", "sample"])
    # sort_based: the path taken when epochs x samples flags would not fit in memory
    with mock.patch("cartoflow.quality.suites._MAX_SEEN_CELLS", 0 if sort_based else 1 << 28):
        summary = dynamics_summary(frame, num_samples=num_samples)
    fast = {
        int(r.epoch): (int(r.missing_samples), int(r.duplicate_rows), int(r.samples_out_of_range))
        for r in summary.itertuples()
    }
    assert fast == _slow_summary(frame, num_samples)
    assert summary["missing_columns"].iloc[0] == "gold_prob, correct, margin, pred"


def test_data_docs_are_written_and_kept_across_suites(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    first = _run(Case("dataset", "id_unique", _set("id", 3, "a")), data_docs_dir=docs)
    second = run_suite("model", None, **MODEL_PARAMS, data_docs_dir=docs)
    index = docs / "index.html"
    assert first["data_docs"] == str(index.resolve()) and index.is_file()
    pages = sorted(p.relative_to(docs).parts[1] for p in docs.glob("validations/**/*.html"))
    assert pages == ["dataset", "model"]
    assert "id_unique" in Path(first["data_docs_page"].removeprefix("file://")).read_text()
    assert second["data_docs_page"].endswith(".html")
    assert "dataset" in index.read_text() and "model" in index.read_text()


def test_data_docs_can_be_stored_now_and_rendered_once(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    result = run_suite("model", None, **MODEL_PARAMS, data_docs_dir=docs, render_docs=False)
    page = Path(result["data_docs_page"].removeprefix("file://"))
    assert not page.exists() and not (docs / "index.html").exists()
    assert any((docs / ".gx_results").rglob("*.json"))
    assert build_data_docs(docs) == (docs / "index.html").resolve()
    assert page.is_file() and "macro_f1_not_worse" in page.read_text()


def test_a_later_build_renders_only_the_results_stored_since(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    first = run_suite("model", None, **MODEL_PARAMS, data_docs_dir=docs, render_docs=False)
    build_data_docs(docs)
    first_page = Path(first["data_docs_page"].removeprefix("file://"))
    assert first_page.is_file()
    first_page.write_text("rendered once")  # a page rendered again would lose this
    second = _run(Case("dataset", "id_unique", _set("id", 3, "a")), data_docs_dir=docs)
    assert Path(second["data_docs_page"].removeprefix("file://")).is_file()
    third = run_suite("model", None, **MODEL_PARAMS, data_docs_dir=docs, render_docs=False)
    build_data_docs(docs)
    build_data_docs(docs)  # nothing new: renders nothing, keeps the index
    assert Path(third["data_docs_page"].removeprefix("file://")).is_file()
    assert first_page.read_text() == "rendered once"
    index = (docs / "index.html").read_text()
    assert index.count("validations/model/") == 2 and index.count("validations/dataset/") == 1


def test_data_docs_render_results_stored_by_an_earlier_process(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    earlier = _run(Case("dataset", "id_unique", _set("id", 3, "a")), data_docs_dir=docs)
    # A resumed round: a new process builds its own context on the same folder.
    with mock.patch.dict(runner._CONTEXTS, clear=True):
        later = run_suite("model", None, **MODEL_PARAMS, data_docs_dir=docs, render_docs=False)
        build_data_docs(docs)
    for result in (earlier, later):
        assert Path(result["data_docs_page"].removeprefix("file://")).is_file()
    index = (docs / "index.html").read_text()
    assert "dataset" in index and "model" in index


def _without_seconds(result: dict[str, Any]) -> dict[str, Any]:
    return {**result, "statistics": {**result["statistics"], "seconds": None}}


CASES_BY_ID = {case.id: case for case in CASES}
# A breaking case per GX expectation type the suites use: each fails in the first pass and is
# validated again in the detailed result format.
TWIN_CASES = (
    "dataset-required_columns",
    "dataset-has_rows",
    "dataset-id_not_null",
    "dataset-id_unique",
    "dataset-text_is_string",
    "dataset-text_not_blank",
    "dataset-text_length",
    "dataset-label_in_set",
    "dataset-class_share_min",
    "dynamics-epochs_contiguous",
    "dynamics-epoch_count",
    "pools-pool_within_budget",
    "new_version-removed_rows_absent",
)


def _passing_run(suite: str) -> Callable[[], dict[str, Any]]:
    frame, params = GOOD[suite]()
    return lambda: run_suite(suite, frame, **params)


def _runs(cases: Iterable[Case]) -> list[Any]:
    """Test parameters: every suite's passing frame, then each of ``cases``."""
    return [pytest.param(_passing_run(suite), id=f"{suite}-passing") for suite in SUITES] + [
        pytest.param(lambda c=c: _run(c), id=c.id) for c in cases
    ]


@pytest.mark.parametrize("run", _runs(CASES_BY_ID[case] for case in TWIN_CASES))
def test_two_passes_report_what_one_detailed_pass_reports(
    run: Callable[[], dict[str, Any]],
) -> None:
    """The slow twin: every expectation validated in the detailed result format at once."""
    fast = run()
    with mock.patch.object(runner, "_FIRST_PASS_FORMAT", runner._RESULT_FORMAT):
        detailed = run()
    assert _without_seconds(fast) == _without_seconds(detailed)


SHORTCUTS = {
    # The memo of each expectation's configuration within a validation.
    "memo": ("_configurations_memoized", contextlib.nullcontext),
    # Narrow numeric columns (float32 probabilities, int16 predictions) widened for GX.
    "widened": ("_widened", lambda frame: frame),
}


@pytest.mark.parametrize("shortcut", list(SHORTCUTS))
@pytest.mark.parametrize("run", _runs(CASES))
def test_the_validation_shortcuts_change_no_result(
    run: Callable[[], dict[str, Any]], shortcut: str
) -> None:
    """Each shortcut against GX's own way (the shortcut switched off), every suite and case."""
    fast = run()
    with mock.patch.object(runner, *SHORTCUTS[shortcut]):
        plain = run()
    assert _without_seconds(fast) == _without_seconds(plain)


def test_the_configuration_memo_lives_only_inside_a_validation() -> None:
    from great_expectations.expectations import ExpectColumnValuesToNotBeNull

    expectation = ExpectColumnValuesToNotBeNull(column="id")
    _passing_run("dataset")()  # installs the memoizing property
    assert expectation.configuration is not expectation.configuration  # GX's: built per lookup
    with runner._configurations_memoized():
        first = expectation.configuration
        assert expectation.configuration is first
        expectation.meta = {"changed": True}  # never done during a validation; shown stale
        assert expectation.configuration.meta != {"changed": True}
    assert expectation.configuration.meta == {"changed": True}  # dropped with the validation


def test_a_passing_check_with_unexpected_rows_still_lists_them() -> None:
    frame = annotations()
    frame.loc[3, "new_label"] = SKIP
    result = run_suite("annotations", frame, **ANNOTATIONS_PARAMS, min_coverage=0.5)
    coverage = next(r for r in result["results"] if r["expectation"] == "coverage")
    assert coverage["success"] is True
    assert (coverage["unexpected_count"], coverage["examples"]) == (1, ["b4"])


def test_suites_table_lists_every_check() -> None:
    table = format_suites_table()
    for suite, check, severity, description in list_suites():
        assert any(
            suite in line and check in line and severity in line and description in line
            for line in table.splitlines()
        )
    assert len(list_suites()) == sum(len(s.checks) for s in SUITES.values())


def test_markers_match_the_annotate_module() -> None:
    annotate = pytest.importorskip("cartoflow.annotate")
    assert (annotate.REMOVE, annotate.SKIP) == (REMOVE, SKIP)


def test_importing_the_package_does_not_import_great_expectations() -> None:
    code = "import sys, cartoflow.quality; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
