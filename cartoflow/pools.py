"""Pools of training samples worth a human look, picked from their per-sample metrics.

Three pools, after the reference report (REFERENCE.md), in priority order:

``relabel``
    Probably mislabeled: low confidence, low variability and never learnt (Swayamdipta et
    al. 2020 call this corner "hard-to-learn"; at low variability the model consistently
    prefers another class). Optionally the calibrated AUM cut-off of Pleiss et al. 2020
    replaces these thresholds, and pattern rules (a regex on the text gives the label) catch
    label families that annotators disagree on.
``hard``
    Middle confidence and middle variability: the model is unsure, and unsure of that.
``very_hard``
    Low correctness with ``correctness - forgetfulness`` low: learnt late or forgotten
    again (Toneva et al. 2019), excluding everything already in relabel or hard.

Selection, for each enabled pool in priority order:

1. candidates = the pool's rule, minus ``exclude``d samples, minus samples (and, with
   groups, whole groups) claimed by a higher-priority pool's candidates. Claims are made by
   candidates, before budgets, so a pool never depends on another pool's budget: a sample
   that qualifies for relabel is never a hard seed just because the relabel budget ran out.
2. candidates are ranked most extreme first (each rule says how; ties broken by a seeded
   random key, so the result is deterministic for a given ``seed``);
3. with groups, at most ``max_per_group`` candidates per group are kept (the most extreme);
4. the budget is split across labels in proportion to their candidate counts
   (largest-remainder rounding) and each label keeps its most extreme candidates.

Every row names the rule that picked it, with its thresholds as applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cartoflow.errors import DataValidationError, describe_items, describe_rows

__all__ = [
    "POOLS",
    "HardRule",
    "PatternRule",
    "PoolConfig",
    "PoolRule",
    "RelabelRule",
    "VeryHardRule",
    "get_pool_rule",
    "pool_summary",
    "select_pools",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

REQUIRED_COLUMNS: tuple[str, ...] = (
    "sample",
    "id",
    "label",
    "confidence",
    "variability",
    "correctness",
    "forgetfulness",
    "never_learnt",
    "aum",
    "suggested_label",
)
"""Columns of the metrics frame (:func:`cartoflow.metrics.compute_metrics`) pools read."""

_CARRIED = ("confidence", "variability", "correctness", "forgetfulness", "aum")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


class PatternRule(BaseModel):
    """A regex on the text that decides the label of every title it matches.

    Samples whose text matches and whose label differs from ``label`` go to the relabel
    pool with ``suggested_label = label`` and ``rule = "pattern:<name>"``. Samples that match
    and already carry ``label`` count as settled: the metric relabel rule skips them (the
    reference report re-reviewed only "the rest" after applying its rule), though they may
    still be hard or very-hard seeds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Short name, shown as rule 'pattern:<name>'.")
    pattern: str = Field(min_length=1, description="Python regular expression, searched in text.")
    label: str | int = Field(
        description="Label the matching samples should carry: a class name (needs the "
        "metrics' label_name column) or a class index."
    )
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"Expected a valid regular expression, but {pattern!r} fails: {error}"
            ) from None
        return pattern

    def compiled(self) -> re.Pattern[str]:
        """The compiled regex."""
        return re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)

    @classmethod
    def reference_evaluation_titles(cls) -> PatternRule:
        """The reference report's rule: "how do you evaluate / view ..." titles are class "1".

        The report found 1,627 such titles labelled inconsistently (1: 1,275, 0: 340,
        2: 12) and set them all to class 1. It is a property of that data set, not of
        titles in general, so it is shipped as a preset rather than switched on by default.
        """
        return cls(
            name="evaluation_titles",
            pattern="如何评价|如何看待|怎么看待|怎么评价",
            label="1",
        )


class RelabelRule(BaseModel):
    """Thresholds of the relabel pool (REFERENCE.md defaults; strict inequalities)."""

    model_config = ConfigDict(extra="forbid")

    max_confidence: float = Field(
        default=0.3, ge=0.0, le=1.0, description="confidence < this (a quantile in quantile mode)."
    )
    max_variability: float = Field(
        default=0.15,
        ge=0.0,
        le=1.0,
        description="variability < this (a quantile in quantile mode).",
    )
    require_never_learnt: bool = Field(
        default=True, description="Also require that the sample was never predicted correctly."
    )
    budget: int | None = Field(default=None, ge=0, description="Most rows in the pool; None = all.")


class HardRule(BaseModel):
    """Thresholds of the hard pool (REFERENCE.md defaults; strict inequalities)."""

    model_config = ConfigDict(extra="forbid")

    min_confidence: float = Field(default=0.35, ge=0.0, le=1.0)
    max_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    min_variability: float = Field(default=0.05, ge=0.0, le=1.0)
    max_variability: float = Field(default=0.18, ge=0.0, le=1.0)
    budget: int | None = Field(default=None, ge=0, description="Most rows in the pool; None = all.")

    @model_validator(mode="after")
    def _ordered(self) -> HardRule:
        for name in ("confidence", "variability"):
            low, high = getattr(self, f"min_{name}"), getattr(self, f"max_{name}")
            if low >= high:
                raise ValueError(f"Expected min_{name} < max_{name}, but got {low:g} >= {high:g}.")
        return self


class VeryHardRule(BaseModel):
    """Thresholds of the very-hard pool, as counts at ``reference_epochs`` epochs.

    The report used ``correctness < 3`` and ``correctness - forgetfulness < 2`` with about
    10 epochs. Counts scale linearly with the number of epochs E: a threshold t becomes
    ``t * E / reference_epochs``, compared as a real number (for integer counts, ``c < x``
    equals ``c < ceil(x)``). So ``< 3`` at 10 epochs means "correct in fewer than 30% of the
    epochs" at any E: ``< 1.5`` (0 or 1) at 5 epochs, ``< 6`` at 20.

    This is the intended condition ``(correctness < 3) & ((correctness - forgetfulness) <
    2)``; the report's code wrote ``correctness < 3 & (...)``, which Python parses as
    ``correctness < (3 & (...))`` and keeps only never-correct samples.
    """

    model_config = ConfigDict(extra="forbid")

    max_correctness: float = Field(
        default=3.0, ge=0.0, description="correctness < this, at reference_epochs."
    )
    max_correct_minus_forgotten: float = Field(
        default=2.0, description="correctness - forgetfulness < this, at reference_epochs."
    )
    reference_epochs: int = Field(default=10, ge=1, description="Epochs the counts refer to.")
    budget: int | None = Field(default=None, ge=0, description="Most rows in the pool; None = all.")

    def scaled(self, num_epochs: int) -> tuple[float, float]:
        """The two count thresholds at ``num_epochs`` epochs."""
        factor = num_epochs / self.reference_epochs
        return self.max_correctness * factor, self.max_correct_minus_forgotten * factor


class PoolConfig(BaseModel):
    """How pools are selected; a flat-enough pydantic model to render as a UI form.

    ``mode`` says how the confidence and variability thresholds of the relabel and hard
    rules are read: ``"absolute"`` (the values themselves; REFERENCE.md defaults) or
    ``"quantile"`` (each value is a quantile in [0, 1] of that column over all samples; see
    :meth:`quantile_preset`). The very-hard counts always scale with the epochs.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["absolute", "quantile"] = "absolute"
    pools: list[str] = Field(
        default_factory=lambda: list(POOLS),
        description="Pools to select, among relabel, hard, very_hard; priority is fixed.",
    )
    relabel: RelabelRule = Field(default_factory=RelabelRule)
    hard: HardRule = Field(default_factory=HardRule)
    very_hard: VeryHardRule = Field(default_factory=VeryHardRule)
    pattern_rules: list[PatternRule] = Field(
        default_factory=list,
        description="Regex rules on the text for the relabel pool; first match wins. "
        "PatternRule.reference_evaluation_titles() is the reference report's rule.",
    )
    use_groups: bool = Field(
        default=True, description="De-duplicate by group when groups are given."
    )
    max_per_group: int = Field(
        default=1, ge=1, description="Most samples of one group within one pool."
    )

    @field_validator("pools")
    @classmethod
    def _known_pools(cls, pools: list[str]) -> list[str]:
        for name in pools:
            get_pool_rule(name)
        if len(set(pools)) != len(pools):
            raise ValueError(f"Expected each pool once, but got {', '.join(pools)}.")
        return pools

    @field_validator("pattern_rules")
    @classmethod
    def _unique_rule_names(cls, rules: list[PatternRule]) -> list[PatternRule]:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"Expected unique pattern rule names, but got {', '.join(names)}.")
        return rules

    @classmethod
    def quantile_preset(cls) -> PoolConfig:
        """Quantile thresholds close to the report's absolute ones on a typical data set.

        With the report's 105k samples and ~82% accuracy, each of relabel and hard held about
        6% of the data. Relabel: the lowest 10% of confidence, below the median variability,
        never learnt. Hard: the 10th-20th percentile of confidence with variability between
        the 25th and 90th percentiles.
        """
        return cls(
            mode="quantile",
            relabel=RelabelRule(max_confidence=0.10, max_variability=0.5),
            hard=HardRule(
                min_confidence=0.10, max_confidence=0.20, min_variability=0.25, max_variability=0.90
            ),
        )

    def with_budget(self, budget: int | None) -> PoolConfig:
        """A copy with the same budget (at most ``budget`` samples) for every pool."""
        return self.model_copy(
            update={
                name: getattr(self, name).model_copy(update={"budget": budget})
                for name in ("relabel", "hard", "very_hard")
            }
        )

    def budgets(self) -> dict[str, int | None]:
        """Pool name -> its budget (None: no limit), as the pools gate checks them."""
        return {name: getattr(self, name).budget for name in ("relabel", "hard", "very_hard")}


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """Validated, positional (row-aligned) inputs that every rule reads."""

    metrics: pd.DataFrame
    config: PoolConfig
    num_epochs: int
    texts: pd.Series | None
    aum_cutoff: float | None
    labels: np.ndarray
    random_key: npt.NDArray[np.float64]

    def column(self, name: str) -> np.ndarray:
        return self.metrics[name].to_numpy()

    def threshold(self, name: str, value: float) -> tuple[float, str]:
        """A confidence / variability threshold as applied, and how to print it."""
        if self.config.mode == "absolute":
            return value, f"{value:g}"
        applied = float(np.quantile(self.metrics[name].to_numpy(dtype=np.float64), value))
        return applied, f"q{value:g}({applied:.4g})"


@dataclass(frozen=True)
class _Candidates:
    """Rows a rule picks: positions, rule text per row, suggestion, and ranking keys."""

    rows: IntArray
    rule: npt.NDArray[np.object_]
    suggested_label: np.ndarray
    # Ranking keys, most significant first; smaller = more extreme.
    keys: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class PoolRule:
    """One registered pool.

    Attributes:
        name: pool name (``pool`` column value).
        select: function of the validated context returning the candidates.
        description: what the pool holds, in words.
    """

    name: str
    select: Callable[[_Context], _Candidates]
    description: str


def _pattern_matches(ctx: _Context) -> tuple[IntArray, IntArray]:
    """Per row: index of the first matching pattern rule (-1 if none), and its label."""
    rules = ctx.config.pattern_rules
    size = len(ctx.metrics)
    which = np.full(size, -1, dtype=np.int64)
    target = np.full(size, -1, dtype=np.int64)
    if not rules:
        return which, target
    if ctx.texts is None:
        raise DataValidationError(
            f"Expected `texts` for the pattern rules {', '.join(r.name for r in rules)}, "
            "but got none; pass the dataset's text column to select_pools."
        )
    for position, rule in enumerate(rules):
        hit = ctx.texts.str.contains(rule.compiled(), na=False).to_numpy(dtype=bool) & (which < 0)
        which[hit] = position
        target[hit] = _label_index(ctx, rule)
    return which, target


def _label_index(ctx: _Context, rule: PatternRule) -> int:
    if isinstance(rule.label, int):
        if rule.label < 0:
            raise DataValidationError(
                f"Expected pattern rule {rule.name!r} to give a class index >= 0, "
                f"but got {rule.label}."
            )
        return rule.label
    if "label_name" not in ctx.metrics.columns:
        raise DataValidationError(
            f"Expected a `label_name` column in the metrics to resolve pattern rule "
            f"{rule.name!r}'s label {rule.label!r}, but there is none; pass label_names to "
            "compute_metrics, or give the rule a class index."
        )
    names = ctx.metrics["label_name"]
    if isinstance(names.dtype, pd.CategoricalDtype):
        # compute_metrics stores every class name as a category, in index order.
        known = [str(name) for name in names.cat.categories]
        if rule.label in known:
            return known.index(rule.label)
    else:
        hits = np.flatnonzero((names.astype("str") == rule.label).to_numpy(dtype=bool))
        if hits.size:
            return int(ctx.labels[hits[0]])
        known = sorted({str(name) for name in names.unique()})
    raise DataValidationError(
        f"Expected pattern rule {rule.name!r}'s label to be a class name, one of "
        f"{describe_items(known, limit=20)}, but got {rule.label!r}."
    )


def _relabel(ctx: _Context) -> _Candidates:
    confidence = ctx.column("confidence")
    rule_config = ctx.config.relabel
    which, target = _pattern_matches(ctx)
    matched = which >= 0
    by_pattern = matched & (ctx.labels != target)
    if ctx.aum_cutoff is not None:
        by_metrics = ctx.column("aum") < ctx.aum_cutoff
        metric_rule = f"aum: aum<{ctx.aum_cutoff:.4g} (threshold-sample cut-off)"
        score = ctx.column("aum")
    else:
        max_conf, conf_text = ctx.threshold("confidence", rule_config.max_confidence)
        max_var, var_text = ctx.threshold("variability", rule_config.max_variability)
        by_metrics = (confidence < max_conf) & (ctx.column("variability") < max_var)
        metric_rule = f"relabel: confidence<{conf_text} & variability<{var_text}"
        if rule_config.require_never_learnt:
            by_metrics &= ctx.column("never_learnt").astype(bool)
            metric_rule += " & never_learnt"
        score = confidence
    by_metrics &= ~matched
    rows = np.flatnonzero(by_pattern | by_metrics)
    names = np.array(
        [metric_rule, *(f"pattern:{rule.name}" for rule in ctx.config.pattern_rules)],
        dtype=object,
    )
    return _Candidates(
        rows=rows,
        rule=names[which[rows] + 1],
        suggested_label=np.where(
            by_pattern[rows], target[rows], ctx.column("suggested_label")[rows]
        ),
        # Pattern rows first (the rule is certain), then the least believed label.
        keys=(~by_pattern[rows], score[rows]),
    )


def _hard(ctx: _Context) -> _Candidates:
    rule_config = ctx.config.hard
    confidence, variability = ctx.column("confidence"), ctx.column("variability")
    low_c, low_c_text = ctx.threshold("confidence", rule_config.min_confidence)
    high_c, high_c_text = ctx.threshold("confidence", rule_config.max_confidence)
    low_v, low_v_text = ctx.threshold("variability", rule_config.min_variability)
    high_v, high_v_text = ctx.threshold("variability", rule_config.max_variability)
    mask = (low_c < confidence) & (confidence < high_c) & (low_v < variability)
    mask &= variability < high_v
    rows = np.flatnonzero(mask)
    text = f"hard: {low_c_text}<confidence<{high_c_text} & {low_v_text}<variability<{high_v_text}"
    return _Candidates(
        rows=rows,
        rule=np.full(rows.shape[0], text, dtype=object),
        suggested_label=ctx.column("suggested_label")[rows],
        # The lowest confidence is the hardest of the middle band.
        keys=(confidence[rows],),
    )


def _very_hard(ctx: _Context) -> _Candidates:
    rule_config = ctx.config.very_hard
    max_correct, max_kept = rule_config.scaled(ctx.num_epochs)
    correct = ctx.column("correctness").astype(np.int64)
    kept = correct - ctx.column("forgetfulness").astype(np.int64)
    # The intended condition; see VeryHardRule for the report's precedence bug.
    rows = np.flatnonzero((correct < max_correct) & (kept < max_kept))
    text = f"very_hard: correctness<{max_correct:g} & correctness-forgetfulness<{max_kept:g}"
    if ctx.num_epochs != rule_config.reference_epochs:
        text += (
            f" (scaled from <{rule_config.max_correctness:g} & "
            f"<{rule_config.max_correct_minus_forgotten:g} at {rule_config.reference_epochs} "
            f"epochs to {ctx.num_epochs})"
        )
    return _Candidates(
        rows=rows,
        rule=np.full(rows.shape[0], text, dtype=object),
        suggested_label=ctx.column("suggested_label")[rows],
        keys=(correct[rows], kept[rows], ctx.column("confidence")[rows]),
    )


POOLS: dict[str, PoolRule] = {
    rule.name: rule
    for rule in (
        PoolRule(
            "relabel",
            _relabel,
            "probably mislabeled: low confidence, low variability, never learnt "
            "(or AUM below the threshold-sample cut-off), plus pattern rules",
        ),
        PoolRule("hard", _hard, "middle confidence and middle variability"),
        PoolRule(
            "very_hard",
            _very_hard,
            "low correctness, correctness - forgetfulness low: learnt late or forgotten",
        ),
    )
}
"""Pool name -> :class:`PoolRule`, in priority order (relabel > hard > very_hard)."""


def get_pool_rule(name: str) -> PoolRule:
    """The registered pool called ``name``; ValueError listing the valid names otherwise."""
    try:
        return POOLS[name]
    except KeyError:
        raise ValueError(
            f"Expected a pool name, one of {', '.join(POOLS)}, but got {name!r}."
        ) from None


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


def _rank_within(codes: np.ndarray) -> IntArray:
    """0, 1, 2... for successive occurrences of each code, in the order given."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    run_lengths = np.diff(np.r_[starts, sorted_codes.shape[0]])
    ranks = np.empty(codes.shape[0], dtype=np.int64)
    ranks[order] = np.arange(codes.shape[0]) - np.repeat(starts, run_lengths)
    return ranks


def _stratified_quota(counts: IntArray, budget: int) -> IntArray:
    """Split ``budget`` over strata in proportion to ``counts``, by largest remainder.

    Exact integer arithmetic; remainder ties go to the larger stratum, then the earlier one.
    """
    total = int(counts.sum())
    if budget >= total:
        return counts.copy()
    scaled = counts * budget
    quota = scaled // total
    remainder = scaled % total
    extra = budget - int(quota.sum())
    winners = np.lexsort((np.arange(counts.shape[0]), -counts, -remainder))[:extra]
    quota[winners] += 1
    return quota


def _take_budget(ordered_rows: IntArray, labels: np.ndarray, budget: int | None) -> BoolArray:
    """Mask over ``ordered_rows`` (most extreme first) keeping a label-stratified budget."""
    if budget is None or budget >= ordered_rows.shape[0]:
        return np.ones(ordered_rows.shape[0], dtype=bool)
    strata, codes = np.unique(labels[ordered_rows], return_inverse=True)
    quota = _stratified_quota(np.bincount(codes, minlength=strata.shape[0]), budget)
    return np.asarray(_rank_within(codes) < quota[codes], dtype=bool)


def _group_codes(groups: pd.Series | None) -> IntArray | None:
    if groups is None:
        return None
    codes, _ = pd.factorize(groups, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    # A sample without a group is a group of its own.
    missing = codes < 0
    codes[missing] = codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    return codes


def _aligned(name: str, values: Any, size: int) -> pd.Series | None:
    if values is None:
        return None
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    if len(series) != size:
        raise DataValidationError(
            f"Expected `{name}` to hold one value per metrics row ({size}), but got {len(series)}."
        )
    return series.reset_index(drop=True)


def _validate_metrics(metrics: pd.DataFrame, num_epochs: int) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in metrics.columns]
    if missing:
        raise DataValidationError(
            f"Expected the metrics frame to have columns {', '.join(REQUIRED_COLUMNS)}, but "
            f"{', '.join(missing)} missing; compute it with cartoflow.metrics.compute_metrics "
            "(with labels)."
        )
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int | np.integer):
        raise ValueError(f"Expected `num_epochs` to be an int, but got {num_epochs!r}.")
    if num_epochs < 1:
        raise ValueError(f"Expected `num_epochs` to be at least 1, but got {num_epochs}.")
    for name in ("label", "suggested_label", "correctness", "forgetfulness"):
        dtype = metrics[name].dtype
        if not pd.api.types.is_integer_dtype(dtype):
            raise DataValidationError(
                f"Expected column `{name}` to hold integers (class indices or counts), but got "
                f"dtype {dtype}; class names belong in `label_name`."
            )
    correctness = metrics["correctness"].to_numpy()
    if correctness.size and int(correctness.max()) > num_epochs:
        rows = np.flatnonzero(correctness > num_epochs)
        raise DataValidationError(
            f"Expected correctness of at most num_epochs={num_epochs}, but got "
            f"{describe_items(np.unique(correctness[rows]))} in {describe_rows(rows)}; "
            "is num_epochs the number of epochs the metrics were computed from?"
        )
    for name in ("confidence", "variability", "aum"):
        values = metrics[name].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataValidationError(
                f"Expected finite values in column `{name}`, but got NaN or infinity in "
                f"{describe_rows(np.flatnonzero(bad))}."
            )


def select_pools(
    metrics: pd.DataFrame,
    *,
    config: PoolConfig | None = None,
    texts: pd.Series | Sequence[str] | None = None,
    groups: pd.Series | Sequence[Any] | None = None,
    num_epochs: int,
    seed: int = 0,
    aum_cutoff: float | None = None,
    exclude: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Pick the relabel, hard and very-hard pools from a metrics table.

    Args:
        metrics: one row per sample, from :func:`cartoflow.metrics.compute_metrics` with
            labels (needs the columns in ``REQUIRED_COLUMNS``; ``label_name`` is carried).
        config: thresholds, budgets, pattern rules; :class:`PoolConfig` defaults when None.
        texts: one text per metrics row, in row order; required by pattern rules.
        groups: one group per metrics row (e.g. question id), in row order; when given and
            ``config.use_groups``, a group lands in at most one pool and at most
            ``config.max_per_group`` times in it. Missing groups are singletons.
        num_epochs: epochs the metrics were computed from (scales the very-hard counts).
        seed: breaks ties in the ranking, so equal inputs give equal pools.
        aum_cutoff: the calibrated AUM cut-off from :func:`cartoflow.aum.aum_cutoff`. When
            given, ``aum < aum_cutoff`` replaces the confidence/variability relabel rule
            (the ``aum`` column must then come from the run that calibrated it).
        exclude: (N,) bool, samples never to select (e.g. threshold samples, or samples
            already reviewed).

    Returns:
        One row per selected sample, pools in priority order and the most extreme first
        within a pool: ``sample``, ``id``, ``label`` [+ ``label_name``], ``pool``, ``rule``,
        ``suggested_label``, ``confidence``, ``variability``, ``correctness``,
        ``forgetfulness``, ``aum`` [+ ``group``]. The index is 0..n-1.

    Raises:
        DataValidationError: missing columns, misaligned texts / groups / exclude,
            non-finite metrics, a pattern rule label that names no class.
        ValueError: bad num_epochs or aum_cutoff.
    """
    config = config or PoolConfig()
    _validate_metrics(metrics, num_epochs)
    if aum_cutoff is not None and not np.isfinite(aum_cutoff):
        raise ValueError(f"Expected a finite `aum_cutoff`, but got {aum_cutoff!r}.")
    metrics = metrics.reset_index(drop=True)
    size = len(metrics)
    text_series = _aligned("texts", texts, size)
    group_series = _aligned("groups", groups, size)
    if group_series is None and "group" in metrics.columns:
        group_series = metrics["group"]
    group_codes = _group_codes(group_series) if config.use_groups else None
    excluded = np.zeros(size, dtype=bool)
    if exclude is not None:
        mask = np.asarray(exclude)
        if mask.shape != (size,) or mask.dtype != np.bool_:
            raise DataValidationError(
                f"Expected `exclude` to be a bool array of shape ({size},), but got "
                f"{mask.dtype} of shape {mask.shape}."
            )
        excluded |= mask
    ctx = _Context(
        metrics=metrics,
        config=config,
        num_epochs=int(num_epochs),
        texts=None if text_series is None else text_series.astype("str"),
        aum_cutoff=None if aum_cutoff is None else float(aum_cutoff),
        labels=metrics["label"].to_numpy(),
        random_key=np.random.default_rng(seed).random(size),
    )
    claimed_groups = (
        np.zeros(int(group_codes.max(initial=-1)) + 1, dtype=bool)
        if group_codes is not None
        else None
    )
    parts: list[pd.DataFrame] = []
    for name, rule in POOLS.items():
        if name not in config.pools:
            continue
        found = rule.select(ctx)
        eligible = ~excluded[found.rows]
        if group_codes is not None and claimed_groups is not None:
            eligible &= ~claimed_groups[group_codes[found.rows]]
        found = _subset(found, eligible)
        excluded[found.rows] = True
        if group_codes is not None and claimed_groups is not None:
            claimed_groups[group_codes[found.rows]] = True
        order = np.lexsort((ctx.random_key[found.rows], *reversed(found.keys)))
        found = _subset(found, order)
        if group_codes is not None:
            found = _subset(found, _rank_within(group_codes[found.rows]) < config.max_per_group)
        budget = getattr(config, name).budget
        found = _subset(found, _take_budget(found.rows, ctx.labels, budget))
        parts.append(_pool_frame(ctx, name, found, group_series))
    if not parts:
        parts.append(_pool_frame(ctx, "relabel", _empty(), group_series))
    return pd.concat(parts, ignore_index=True)


def _subset(found: _Candidates, selector: np.ndarray) -> _Candidates:
    return _Candidates(
        rows=found.rows[selector],
        rule=found.rule[selector],
        suggested_label=found.suggested_label[selector],
        keys=tuple(key[selector] for key in found.keys),
    )


def _empty() -> _Candidates:
    return _Candidates(
        rows=np.zeros(0, dtype=np.int64),
        rule=np.zeros(0, dtype=object),
        suggested_label=np.zeros(0, dtype=np.int64),
        keys=(),
    )


def _pool_frame(
    ctx: _Context, name: str, found: _Candidates, groups: pd.Series | None
) -> pd.DataFrame:
    rows = found.rows
    metrics = ctx.metrics
    columns: dict[str, Any] = {
        "sample": metrics["sample"].to_numpy()[rows].astype(np.int64),
        "id": metrics["id"].take(rows).astype("str").to_numpy(),
        "label": ctx.labels[rows],
    }
    if "label_name" in metrics.columns:
        columns["label_name"] = metrics["label_name"].take(rows).to_numpy()
    columns["pool"] = np.full(rows.shape[0], name, dtype=object)
    columns["rule"] = found.rule
    columns["suggested_label"] = found.suggested_label.astype(np.int64)
    for column in _CARRIED:
        columns[column] = metrics[column].to_numpy()[rows]
    if groups is not None:
        columns["group"] = groups.take(rows).to_numpy()
    frame = pd.DataFrame(columns)
    for column in ("id", "pool", "rule"):
        frame[column] = frame[column].astype("str")
    return frame


def pool_summary(pools: pd.DataFrame) -> pd.DataFrame:
    """Counts per pool and label, with a ``total`` column; pools in priority order.

    Args:
        pools: the frame from :func:`select_pools`.

    Returns:
        Index ``pool`` (every registered pool, empty ones as zeros), one column per label
        (``label_name`` when present, else ``label``), and ``total``.
    """
    missing = [name for name in ("pool", "label") if name not in pools.columns]
    if missing:
        raise DataValidationError(
            f"Expected a pools frame with columns pool and label, but {', '.join(missing)} "
            "missing; build it with select_pools."
        )
    label_column = "label_name" if "label_name" in pools.columns else "label"
    table = pd.crosstab(pools["pool"].astype("str"), pools[label_column].astype("str"))
    extra = [name for name in table.index if name not in POOLS]
    table = table.reindex([*POOLS, *extra], fill_value=0)
    table = table[sorted(table.columns, key=_natural_key)]
    table["total"] = table.sum(axis=1)
    table.index.name = "pool"
    table.columns.name = label_column
    return table.astype(np.int64)


def _natural_key(value: Any) -> tuple[int, Any]:
    text = str(value)
    return (0, int(text)) if text.lstrip("-").isdigit() else (1, text)
