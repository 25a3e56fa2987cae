"""Pools on hand-built metric frames: each rule, priority, groups, budgets, modes, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartoflow.errors import DataValidationError
from cartoflow.pools import (
    POOLS,
    HardRule,
    PatternRule,
    PoolConfig,
    RelabelRule,
    VeryHardRule,
    _stratified_quota,
    get_pool_rule,
    pool_summary,
    select_pools,
)

# A sample no rule picks: learnt early, kept, confident.
BORING: dict[str, Any] = {
    "label": 0,
    "confidence": 0.95,
    "variability": 0.02,
    "correctness": 10,
    "forgetfulness": 0,
    "never_learnt": False,
    "aum": 3.0,
    "suggested_label": None,
}

# Typical members of each pool, at 10 epochs.
RELABEL = {"confidence": 0.1, "variability": 0.05, "correctness": 0, "never_learnt": True,
           "aum": -2.0, "suggested_label": 2}  # fmt: skip
HARD = {"confidence": 0.4, "variability": 0.1, "correctness": 5, "aum": 0.1}
VERY_HARD = {"confidence": 0.6, "variability": 0.3, "correctness": 2, "forgetfulness": 1}


def frame(*rows: dict[str, Any]) -> pd.DataFrame:
    records = []
    for index, row in enumerate(rows):
        record = {**BORING, **row}
        if record["suggested_label"] is None:
            record["suggested_label"] = record["label"]
        records.append({"sample": index, "id": f"s{index}", **record})
    return pd.DataFrame(records)


def ids(pools: pd.DataFrame, pool: str | None = None) -> list[str]:
    chosen = pools if pool is None else pools[pools["pool"] == pool]
    return chosen["id"].tolist()


# --------------------------------------------------------------------------------------------
# Each rule
# --------------------------------------------------------------------------------------------


def test_relabel_rule_uses_strict_reference_thresholds() -> None:
    metrics = frame(
        RELABEL,
        {**RELABEL, "confidence": 0.3},  # not < 0.3
        {**RELABEL, "variability": 0.15},  # not < 0.15
        {**RELABEL, "never_learnt": False, "correctness": 5},  # learnt once
        BORING,
    )
    pools = select_pools(metrics, num_epochs=10)
    assert ids(pools, "relabel") == ["s0"]
    row = pools.iloc[0]
    assert row["rule"] == "relabel: confidence<0.3 & variability<0.15 & never_learnt"
    assert row["suggested_label"] == 2


def test_relabel_without_never_learnt_requirement() -> None:
    metrics = frame({**RELABEL, "never_learnt": False, "correctness": 5})
    config = PoolConfig(relabel=RelabelRule(require_never_learnt=False))
    pools = select_pools(metrics, config=config, num_epochs=10)
    assert ids(pools, "relabel") == ["s0"]
    assert "never_learnt" not in pools["rule"].iloc[0]


def test_hard_rule_is_an_open_band() -> None:
    metrics = frame(
        HARD,
        {**HARD, "confidence": 0.35},
        {**HARD, "confidence": 0.5},
        {**HARD, "variability": 0.05},
        {**HARD, "variability": 0.18},
        {**HARD, "confidence": 0.49, "variability": 0.17},
    )
    pools = select_pools(metrics, num_epochs=10)
    assert sorted(ids(pools, "hard")) == ["s0", "s5"]
    assert set(pools["rule"]) == {"hard: 0.35<confidence<0.5 & 0.05<variability<0.18"}


def test_very_hard_rule_at_reference_epochs() -> None:
    metrics = frame(
        VERY_HARD,  # 2 < 3 and 2 - 1 < 2
        {**VERY_HARD, "forgetfulness": 0},  # 2 - 0 is not < 2
        {**VERY_HARD, "correctness": 3, "forgetfulness": 2},  # 3 is not < 3
        {**VERY_HARD, "correctness": 0, "forgetfulness": 0},  # never learnt
    )
    pools = select_pools(metrics, num_epochs=10)
    assert ids(pools, "very_hard") == ["s3", "s0"]  # fewest correct epochs first
    assert set(pools["rule"]) == {"very_hard: correctness<3 & correctness-forgetfulness<2"}


def test_very_hard_is_the_intended_condition_not_the_reference_precedence_bug() -> None:
    metrics = frame(
        {**VERY_HARD, "correctness": 0, "forgetfulness": 0},
        {**VERY_HARD, "correctness": 1, "forgetfulness": 0},
        {**VERY_HARD, "correctness": 2, "forgetfulness": 1},
        {**VERY_HARD, "correctness": 2, "forgetfulness": 0},
    )
    c, f = metrics["correctness"], metrics["forgetfulness"]
    # The reference wrote this; Python reads it as c < (3 & (c - f < 2)).
    buggy = c < 3 & (c - f < 2)
    intended = (c < 3) & ((c - f) < 2)
    assert buggy.tolist() == [True, False, False, False]
    assert intended.tolist() == [True, True, True, False]
    pools = select_pools(metrics, num_epochs=10)
    assert sorted(ids(pools, "very_hard")) == sorted(metrics.loc[intended, "id"])


@pytest.mark.parametrize(
    ("epochs", "correctness", "forgetfulness", "picked", "text"),
    [
        (5, 1, 1, True, "correctness<1.5 & correctness-forgetfulness<1 (scaled"),
        (5, 1, 0, False, None),
        (5, 2, 1, False, None),
        (20, 5, 2, True, "correctness<6 & correctness-forgetfulness<4 (scaled"),
        (20, 6, 3, False, None),
        (1, 0, 0, True, "correctness<0.3 & correctness-forgetfulness<0.2"),
        (1, 1, 0, False, None),
    ],
)
def test_very_hard_counts_scale_with_epochs(
    epochs: int, correctness: int, forgetfulness: int, picked: bool, text: str | None
) -> None:
    metrics = frame(
        {**VERY_HARD, "correctness": correctness, "forgetfulness": forgetfulness},
    )
    pools = select_pools(metrics, num_epochs=epochs)
    assert (len(pools) == 1) == picked
    if text is not None:
        assert text in pools["rule"].iloc[0]


def test_very_hard_rule_reference_epochs_is_configurable() -> None:
    rule = VeryHardRule(reference_epochs=5)
    assert rule.scaled(10) == (6.0, 4.0)


# --------------------------------------------------------------------------------------------
# Priority and de-duplication
# --------------------------------------------------------------------------------------------


def test_priority_relabel_then_hard_then_very_hard() -> None:
    metrics = frame(
        {**RELABEL},  # also very hard (0 correct)
        {**HARD, "correctness": 1},  # also very hard
        VERY_HARD,
    )
    pools = select_pools(metrics, num_epochs=10)
    assert pools[["id", "pool"]].values.tolist() == [
        ["s0", "relabel"],
        ["s1", "hard"],
        ["s2", "very_hard"],
    ]
    assert pools["sample"].is_unique


def test_a_disabled_pool_claims_nothing() -> None:
    metrics = frame({**HARD, "correctness": 1})
    pools = select_pools(metrics, config=PoolConfig(pools=["very_hard"]), num_epochs=10)
    assert ids(pools, "very_hard") == ["s0"]


def test_a_group_lands_in_one_pool_only() -> None:
    metrics = frame(RELABEL, VERY_HARD, HARD, HARD)
    groups = pd.Series(["g1", "g1", "g2", "g3"], index=[10, 11, 12, 13])
    pools = select_pools(metrics, groups=groups, num_epochs=10)
    assert sorted(ids(pools)) == ["s0", "s2", "s3"]  # s1 shares g1 with a relabel candidate
    assert sorted(pools["group"]) == ["g1", "g2", "g3"]


def test_within_a_pool_the_most_extreme_sample_of_a_group_is_kept() -> None:
    metrics = frame(
        {**HARD, "confidence": 0.45},
        {**HARD, "confidence": 0.38},
        {**HARD, "confidence": 0.40},
        HARD,
        HARD,
    )
    groups = ["g", "g", "g", None, None]
    pools = select_pools(metrics, groups=groups, num_epochs=10)
    assert ids(pools)[0] == "s1"
    assert sorted(ids(pools)) == ["s1", "s3", "s4"]  # missing groups are singletons
    two = select_pools(metrics, groups=groups, config=PoolConfig(max_per_group=2), num_epochs=10)
    assert ids(two)[0] == "s1" and sorted(ids(two)) == ["s1", "s2", "s3", "s4"]
    off = select_pools(metrics, groups=groups, config=PoolConfig(use_groups=False), num_epochs=10)
    assert len(off) == 5


def test_group_column_of_the_metrics_is_used_when_groups_are_not_passed() -> None:
    metrics = frame(HARD, {**HARD, "confidence": 0.37}).assign(group=["q", "q"])
    assert ids(select_pools(metrics, num_epochs=10)) == ["s1"]


def test_claims_ignore_budgets() -> None:
    metrics = frame(RELABEL, {**RELABEL, "confidence": 0.05})
    config = PoolConfig(relabel=RelabelRule(budget=1))
    pools = select_pools(metrics, config=config, num_epochs=10)
    # s0 is cut by the relabel budget but stays claimed: it is no very-hard seed.
    assert pools[["id", "pool"]].values.tolist() == [["s1", "relabel"]]


def test_exclude_keeps_samples_out_of_every_pool() -> None:
    metrics = frame(RELABEL, HARD, VERY_HARD)
    pools = select_pools(metrics, num_epochs=10, exclude=np.array([True, False, True]))
    assert ids(pools) == ["s1"]


# --------------------------------------------------------------------------------------------
# Budgets
# --------------------------------------------------------------------------------------------


def test_budget_is_stratified_by_label_with_largest_remainder() -> None:
    confidences = iter(np.linspace(0.36, 0.49, 10))
    rows = [
        {**HARD, "label": label, "confidence": float(next(confidences))}
        for label in (0, 0, 0, 0, 0, 0, 1, 1, 1, 2)
    ]
    metrics = frame(*rows)
    config = PoolConfig(hard=HardRule(budget=5))
    pools = select_pools(metrics, config=config, num_epochs=10)
    # exact shares 3.0 / 1.5 / 0.5: floors 3, 1, 0; the spare unit goes to the larger tie.
    assert pools["label"].value_counts().to_dict() == {0: 3, 1: 2}
    assert ids(pools) == ["s0", "s1", "s2", "s6", "s7"]  # most extreme first
    assert pool_summary(pools).loc["hard", "total"] == 5


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(0, 120))
def test_stratified_quota_is_proportional(counts: list[int], budget: int) -> None:
    array = np.array(counts, dtype=np.int64)
    quota = _stratified_quota(array, budget)
    assert quota.sum() == min(budget, array.sum())
    assert (quota <= array).all() and (quota >= 0).all()
    if budget < array.sum():
        exact = array * budget / array.sum()
        assert (np.abs(quota - exact) < 1).all()


def test_budget_zero_and_ties_broken_by_seed() -> None:
    metrics = frame(*[HARD] * 10)
    assert select_pools(metrics, config=PoolConfig(hard=HardRule(budget=0)), num_epochs=10).empty
    config = PoolConfig(hard=HardRule(budget=2))
    first = ids(select_pools(metrics, config=config, num_epochs=10, seed=1))
    assert first == ids(select_pools(metrics, config=config, num_epochs=10, seed=1))
    picks = {
        tuple(ids(select_pools(metrics, config=config, num_epochs=10, seed=s))) for s in range(8)
    }
    assert len(picks) > 1


# --------------------------------------------------------------------------------------------
# Quantile mode
# --------------------------------------------------------------------------------------------


def test_quantile_mode_reads_thresholds_as_quantiles() -> None:
    confidence = np.linspace(0.0, 0.99, 100)
    metrics = frame(
        *[
            {**RELABEL, "confidence": float(c), "variability": 0.01 * (i % 10)}
            for i, c in enumerate(confidence)
        ]
    )
    config = PoolConfig(
        mode="quantile",
        pools=["relabel"],
        relabel=RelabelRule(max_confidence=0.1, max_variability=0.5),
    )
    pools = select_pools(metrics, config=config, num_epochs=10)
    q_conf = np.quantile(confidence, 0.1)
    q_var = np.quantile(metrics["variability"], 0.5)
    expected = metrics[(metrics["confidence"] < q_conf) & (metrics["variability"] < q_var)]
    assert sorted(ids(pools)) == sorted(expected["id"])
    assert pools["rule"].iloc[0].startswith("relabel: confidence<q0.1(0.0")
    assert "variability<q0.5(" in pools["rule"].iloc[0]


def test_quantile_preset_is_valid() -> None:
    preset = PoolConfig.quantile_preset()
    assert preset.mode == "quantile"
    metrics = frame(RELABEL, HARD, VERY_HARD, BORING)
    assert set(select_pools(metrics, config=preset, num_epochs=10)["pool"]) <= set(POOLS)


# --------------------------------------------------------------------------------------------
# Pattern rules and AUM
# --------------------------------------------------------------------------------------------


def named(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics.assign(
        label_name=pd.Categorical.from_codes(metrics["label"], categories=["0", "1", "2"])
    )


def test_pattern_rule_sends_disagreeing_labels_to_relabel() -> None:
    metrics = named(
        frame(
            {"label": 0},  # matches, label differs -> relabel to "1"
            {"label": 1, **{k: v for k, v in RELABEL.items() if k != "suggested_label"}},
            {"label": 2},  # matches, label differs
            {"label": 0},  # no match
        )
    )
    texts = ["如何评价这部电影", "怎么看待 this", "大家怎么评价", "天气如何"]
    config = PoolConfig(pattern_rules=[PatternRule.reference_evaluation_titles()])
    pools = select_pools(metrics, config=config, texts=texts, num_epochs=10)
    # s1 matches and already holds "1": settled, even though the metric rule would pick it.
    assert sorted(ids(pools, "relabel")) == ["s0", "s2"]
    relabel = pools[pools["pool"] == "relabel"]
    assert set(relabel["rule"]) == {"pattern:evaluation_titles"}
    assert relabel["suggested_label"].tolist() == [1, 1]
    assert sorted(relabel["label_name"]) == ["0", "2"]
    # Settled by the rule is not settled as a seed: never learnt still makes it very hard.
    assert ids(pools, "very_hard") == ["s1"]


def test_pattern_rule_resolves_names_from_a_plain_string_column() -> None:
    metrics = frame({"label": 1}, {"label": 0})
    metrics["label_name"] = metrics["label"].map({0: "stale", 1: "timely"}).astype("str")
    config = PoolConfig(pattern_rules=[PatternRule(name="r", pattern="x", label="timely")])
    pools = select_pools(metrics, config=config, texts=["a", "x"], num_epochs=10)
    assert pools[["id", "suggested_label"]].values.tolist() == [["s1", 1]]
    wrong = PoolConfig(pattern_rules=[PatternRule(name="r", pattern="x", label="fresh")])
    with pytest.raises(DataValidationError, match="one of stale, timely, but got 'fresh'"):
        select_pools(metrics, config=wrong, texts=["a", "x"], num_epochs=10)


def test_pattern_rows_rank_first_and_first_matching_rule_wins() -> None:
    metrics = frame({"label": 0, "confidence": 0.5}, RELABEL, {"label": 0, "confidence": 0.9})
    rules = [
        PatternRule(name="first", pattern="^a", label=2),
        PatternRule(name="second", pattern="b", label=1, ignore_case=True),
    ]
    pools = select_pools(
        metrics,
        config=PoolConfig(pattern_rules=rules),
        texts=pd.Series(["ab", "zzz", "xB"]),
        num_epochs=10,
    )
    assert pools[["id", "rule", "suggested_label"]].values.tolist() == [
        ["s0", "pattern:first", 2],
        ["s2", "pattern:second", 1],
        ["s1", "relabel: confidence<0.3 & variability<0.15 & never_learnt", 2],
    ]


def test_pattern_rule_errors_name_the_fix() -> None:
    metrics = frame(BORING)
    by_name = PoolConfig(pattern_rules=[PatternRule(name="r", pattern="x", label="1")])
    with pytest.raises(DataValidationError, match="Expected a `label_name` column in the metrics"):
        select_pools(metrics, config=by_name, texts=["x"], num_epochs=10)
    unknown = PoolConfig(pattern_rules=[PatternRule(name="r", pattern="x", label="9")])
    with pytest.raises(DataValidationError, match=r"one of 0, 1, 2, but got '9'"):
        select_pools(named(metrics), config=unknown, texts=["x"], num_epochs=10)
    with pytest.raises(DataValidationError, match="Expected `texts` for the pattern rules r"):
        select_pools(metrics, config=by_name, num_epochs=10)
    with pytest.raises(ValueError, match="valid regular expression"):
        PatternRule(name="bad", pattern="(", label=1)
    with pytest.raises(ValueError, match="unique pattern rule names"):
        PoolConfig(pattern_rules=[PatternRule(name="r", pattern="x", label=1)] * 2)


def test_aum_cutoff_replaces_the_cartography_relabel_rule() -> None:
    metrics = frame(
        {"aum": -1.5},
        {"aum": -0.4},
        {**RELABEL, "aum": 0.5},  # cartography would pick it; AUM does not
    )
    pools = select_pools(
        metrics, num_epochs=10, aum_cutoff=-0.5, config=PoolConfig(pools=["relabel"])
    )
    assert ids(pools) == ["s0"]
    assert pools["rule"].iloc[0] == "aum: aum<-0.5 (threshold-sample cut-off)"


# --------------------------------------------------------------------------------------------
# Registry, output, summary, errors
# --------------------------------------------------------------------------------------------


def test_registry_order_and_unknown_keys() -> None:
    assert list(POOLS) == ["relabel", "hard", "very_hard"]
    assert get_pool_rule("hard").name == "hard"
    with pytest.raises(ValueError, match=r"one of relabel, hard, very_hard, but got 'easy'"):
        get_pool_rule("easy")
    with pytest.raises(ValueError, match=r"one of relabel, hard, very_hard, but got 'nope'"):
        PoolConfig(pools=["relabel", "nope"])


def test_output_columns_and_empty_result() -> None:
    expected = ["sample", "id", "label", "pool", "rule", "suggested_label", "confidence",
                "variability", "correctness", "forgetfulness", "aum"]  # fmt: skip
    full = select_pools(frame(RELABEL, HARD), num_epochs=10)
    assert list(full.columns) == expected
    assert list(full.index) == [0, 1]
    empty = select_pools(frame(BORING), num_epochs=10)
    assert empty.empty and list(empty.columns) == expected


def test_pool_summary_counts_per_pool_and_label() -> None:
    metrics = named(frame(RELABEL, {**RELABEL, "label": 1}, {**HARD, "label": 1}))
    summary = pool_summary(select_pools(metrics, num_epochs=10))
    assert summary.loc["relabel"].to_dict() == {"0": 1, "1": 1, "total": 2}
    assert summary.loc["hard"].to_dict() == {"0": 0, "1": 1, "total": 1}
    assert summary.loc["very_hard", "total"] == 0
    with pytest.raises(DataValidationError, match="pool missing"):
        pool_summary(pd.DataFrame({"label": [0]}))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"drop": "aum"}, DataValidationError, "but aum missing"),
        ({"label": "a"}, DataValidationError, "column `label` to hold integers .* got dtype str"),
        ({"num_epochs": 0}, ValueError, "at least 1, but got 0"),
        ({"num_epochs": 1.5}, ValueError, "an int, but got 1.5"),
        ({"num_epochs": 5}, DataValidationError, r"at most num_epochs=5, but got 10 in rows 0, 1"),
        (
            {"nan": "confidence"},
            DataValidationError,
            r"`confidence`, but got NaN or infinity in row 1",
        ),
        ({"texts": ["a"]}, DataValidationError, r"`texts` to hold one value per metrics row \(2\)"),
        ({"groups": ["a", "b", "c"]}, DataValidationError, r"`groups` .* \(2\), but got 3"),
        ({"aum_cutoff": float("nan")}, ValueError, "finite `aum_cutoff`"),
        ({"exclude": [1, 0]}, DataValidationError, r"bool array of shape \(2,\), but got int64"),
    ],
)
def test_select_pools_rejects_bad_input(change: dict[str, Any], error: type, message: str) -> None:
    metrics = frame(BORING, BORING)
    kwargs: dict[str, Any] = {"num_epochs": 10}
    if "drop" in change:
        metrics = metrics.drop(columns=change.pop("drop"))
    if "label" in change:
        metrics["label"] = change.pop("label")
    if "nan" in change:
        metrics.loc[1, change.pop("nan")] = np.nan
    if "exclude" in change:
        change["exclude"] = np.array(change["exclude"])
    kwargs.update(change)
    with pytest.raises(error, match=message):
        select_pools(metrics, **kwargs)


def test_config_rejects_inverted_bands_and_unknown_fields() -> None:
    with pytest.raises(ValueError, match=r"min_confidence < max_confidence, but got 0.5 >= 0.4"):
        HardRule(min_confidence=0.5, max_confidence=0.4)
    with pytest.raises(ValueError, match="Extra inputs"):
        PoolConfig(budget=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        RelabelRule(budget=-1)


def test_pools_from_a_computed_metrics_table() -> None:
    from cartoflow.metrics import metrics_from_arrays

    # 4 epochs x 3 samples: s0 never learnt at low confidence, s1 learnt, s2 learnt once and
    # forgotten (correctness 1 < 3 * 4/10, correctness - forgetfulness 0 < 2 * 4/10).
    gold = np.array([[0.1, 0.9, 0.2], [0.1, 0.9, 0.6], [0.1, 0.9, 0.2], [0.1, 0.9, 0.2]])
    probs = np.stack([gold, (1 - gold) / 2, (1 - gold) / 2], axis=2).astype(np.float32)
    correct = gold > 0.5
    metrics = metrics_from_arrays(
        gold.astype(np.float32),
        correct,
        np.where(correct, 1.0, -1.0).astype(np.float32),
        probs=probs,
        labels=np.zeros(3, dtype=np.int64),
        label_names=["a", "b", "c"],
    )
    pools = select_pools(metrics, num_epochs=4)
    assert pools[["id", "pool", "label_name"]].values.tolist() == [
        ["0", "relabel", "a"],
        ["2", "very_hard", "a"],
    ]
