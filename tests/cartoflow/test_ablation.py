"""The ablation library: variant training sets, summary statistics, answers, chart, runs."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cartoflow.ablation import (
    QUESTIONS,
    SUMMARY_COLUMNS,
    VARIANTS,
    AblationConfig,
    AblationInputs,
    answer_questions,
    build_variant,
    get_variant,
    initial_models,
    plot_ablation,
    prepare_inputs,
    render_markdown,
    report_records,
    summarise,
    summary_table,
    train_and_evaluate,
)
from cartoflow.annotate import SimulatedAnnotator
from cartoflow.errors import DataValidationError
from cartoflow.train import TrainConfig, train_classifier

LABELS = ["0", "1", "2"]

# ---------------------------------------------------------------------------------------------
# A hand-made base: t1 and t3 carry wrong labels, t2 a right one; all three are in the relabel
# pool. t4 / t5 are hard / very-hard seeds. The unlabeled pool holds u1..u5 and t6, an id that
# is also a training id (the random control must never draw it).


@pytest.fixture
def base() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"t{i}" for i in range(1, 7)],
            "text": ["如何评价甲", "乙怎么样", "丙是什么", "丁好吗", "戊为什么", "己在哪"],
            "label": ["0", "1", "2", "1", "2", "0"],
            "group": [f"g{i}" for i in range(1, 7)],
            "true_label": ["1", "1", "0", "1", "2", "0"],
        }
    )


@pytest.fixture
def pools() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["t1", "t2", "t3", "t4", "t5"],
            "pool": ["relabel", "relabel", "relabel", "hard", "very_hard"],
        }
    )


@pytest.fixture
def unlabeled() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["u1", "u2", "u3", "u4", "u5", "t6"],
            "text": ["新问题一", "新问题二", "新问题三", "新问题四", "新问题五", "己在哪"],
            "group": ["gu1", "gu2", "gu3", "gu4", "gu5", "g6"],
            "true_label": ["2", "0", "1", "1", "2", "0"],
        }
    )


@pytest.fixture
def expansion() -> pd.DataFrame:
    return pd.DataFrame({"id": ["u1", "u2", "u3"], "seed_pool": ["hard", "hard", "very_hard"]})


def annotator(error_rate: float = 0.0) -> SimulatedAnnotator:
    return SimulatedAnnotator(column="true_label", error_rate=error_rate, label_names=LABELS)


@pytest.fixture
def inputs(
    base: pd.DataFrame, pools: pd.DataFrame, unlabeled: pd.DataFrame, expansion: pd.DataFrame
) -> AblationInputs:
    return prepare_inputs(
        base, pools, expansion=expansion, unlabeled=unlabeled, annotator=annotator()
    )


def test_baseline_is_the_base_unchanged(inputs: AblationInputs, base: pd.DataFrame) -> None:
    built = build_variant("baseline", inputs)
    pd.testing.assert_frame_equal(built.frame, base)
    assert built.changes["fixed"] == built.changes["removed"] == built.changes["added"] == 0


def test_remove_drops_exactly_the_disputed_relabel_rows(
    inputs: AblationInputs, base: pd.DataFrame
) -> None:
    built = build_variant("relabel-remove", inputs)
    expected = base[~base["id"].isin(["t1", "t3"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(built.frame, expected)
    assert built.changes == {"fixed": 0, "removed": 2, "added": 0, "unchanged": 1, "skipped": 0}


def test_fix_replaces_the_disputed_labels_and_nothing_else(
    inputs: AblationInputs, base: pd.DataFrame
) -> None:
    built = build_variant("relabel-fix", inputs)
    expected = base.copy()
    expected.loc[expected["id"] == "t1", "label"] = "1"
    expected.loc[expected["id"] == "t3", "label"] = "0"
    pd.testing.assert_frame_equal(built.frame, expected)
    assert built.changes["fixed"] == 2 and built.changes["unchanged"] == 1


@pytest.mark.parametrize(
    ("name", "added"), [("hard-expansion", ["u1", "u2"]), ("very-hard-expansion", ["u3"])]
)
def test_expansion_adds_the_candidates_with_the_annotators_labels(
    inputs: AblationInputs,
    base: pd.DataFrame,
    unlabeled: pd.DataFrame,
    name: str,
    added: list[str],
) -> None:
    built = build_variant(name, inputs)
    frame = built.frame
    pd.testing.assert_frame_equal(frame.iloc[: len(base)], base)
    new = frame.iloc[len(base) :].set_index("id")
    assert list(new.index) == added
    truth = unlabeled.set_index("id")
    assert list(new["label"]) == list(truth.loc[added, "true_label"])
    for column in ("text", "group", "true_label"):
        assert list(new[column]) == list(truth.loc[added, column])
    assert built.changes["added"] == len(added)
    assert set(built.decisions["pool"]) == {f"expand:{get_variant(name).seed_pool}"}


def test_expansion_labels_come_from_the_annotator_even_when_it_errs(
    base: pd.DataFrame, pools: pd.DataFrame, unlabeled: pd.DataFrame, expansion: pd.DataFrame
) -> None:
    wrong_all = prepare_inputs(
        base, pools, expansion=expansion, unlabeled=unlabeled, annotator=annotator(1.0)
    )
    frame = build_variant("hard-expansion", wrong_all).frame
    new = frame.iloc[len(base) :].set_index("id")
    truth = unlabeled.set_index("id")["true_label"]
    assert (new["label"] != truth.loc[new.index]).all()
    assert (new["label"] == wrong_all.answers.loc[new.index]).all()


def test_random_control_has_the_larger_expansions_size_by_default(
    inputs: AblationInputs, base: pd.DataFrame
) -> None:
    built = build_variant("random-expansion", inputs)
    added = built.frame.iloc[len(base) :]
    assert len(added) == 2  # the hard expansion's 2, larger than very-hard's 1
    assert not added["id"].isin(base["id"]).any()


def test_random_control_never_draws_a_training_id(
    base: pd.DataFrame, pools: pd.DataFrame, unlabeled: pd.DataFrame, expansion: pd.DataFrame
) -> None:
    # Ask for every unlabeled row that is not a training id: t6 must be the one left out.
    inputs = prepare_inputs(
        base, pools, expansion=expansion, unlabeled=unlabeled, annotator=annotator(), random_size=5
    )
    random_ids = inputs.candidates.loc[inputs.candidates["seed_pool"] == "random", "id"]
    assert sorted(random_ids) == ["u1", "u2", "u3", "u4", "u5"]
    with pytest.raises(ValueError, match=r"in \[0, 5\]"):
        prepare_inputs(
            base,
            pools,
            expansion=expansion,
            unlabeled=unlabeled,
            annotator=annotator(),
            random_size=6,
        )


def test_prepare_inputs_rejects_candidates_that_are_training_ids(
    base: pd.DataFrame, pools: pd.DataFrame, unlabeled: pd.DataFrame
) -> None:
    bad = pd.DataFrame({"id": ["u1", "t6"], "seed_pool": ["hard", "hard"]})
    with pytest.raises(DataValidationError, match="t6 are already training ids"):
        prepare_inputs(
            base,
            pools,
            expansion=bad,
            unlabeled=unlabeled,
            annotator=annotator(),
            with_random=False,
        )


def test_unknown_variants_are_rejected_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="relabel-fix"):
        get_variant("relabel-fixx")
    with pytest.raises(ValueError, match="include 'baseline'"):
        AblationConfig(variants=["relabel-fix"])
    with pytest.raises(ValueError, match="each variant once"):
        AblationConfig(variants=["baseline", "baseline"])
    assert AblationConfig().variants == list(VARIANTS)
    assert AblationConfig(seeds=3, train=TrainConfig(seed=5)).seed_values() == [5, 6, 7]


# ---------------------------------------------------------------------------------------------
# Summary statistics, checked against a slow, obviously-correct twin


def runs_frame(accuracies: dict[str, list[float]], shift: float = 0.01) -> pd.DataFrame:
    rows = []
    for name, values in accuracies.items():
        for seed, value in enumerate(values):
            rows.append(
                {"variant": name, "seed": seed, "accuracy": value, "macro_f1": value - shift}
            )
    return pd.DataFrame(rows)


def twin(values: list[float], base: list[float]) -> tuple[float, float, float, float]:
    """mean, sample std, delta vs base, standard error of the delta: written out by hand."""
    n, m = len(values), len(base)
    mean = sum(values) / n
    base_mean = sum(base) / m
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    base_var = sum((v - base_mean) ** 2 for v in base) / (m - 1)
    return mean, math.sqrt(var), mean - base_mean, math.sqrt(var / n + base_var / m)


def test_expansion_variants_need_an_unlabeled_pool() -> None:
    config = AblationConfig(variants=["baseline", "relabel-fix", "very-hard-expansion"])
    config.check_splits(["train", "eval", "unlabeled"])
    with pytest.raises(DataValidationError, match=r"\['very-hard-expansion'\].*unlabeled_path"):
        config.check_splits(["train", "eval"])
    AblationConfig(variants=["baseline", "relabel-fix"]).check_splits(["train", "eval"])


def test_summary_math_matches_the_hand_written_twin() -> None:
    rng = np.random.default_rng(0)
    accuracies = {
        name: list(0.8 + 0.02 * rng.standard_normal(3)) for name in ("baseline", *VARIANTS)
    }
    accuracies["baseline"] = list(0.8 + 0.02 * rng.standard_normal(4))  # unequal run counts
    changes = {"hard-expansion": {"added": 500}, "relabel-fix": {"fixed": 30}}
    summary = summarise(runs_frame(accuracies), changes=changes).set_index("variant")
    assert list(summary.reset_index().columns) == list(SUMMARY_COLUMNS)
    assert list(summary.index) == list(VARIANTS)
    for name, values in accuracies.items():
        mean, std, delta, se = twin(values, accuracies["baseline"])
        row = summary.loc[name]
        assert row["accuracy_mean"] == pytest.approx(mean)
        assert row["accuracy_std"] == pytest.approx(std)
        assert row["macro_f1_mean"] == pytest.approx(mean - 0.01)
        assert row["delta_accuracy"] == pytest.approx(delta, abs=1e-12)
        if name != "baseline":
            assert row["delta_accuracy_se"] == pytest.approx(se)
    hard = summary.loc["hard-expansion"]
    assert hard["gain_per_1k_added"] == pytest.approx(1000 * hard["delta_accuracy"] / 500)
    assert hard["gain_per_1k_added_se"] == pytest.approx(1000 * hard["delta_accuracy_se"] / 500)
    assert summary.loc["relabel-fix", "fixed"] == 30
    gains = summary["gain_per_1k_added"]
    assert math.isnan(gains["relabel-fix"])  # not an expansion
    assert math.isnan(gains["very-hard-expansion"])  # nothing added


def test_one_run_per_variant_has_no_std_and_no_verdict() -> None:
    summary = summarise(runs_frame({"baseline": [0.8], "relabel-remove": [0.9]}))
    assert summary["accuracy_std"].isna().all()
    (first, *rest) = answer_questions(summary)
    assert first["verdict"].startswith("undetermined")
    assert all(a["verdict"] == "not run" for a in rest)


def test_summarise_needs_a_baseline() -> None:
    with pytest.raises(DataValidationError, match="baseline"):
        summarise(runs_frame({"relabel-fix": [0.8, 0.81]}))


def test_answers_say_yes_within_noise_or_hurts_with_the_numbers() -> None:
    accuracies = {
        "baseline": [0.800, 0.802, 0.804],
        "relabel-remove": [0.797, 0.803, 0.809],  # +0.1 pp, s.e. ~0.4 pp: noise
        "relabel-fix": [0.830, 0.832, 0.834],  # +3 pp over remove, s.e. ~0.4 pp
        "hard-expansion": [0.780, 0.782, 0.784],  # -2 pp: hurts
        "very-hard-expansion": [0.810, 0.812, 0.814],  # +1 pp with 1,000 added
        "random-expansion": [0.800, 0.802, 0.804],
    }
    changes = {
        "relabel-remove": {"removed": 40},
        "relabel-fix": {"fixed": 40},
        "hard-expansion": {"added": 1000},
        "very-hard-expansion": {"added": 1000},
        "random-expansion": {"added": 1000},
    }
    answers = answer_questions(summarise(runs_frame(accuracies), changes=changes))
    assert [a["question"] for a in answers] == list(QUESTIONS)
    remove, fix, expand, per_sample = answers
    assert remove["verdict"] == "no: within noise"
    assert "+0.10 pp" in remove["answer"] and "removing 40" in remove["answer"]
    assert fix["verdict"] == "yes" and "+2.90 pp" in fix["answer"]
    assert expand["verdict"] == "yes"  # the very-hard arm is beyond noise
    assert "Random control (1000 samples)" in expand["answer"]
    assert per_sample["verdict"] == "yes"
    assert "+1.000 pp vs hard -2.000 pp" in per_sample["answer"]
    assert "differ in size" not in per_sample["answer"]

    hurt = answer_questions(
        summarise(runs_frame({**accuracies, "relabel-remove": [0.70, 0.71, 0.72]}))
    )
    assert hurt[0]["verdict"] == "no, it hurts"


def test_per_sample_comparison_accounts_for_the_shared_baseline() -> None:
    accuracies = {
        "baseline": [0.80, 0.81, 0.82],
        "hard-expansion": [0.82, 0.82, 0.82],
        "very-hard-expansion": [0.81, 0.81, 0.81],
    }
    changes = {"hard-expansion": {"added": 2000}, "very-hard-expansion": {"added": 500}}
    summary = summarise(runs_frame(accuracies), changes=changes)
    (answer,) = [a for a in answer_questions(summary) if a["question"] == QUESTIONS[3]]
    # gains: hard 0.01/2000, very-hard 0.00/500 per sample; only the baseline varies, so the
    # s.e. is std_b / sqrt(3) * |1/500 - 1/2000| * 1000 = 0.01/sqrt(3) * 1.5.
    assert "s.e. 0.87 pp" in answer["answer"]
    assert "differ in size (500 vs 2000 added)" in answer["answer"]


# ---------------------------------------------------------------------------------------------
# Rendering


def test_markdown_and_chart(tmp_path: Path) -> None:
    accuracies = {"baseline": [0.80, 0.81], "hard-expansion": [0.82, 0.83]}
    summary = summarise(runs_frame(accuracies), changes={"hard-expansion": {"added": 100}})
    table = summary_table(summary)
    assert "| + hard expansion | 2 |" in table
    assert "+2.00 pp ± 0.71 pp" in table  # delta and its standard error
    assert "+20.000 pp ± 7.07 pp" in table  # per 1k added
    report: dict[str, Any] = {
        "ablation_id": "a1",
        "dataset": "demo",
        "version": 1,
        "train_rows": 10,
        "eval_rows": 5,
        "seeds": [0, 1],
        "annotator": "simulated",
        "sigmas": 2.0,
        "pools": {"hard": 3},
        "summary": report_records(summary),
        "answers": answer_questions(summary),
    }
    markdown = render_markdown(report, image="ablation.png")
    assert table in markdown
    assert "4. **Does very-hard expansion help more" in markdown
    assert "![ablation](ablation.png)" in markdown
    assert all(
        v is None or isinstance(v, str | int | float) for r in report["summary"] for v in r.values()
    )
    path = plot_ablation(summary, tmp_path / "chart" / "ablation.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Training runs: a copy of the initial model gives the serial run, also beside another thread


def tiny_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    words = np.array(["甲", "乙", "丙", "丁", "戊", "己", "庚", "辛"])
    labels = rng.integers(0, 3, 60)
    texts = ["".join(rng.choice(words, 4)) + words[label] * 2 for label in labels]
    frame = pd.DataFrame(
        {"id": [f"t{i}" for i in range(60)], "text": texts, "label": labels.astype(str)}
    )
    return frame.iloc[:45].reset_index(drop=True), frame.iloc[45:].reset_index(drop=True)


SMALL = TrainConfig(epochs=2, dim=8, buckets=2**10, batch_size=8)


def test_runs_from_initial_models_equal_serial_runs_even_in_parallel() -> None:
    train, evaluation = tiny_frames()
    inits = initial_models(SMALL, num_classes=3, seeds=[0, 1])
    serial = {}
    for seed in (0, 1):
        result = train_classifier(
            train["text"].tolist(),
            train["label"].astype(int).to_numpy(),
            num_classes=3,
            config=SMALL.model_copy(update={"seed": seed}),
            eval_texts=evaluation["text"].tolist(),
            eval_labels=evaluation["label"].astype(int).to_numpy(),
            progress=lambda _s: None,
        )
        assert result.eval is not None
        serial[seed] = result.eval.accuracy
    results: dict[int, dict[str, Any]] = {}

    def run(seed: int) -> None:
        results[seed] = train_and_evaluate(
            train, evaluation, label_names=LABELS, config=SMALL, seed=seed, init=inits[seed]
        )

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (0, 1, 0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed in (0, 1):
        assert results[seed]["accuracy"] == serial[seed]
        assert results[seed]["rows"] == len(train)
    # the initial models were copied, never trained in place
    again = initial_models(SMALL, num_classes=3, seeds=[0])[0]
    for a, b in zip(again.parameters(), inits[0].parameters(), strict=True):
        assert bool((a == b).all())


def test_train_and_evaluate_names_unknown_labels() -> None:
    train, evaluation = tiny_frames()
    train.loc[3, "label"] = "7"
    with pytest.raises(DataValidationError, match="t3 hold 7"):
        train_and_evaluate(train, evaluation, label_names=LABELS, config=SMALL, seed=0)
