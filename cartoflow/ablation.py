"""The ablation experiment of the reference report, repeatable on any dataset.

REFERENCE.md tested four hypotheses on one dataset: removing wrong labels helps; fixing them helps
more than removing; adding samples similar to the hard and very-hard seeds helps; very-hard
additions help most per added sample. This module builds the training set of every *variant* of
that experiment from one baseline analysis, trains each variant with ``k`` seeds, and summarises
the runs into a mean +- std table with deltas against the baseline and explicit, honest answers.

Variants (a registry, :data:`VARIANTS`; an unknown name raises listing the valid ones):

==========================  ==================================================================
``baseline``                the training set as it is
``relabel-remove``          relabel-pool samples whose label the annotator disputes are dropped
``relabel-fix``             ... get the annotator's label instead
``hard-expansion``          + unlabeled samples similar to the hard seeds, labelled by the annotator
``very-hard-expansion``     + unlabeled samples similar to the very-hard seeds, likewise
``random-expansion``        + uniformly random unlabeled samples (the control), likewise
==========================  ==================================================================

Every variant is built the way a round builds a dataset version: the annotated rows go through
:func:`cartoflow.versions.decide` and :func:`cartoflow.versions.apply_decisions`, so the
experiment measures exactly what the product would do.

**The random control** has one size: the larger of the two targeted expansions as realised (or
``random_size``). One control keeps the run count down (every variant costs ``k`` trainings) and
is the same size as at least one targeted arm; per-added-sample gains put the other arm on the
same scale. Gains usually shrink as more samples are added, so a smaller arm's gain per sample is
flattered a little against a larger control: the report says so next to the numbers. It draws
uniformly from the unlabeled samples that are not training ids; it may overlap a targeted arm.

**Noise.** Each variant's runs give a mean and a sample standard deviation (``ddof=1``; one run
gives none). A difference of two means gets the standard error ``sqrt(s_a^2/n_a + s_b^2/n_b)``;
it counts as real when it is larger than ``sigmas`` (default 2) standard errors, otherwise the
answer says "within noise"; every comparison quotes the ratio. Runs of two variants with the same
seed share their initial model, but the standard error ignores that pairing (conservative). With
``k=3`` seeds this is a coarse test: it guards against reading seed noise as an effect, not
against small real effects going unseen.

**Parallel runs and torch's RNG.** torch's default random generator is process-global, so two
trainings in two threads would race on it while their models are initialised. The initial
models are therefore built one seed at a time (:func:`initial_models`), before any training
starts, and each run trains a copy: a run is then bit-identical to ``train_classifier`` with the
same seed, whatever else runs beside it. Training itself draws no random numbers unless
``dropout > 0`` (dropout masks come from the global generator: parallel runs with dropout are
not reproducible). The torch thread count is per calling thread (OpenMP), so
``TrainConfig.num_threads`` applies to each worker separately. torch itself is imported only by
:func:`initial_models` and :func:`train_and_evaluate`.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field, field_validator

from cartoflow.annotate import SimulatedAnnotator
from cartoflow.config import DataSource, RoundConfig
from cartoflow.errors import DataValidationError, describe_items
from cartoflow.expansion import CANDIDATE_POOL_PREFIX, ExpansionConfig, random_expansion
from cartoflow.pools import PoolConfig
from cartoflow.report import label_change_counts
from cartoflow.train_config import TrainConfig
from cartoflow.versions import Strategy, apply_decisions, decide

__all__ = [
    "QUESTIONS",
    "SUMMARY_COLUMNS",
    "VARIANTS",
    "AblationConfig",
    "AblationInputs",
    "Variant",
    "VariantBuild",
    "answer_questions",
    "build_variant",
    "get_variant",
    "initial_models",
    "plot_ablation",
    "prepare_inputs",
    "render_markdown",
    "report_records",
    "summarise",
    "summary_table",
    "train_and_evaluate",
]

RELABEL_POOL = "relabel"
RANDOM = "random"


# --------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AblationInputs:
    """What every variant is built from.

    Attributes:
        base: the training version (dataset contract: ``id``, ``text``, ``label`` as a class
            name, optional ``group``, ``true_label`` and other columns), in its row order.
        relabel_ids: ids of the relabel pool, all in ``base``.
        candidates: expansion candidates, one row per (id, ``seed_pool``): ``id``, ``seed_pool``
            (``hard``, ``very_hard`` or ``random``), ``text`` and optionally ``group`` and
            ``true_label``; no id is in ``base``.
        answers: id -> the annotator's class name, for every relabel id and candidate id.
    """

    base: pd.DataFrame
    relabel_ids: pd.Index
    candidates: pd.DataFrame
    answers: pd.Series


@dataclass(frozen=True)
class Variant:
    """One arm of the ablation.

    Attributes:
        name: registry key, e.g. ``relabel-fix``.
        title: how tables and charts show it, e.g. ``+ hard expansion``.
        kind: ``baseline``, ``relabel`` or ``expansion``.
        seed_pool: for an expansion, the ``seed_pool`` of its candidates.
        strategy: for a relabel variant, what a disputed label becomes (``fix``/``remove``).
        description: one sentence for the report.
    """

    name: str
    title: str
    kind: Literal["baseline", "relabel", "expansion"]
    description: str
    seed_pool: str | None = None
    strategy: Strategy | None = None

    def annotated_rows(self, inputs: AblationInputs) -> pd.DataFrame:
        """The rows an annotator answered for this variant, as :func:`decide` reads them."""
        if self.kind == "relabel":
            ids = pd.Series(inputs.relabel_ids, dtype="str")
            return pd.DataFrame(
                {
                    "id": ids,
                    "pool": pd.Series([RELABEL_POOL] * len(ids), dtype="str"),
                    "new_label": ids.map(inputs.answers).astype("str"),
                }
            )
        if self.kind == "expansion":
            cand = inputs.candidates
            rows = cand[cand["seed_pool"] == self.seed_pool].reset_index(drop=True)
            out = pd.DataFrame(
                {
                    "id": rows["id"].astype("str"),
                    "pool": (CANDIDATE_POOL_PREFIX + rows["seed_pool"].astype("str")),
                    "new_label": rows["id"].map(inputs.answers).astype("str"),
                }
            )
            for column in ("text", "group", "true_label"):
                if column in rows.columns:
                    out[column] = rows[column].to_numpy()
            return out
        return pd.DataFrame(
            {name: pd.Series([], dtype="str") for name in ("id", "pool", "new_label")}
        )


#: Variant name -> :class:`Variant`, in report order.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("baseline", "baseline", "baseline", "The training set as it is."),
        Variant(
            "relabel-remove",
            "relabel: remove",
            "relabel",
            "Relabel-pool samples whose label the annotator disputes are removed.",
            strategy="remove",
        ),
        Variant(
            "relabel-fix",
            "relabel: fix",
            "relabel",
            "Relabel-pool samples whose label the annotator disputes get the annotator's label.",
            strategy="fix",
        ),
        Variant(
            "hard-expansion",
            "+ hard expansion",
            "expansion",
            "Adds unlabeled samples similar to the hard seeds, labelled by the annotator.",
            seed_pool="hard",
        ),
        Variant(
            "very-hard-expansion",
            "+ very-hard expansion",
            "expansion",
            "Adds unlabeled samples similar to the very-hard seeds, labelled by the annotator.",
            seed_pool="very_hard",
        ),
        Variant(
            "random-expansion",
            "+ random expansion",
            "expansion",
            "Adds as many uniformly random unlabeled samples as the larger targeted expansion "
            "(the control), labelled by the annotator.",
            seed_pool=RANDOM,
        ),
    )
}


def get_variant(name: str) -> Variant:
    """The registered variant ``name``.

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
    """
    variant = VARIANTS.get(name)
    if variant is None:
        raise ValueError(f"Expected a variant among {list(VARIANTS)}, but got {name!r}.")
    return variant


@dataclass(frozen=True)
class VariantBuild:
    """A variant's training set and the decisions that made it from the base.

    Attributes:
        name: the variant.
        frame: its training set (dataset contract).
        decisions: one row per annotated sample (:func:`cartoflow.versions.decide`).
        changes: ``fixed`` / ``removed`` / ``added`` / ``unchanged`` / ``skipped`` counts.
    """

    name: str
    frame: pd.DataFrame
    decisions: pd.DataFrame
    changes: dict[str, int]


def build_variant(
    name: str, inputs: AblationInputs, *, annotator: str = "simulated"
) -> VariantBuild:
    """Build one variant's training set from the base, as a round would build a new version.

    Args:
        name: a key of :data:`VARIANTS`.
        inputs: the base frame, relabel pool, candidates and answers.
        annotator: recorded in the decisions' ``annotator`` column.

    Returns:
        The :class:`VariantBuild`: rows not touched keep every value and the base's order;
        additions are appended in candidate order.

    Raises:
        ValueError: an unknown variant.
    """
    variant = get_variant(name)
    rows = variant.annotated_rows(inputs)
    decisions = decide(
        rows,
        inputs.base,
        strategies={RELABEL_POOL: variant.strategy or "fix"},
        annotator=annotator,
    )
    frame = apply_decisions(inputs.base, decisions)
    return VariantBuild(
        name=name, frame=frame, decisions=decisions, changes=label_change_counts(decisions)
    )


def _unique_ids(frame: pd.DataFrame, what: str) -> pd.Index:
    ids = pd.Index(frame["id"].astype("str"))
    if ids.duplicated().any():
        raise DataValidationError(
            f"Expected unique ids in {what}, but {describe_items(ids[ids.duplicated()].tolist())} "
            "repeat."
        )
    return ids


def prepare_inputs(
    base: pd.DataFrame,
    pools: pd.DataFrame,
    *,
    expansion: pd.DataFrame | None,
    unlabeled: pd.DataFrame | None,
    annotator: SimulatedAnnotator,
    random_size: int | None = None,
    random_seed: int = 0,
    with_random: bool = True,
) -> AblationInputs:
    """Gather the relabel pool, the expansion candidates (targeted + random) and their answers.

    Args:
        base: the training version (dataset contract).
        pools: :func:`cartoflow.pools.select_pools` output (``id``, ``pool``).
        expansion: targeted candidates (``id``, ``seed_pool``), e.g. the round's
            ``expansion.parquet``; None: no targeted expansion.
        unlabeled: the unlabeled pool (``id``, ``text`` [, ``group``, ``true_label``]); the
            candidates' texts, groups and truth come from it. None: no expansion at all.
        annotator: answers from its ``column`` of ``base`` (relabel rows) and ``unlabeled``
            (candidates), with its error rate applied over all the rows it answers together.
        random_size: size of the random control; None: the larger targeted expansion.
        random_seed: seed of the random draw.
        with_random: draw the random control at all.

    Returns:
        The :class:`AblationInputs`.

    Raises:
        DataValidationError: duplicate ids, candidates that are training ids or not in the
            unlabeled pool, a relabel id that is not a training id, or rows the annotator has no
            truth for.
    """
    base_ids = _unique_ids(base, "the training set")
    relabel_ids = pd.Index(pools.loc[pools["pool"] == RELABEL_POOL, "id"].astype("str"))
    unknown = relabel_ids[~relabel_ids.astype(object).isin(base_ids.astype(object))]
    if len(unknown):
        raise DataValidationError(
            f"Expected relabel-pool ids from the training set, but {describe_items(unknown)} "
            "are not in it. Fix: select the pools from this dataset version's metrics."
        )
    parts = []
    targeted = pd.DataFrame({"id": pd.Series([], dtype="str"), "seed_pool": []})
    if expansion is not None and len(expansion):
        targeted = pd.DataFrame(
            {"id": expansion["id"].astype("str"), "seed_pool": expansion["seed_pool"].astype("str")}
        )
        parts.append(targeted)
    if unlabeled is not None and with_random:
        size = random_size
        if size is None:
            size = int(targeted["seed_pool"].value_counts().max()) if len(targeted) else 0
        drawn = random_expansion(
            unlabeled["id"].astype("str").to_numpy(dtype=object),
            n=size,
            exclude=base_ids.to_numpy(dtype=object),
            seed=random_seed,
        )
        parts.append(pd.DataFrame({"id": drawn["id"].astype("str"), "seed_pool": RANDOM}))
    candidates = (
        pd.concat(parts, ignore_index=True) if parts else targeted.iloc[0:0].reset_index(drop=True)
    )
    if len(candidates):
        if unlabeled is None:
            raise DataValidationError(
                "Expected the unlabeled pool the expansion candidates come from, but got none."
            )
        pool_ids = _unique_ids(unlabeled, "the unlabeled pool")
        position = pool_ids.get_indexer(pd.Index(candidates["id"]))
        missing = candidates["id"][position < 0]
        if len(missing):
            raise DataValidationError(
                f"Expected every expansion candidate in the unlabeled pool, but ids "
                f"{describe_items(missing.unique())} are not in it."
            )
        in_train = candidates["id"][candidates["id"].astype(object).isin(base_ids.astype(object))]
        if len(in_train):
            raise DataValidationError(
                f"Expected expansion candidates to be new samples, but ids "
                f"{describe_items(in_train.unique())} are already training ids."
            )
        rows = unlabeled.iloc[position].reset_index(drop=True)
        for column in ("text", "group", "true_label"):
            if column in rows.columns:
                candidates[column] = rows[column].to_numpy()
    asked = pd.Index(relabel_ids.append(pd.Index(candidates["id"]))).unique()
    truth_parts = [base[["id", annotator.column]]] if annotator.column in base.columns else []
    if unlabeled is not None and annotator.column in unlabeled.columns:
        truth_parts.append(unlabeled[["id", annotator.column]])
    if len(asked) and not truth_parts:
        raise DataValidationError(
            f"The simulated annotator answers from column `{annotator.column}`, but neither the "
            "training set nor the unlabeled pool has it."
        )
    if len(asked):
        truth = pd.concat(truth_parts).astype({"id": "str"}).set_index("id")[annotator.column]
        truth = truth[~truth.index.duplicated()]  # an id in both splits: the training row
        answered = annotator.answers(pd.DataFrame({"id": pd.Series(asked, dtype="str")}), truth)
        answers = pd.Series(answered["new_label"].to_numpy(), index=answered["id"], dtype="str")
    else:
        answers = pd.Series([], dtype="str")
    return AblationInputs(
        base=base.reset_index(drop=True),
        relabel_ids=relabel_ids,
        candidates=candidates.reset_index(drop=True),
        answers=answers,
    )


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


class AblationConfig(DataSource):
    """The ablation experiment: data source, training, pools, expansion, variants, seeds.

    The data fields are :class:`cartoflow.config.DataSource`'s, as a round's (the same files, or
    the bundled demo data); the annotator is always simulated, from ``annotator_column``.
    """

    model_config = ConfigDict(extra="forbid")

    min_class_share: float = Field(0.01, ge=0, lt=1)
    quality_gates: bool = Field(
        True, description="Run the Great Expectations gates of the shared stages (load to pools)."
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    pools: PoolConfig = Field(default_factory=PoolConfig)
    expansion: ExpansionConfig = Field(default_factory=ExpansionConfig)
    variants: list[str] = Field(
        default_factory=lambda: list(VARIANTS),
        description=f"Variants to run, among {', '.join(VARIANTS)}; must include baseline.",
    )
    seeds: int = Field(
        3, ge=1, le=50, description="Training runs per variant (k): seeds train.seed, +1, ..."
    )
    random_size: int | None = Field(
        None, ge=0, description="Size of the random control; empty: the larger expansion."
    )
    annotator_column: str = Field(
        "true_label", description="Column the simulated annotator answers from."
    )
    annotator_error_rate: float = Field(0.0, ge=0, le=1, description="Share of wrong answers.")
    sigmas: float = Field(
        2.0, gt=0, description="A difference is real when larger than this many standard errors."
    )
    seed: int = Field(0, description="Seeds the demo data, pools and the random control.")

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, variants: list[str]) -> list[str]:
        for name in variants:
            get_variant(name)
        if len(set(variants)) != len(variants):
            raise ValueError(f"Expected each variant once, but got {variants}.")
        if "baseline" not in variants:
            raise ValueError(
                f"Expected the variants to include 'baseline' (every delta is against it), but "
                f"got {variants}."
            )
        return variants

    def round_config(self) -> RoundConfig:
        """The data part as a :class:`RoundConfig`, for the round's load stage."""
        return RoundConfig(
            **self.data_source(),
            train=self.train,
            pools=self.pools,
            min_class_share=self.min_class_share,
            quality_gates=self.quality_gates,
            annotator=f"simulated:{self.annotator_column}",
            annotator_error_rate=self.annotator_error_rate,
            seed=self.seed,
        )

    def seed_values(self) -> list[int]:
        """The training seeds of every variant: ``train.seed`` .. ``train.seed + seeds - 1``."""
        return [self.train.seed + i for i in range(self.seeds)]

    def needs_expansion(self) -> bool:
        """Whether any variant adds samples (and so needs candidates)."""
        return any(get_variant(name).kind == "expansion" for name in self.variants)

    def check_splits(self, splits: Sequence[str]) -> None:
        """Check the loaded data has what the variants need, before anything trains.

        Args:
            splits: the splits the data was loaded with (``train``, ``eval``, ``unlabeled``).

        Raises:
            DataValidationError: expansion variants without an unlabeled pool; names the
                variants and the fix.
        """
        if self.needs_expansion() and "unlabeled" not in splits:
            wanted = [v for v in self.variants if get_variant(v).kind == "expansion"]
            raise DataValidationError(
                f"The variants {wanted} add unlabeled samples, but the data has no unlabeled "
                "pool. Fix: set unlabeled_path (with the annotator column), or drop them."
            )


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def initial_models(
    config: TrainConfig, *, num_classes: int, seeds: Sequence[int]
) -> dict[int, Any]:
    """The untrained model of every seed, built one after another.

    ``train_classifier`` with ``config.seed = s`` builds exactly this model (same RNG state),
    so training a copy of it gives the same run; built here, before parallel runs start, no
    other thread can move torch's process-global RNG while a model is initialised.

    Returns:
        seed -> ``torch.nn.Module`` (do not train it in place: :func:`train_and_evaluate` copies).
    """
    import torch

    from cartoflow.train import make_model

    models: dict[int, Any] = {}
    for seed in seeds:
        with torch.random.fork_rng():
            torch.manual_seed(int(seed))
            models[int(seed)] = make_model(
                config.model_copy(update={"seed": int(seed)}), num_classes
            )
    return models


def _label_indices(frame: pd.DataFrame, label_names: Sequence[str], what: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(label_names)}
    codes = frame["label"].astype("str").map(index)
    bad = codes.isna().to_numpy()
    if bad.any():
        raise DataValidationError(
            f"Expected {what} labels among {list(label_names)}, but ids "
            f"{describe_items(frame['id'][bad].tolist())} hold "
            f"{describe_items(sorted(set(frame['label'][bad].astype('str'))))}."
        )
    return codes.to_numpy(dtype=np.int64)


def train_and_evaluate(
    frame: pd.DataFrame,
    eval_frame: pd.DataFrame,
    *,
    label_names: Sequence[str],
    config: TrainConfig,
    seed: int,
    init: Any | None = None,
) -> dict[str, Any]:
    """Train one run on ``frame`` (no dynamics) and score it on ``eval_frame``.

    Args:
        frame: a variant's training set (``text``, ``label`` class names).
        eval_frame: the eval set, same label names.
        label_names: class names in label-index order.
        config: training configuration; its ``seed`` is replaced by ``seed``.
        seed: the run's seed (initialisation, shuffling).
        init: the untrained model of this seed (:func:`initial_models`); it is copied, not
            trained. None: ``train_classifier`` builds it (not safe beside other threads).

    Returns:
        ``seed``, ``accuracy``, ``macro_f1``, ``per_class_f1`` (list), ``rows`` and ``seconds``.
    """
    from cartoflow.train import train_classifier

    run_config = config.model_copy(update={"seed": int(seed)})
    result = train_classifier(
        frame["text"].astype("str").tolist(),
        _label_indices(frame, label_names, "training"),
        num_classes=len(label_names),
        config=run_config,
        eval_texts=eval_frame["text"].astype("str").tolist(),
        eval_labels=_label_indices(eval_frame, label_names, "eval"),
        progress=lambda _stats: None,
        model=copy.deepcopy(init) if init is not None else None,
    )
    assert result.eval is not None
    return {
        "seed": int(seed),
        "accuracy": float(result.eval.accuracy),
        "macro_f1": float(result.eval.macro_f1),
        "per_class_f1": [float(x) for x in result.eval.per_class_f1],
        "rows": len(frame),
        "seconds": round(result.seconds, 3),
    }


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

SUMMARY_COLUMNS: tuple[str, ...] = (
    "variant",
    "title",
    "runs",
    "rows",
    "added",
    "fixed",
    "removed",
    "accuracy_mean",
    "accuracy_std",
    "macro_f1_mean",
    "macro_f1_std",
    "delta_accuracy",
    "delta_accuracy_se",
    "delta_macro_f1",
    "delta_macro_f1_se",
    "gain_per_1k_added",
    "gain_per_1k_added_se",
)
"""Columns of :func:`summarise`; deltas are variant minus baseline, gains in accuracy per 1,000
added samples (expansion variants only)."""


def summarise(
    runs: pd.DataFrame,
    *,
    changes: Mapping[str, Mapping[str, int]] | None = None,
    baseline: str = "baseline",
) -> pd.DataFrame:
    """Mean +- std per variant, deltas against the baseline with their standard errors.

    Args:
        runs: one row per training run: ``variant``, ``seed``, ``accuracy``, ``macro_f1`` and
            optionally ``rows`` (training rows).
        changes: variant -> its ``added`` / ``fixed`` / ``removed`` counts
            (:attr:`VariantBuild.changes`); missing counts are 0.
        baseline: the variant deltas are taken against.

    Returns:
        One row per variant, in :data:`VARIANTS` order, columns :data:`SUMMARY_COLUMNS`.
        Stds are sample stds (``ddof=1``, NaN for one run); the standard error of a delta is
        ``sqrt(s_v^2/n_v + s_b^2/n_b)``; ``gain_per_1k_added`` is ``1000 * delta_accuracy /
        added`` for expansion variants (NaN otherwise or when nothing was added).

    Raises:
        DataValidationError: missing columns, or no run of ``baseline``.
    """
    needed = {"variant", "seed", "accuracy", "macro_f1"}
    missing = sorted(needed - set(runs.columns))
    if missing:
        raise DataValidationError(
            f"Expected runs with columns {sorted(needed)}, but {missing} are missing."
        )
    if not (runs["variant"] == baseline).any():
        raise DataValidationError(
            f"Expected runs of the baseline variant {baseline!r} to take deltas against, but "
            f"the runs hold only {sorted(runs['variant'].unique())}."
        )
    grouped = runs.groupby("variant", sort=False)
    stats = grouped.agg(
        runs=("seed", "size"),
        accuracy_mean=("accuracy", "mean"),
        accuracy_std=("accuracy", "std"),
        macro_f1_mean=("macro_f1", "mean"),
        macro_f1_std=("macro_f1", "std"),
    )
    order = [name for name in VARIANTS if name in stats.index]
    order += [name for name in stats.index if name not in order]
    stats = stats.loc[order]
    rows = grouped["rows"].max().loc[order] if "rows" in runs.columns else None
    b = order.index(baseline)
    n = stats["runs"].to_numpy(np.float64)
    out = pd.DataFrame(
        {
            "variant": stats.index.to_numpy(dtype=object),
            "title": [VARIANTS[v].title if v in VARIANTS else v for v in stats.index],
            "runs": stats["runs"].to_numpy(np.int64),
            "rows": rows.to_numpy(np.int64) if rows is not None else np.zeros(len(stats), int),
        }
    )
    changes = changes or {}
    for column in ("added", "fixed", "removed"):
        out[column] = [int(changes.get(v, {}).get(column, 0)) for v in stats.index]
    for metric in ("accuracy", "macro_f1"):
        mean = stats[f"{metric}_mean"].to_numpy(np.float64)
        std = stats[f"{metric}_std"].to_numpy(np.float64)
        out[f"{metric}_mean"] = mean
        out[f"{metric}_std"] = std
        out[f"delta_{metric}"] = mean - mean[b]
        out[f"delta_{metric}_se"] = np.sqrt(std**2 / n + std[b] ** 2 / n[b])
    expansion = np.array([VARIANTS.get(v, VARIANTS[baseline]).kind == "expansion" for v in order])
    added = out["added"].to_numpy(np.float64)
    per = np.where(expansion & (added > 0), 1000.0 / np.where(added > 0, added, 1.0), np.nan)
    out["gain_per_1k_added"] = out["delta_accuracy"].to_numpy() * per
    out["gain_per_1k_added_se"] = out["delta_accuracy_se"].to_numpy() * per
    out.loc[out["variant"] == baseline, ["delta_accuracy_se", "delta_macro_f1_se"]] = 0.0
    return out[list(SUMMARY_COLUMNS)].reset_index(drop=True)


QUESTIONS: tuple[str, ...] = (
    "Does removing help?",
    "Does fixing help more than removing?",
    "Does expansion help?",
    "Does very-hard expansion help more than hard expansion, per added sample?",
)
"""The reference report's four questions, in its order."""


def _pp(value: float) -> str:
    """A difference of two rates in percentage points, signed."""
    return f"{100 * value:+.2f} pp"


def _acc(value: float) -> str:
    return f"{value:.4f}"


def _se(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:.2f} pp"


def _verdict(diff: float, se: float, sigmas: float, *, worse: str = "no, it hurts") -> str:
    """``yes``, ``no: within noise``, ``worse`` or ``undetermined`` for a difference and its s.e."""
    if not math.isfinite(se) or not math.isfinite(diff):
        return "undetermined (one run per variant gives no noise estimate)"
    if diff > sigmas * se and diff > 0:
        return "yes"
    if diff < -sigmas * se and diff < 0:
        return worse
    return "no: within noise"


def _row(summary: pd.DataFrame, name: str) -> pd.Series | None:
    hit = summary[summary["variant"] == name]
    return None if hit.empty else hit.iloc[0]


def _diff(a: pd.Series, b: pd.Series, metric: str = "accuracy") -> tuple[float, float]:
    """Mean of ``a`` minus mean of ``b`` and the standard error of that difference."""
    diff = float(a[f"{metric}_mean"]) - float(b[f"{metric}_mean"])
    se = math.sqrt(
        float(a[f"{metric}_std"]) ** 2 / float(a["runs"])
        + float(b[f"{metric}_std"]) ** 2 / float(b["runs"])
    )
    return diff, se


def _noise(diff: float, se: float, sigmas: float) -> str:
    """``s.e. 0.07 pp = 2.3x: beyond noise`` (or ``within noise``); ``s.e. n/a`` for one run."""
    if not (math.isfinite(se) and math.isfinite(diff)):
        return "s.e. n/a"
    ratio = abs(diff) / se if se > 0 else (math.inf if diff else 0.0)
    where = "beyond" if abs(diff) > sigmas * se else "within"
    return f"s.e. {_se(se)}, |Δ| = {ratio:.1f} s.e.: {where} noise"


def _against(row: pd.Series, other: pd.Series, sigmas: float) -> str:
    """``A 0.8300 vs B 0.8200: accuracy +1.00 pp (s.e. ..., ...), macro-F1 ... (...)``."""
    diff, se = _diff(row, other)
    f1, f1_se = _diff(row, other, "macro_f1")
    return (
        f"{row['title']} {_acc(row['accuracy_mean'])} vs {other['title']} "
        f"{_acc(other['accuracy_mean'])}: accuracy {_pp(diff)} ({_noise(diff, se, sigmas)}), "
        f"macro-F1 {_pp(f1)} ({_noise(f1, f1_se, sigmas)})"
    )


def _not_run(question: str, names: Sequence[str]) -> dict[str, str]:
    return {
        "question": question,
        "verdict": "not run",
        "answer": f"Not run: this ablation has no {' / '.join(names)} variant.",
    }


def answer_questions(
    summary: pd.DataFrame, *, sigmas: float = 2.0, baseline: str = "baseline"
) -> list[dict[str, str]]:
    """Answer :data:`QUESTIONS` from a :func:`summarise` table, with the numbers.

    Accuracy decides (the reference report's measure); macro-F1 is quoted beside it. A
    difference counts when it exceeds ``sigmas`` standard errors; otherwise the answer says
    "within noise" and gives the standard error, so a reader sees how large an effect the runs
    could have shown.

    Returns:
        Four dicts with ``question``, ``verdict`` (``yes``, ``no: within noise``, ``no, it
        hurts``, ``undetermined ...`` or ``not run``) and ``answer`` (a sentence with figures).
    """
    base = _row(summary, baseline)
    if base is None:
        raise DataValidationError(f"Expected a {baseline!r} row in the summary.")
    answers: list[dict[str, str]] = []

    remove = _row(summary, "relabel-remove")
    if remove is None:
        answers.append(_not_run(QUESTIONS[0], ["relabel-remove"]))
    else:
        diff, se = _diff(remove, base)
        verdict = _verdict(diff, se, sigmas)
        answers.append(
            {
                "question": QUESTIONS[0],
                "verdict": verdict,
                "answer": f"{verdict.capitalize()}: removing {int(remove['removed'])} disputed "
                f"relabel-pool samples: {_against(remove, base, sigmas)}.",
            }
        )

    fix = _row(summary, "relabel-fix")
    if fix is None or remove is None:
        answers.append(_not_run(QUESTIONS[1], ["relabel-fix", "relabel-remove"]))
    else:
        diff, se = _diff(fix, remove)
        verdict = _verdict(diff, se, sigmas, worse="no: removing does better")
        answers.append(
            {
                "question": QUESTIONS[1],
                "verdict": verdict,
                "answer": f"{verdict.capitalize()}: fixing {int(fix['fixed'])} labels: "
                f"{_against(fix, remove, sigmas)}. Against the baseline: "
                f"{_against(fix, base, sigmas)}.",
            }
        )

    targeted = [_row(summary, n) for n in ("hard-expansion", "very-hard-expansion")]
    arms = [r for r in targeted if r is not None]
    control = _row(summary, "random-expansion")
    if not arms:
        answers.append(_not_run(QUESTIONS[2], ["hard-expansion", "very-hard-expansion"]))
    else:
        verdicts = [_verdict(*_diff(arm, base), sigmas) for arm in arms]
        verdict = (
            "yes"
            if "yes" in verdicts
            else ("no, it hurts" if all(v == "no, it hurts" for v in verdicts) else verdicts[0])
        )
        parts = [
            f"{_against(arm, base, sigmas)}, {int(arm['added'])} samples added" for arm in arms
        ]
        text = f"{verdict.capitalize()}: " + "; ".join(parts) + "."
        if control is not None:
            text += (
                f" Random control ({int(control['added'])} samples): "
                f"{_against(control, base, sigmas)}. Targeted vs random: "
                + "; ".join(_against(arm, control, sigmas) for arm in arms)
                + "."
            )
        answers.append({"question": QUESTIONS[2], "verdict": verdict, "answer": text})

    hard, very = targeted
    if hard is None or very is None:
        answers.append(_not_run(QUESTIONS[3], ["hard-expansion", "very-hard-expansion"]))
    else:
        answers.append(_per_sample_answer(hard, very, base, sigmas))
    return answers


def _per_sample_answer(
    hard: pd.Series, very: pd.Series, base: pd.Series, sigmas: float
) -> dict[str, str]:
    a_h, a_v = float(hard["added"]), float(very["added"])
    if a_h <= 0 or a_v <= 0:
        empty = "hard" if a_h <= 0 else "very-hard"
        return {
            "question": QUESTIONS[3],
            "verdict": "undetermined",
            "answer": f"Undetermined: the {empty} expansion added no samples.",
        }
    g_h, g_v = (
        1000 * float(hard["delta_accuracy"]) / a_h,
        1000 * float(very["delta_accuracy"]) / a_v,
    )
    # Both gains share the baseline mean; its variance cancels only when the sizes are equal.
    n_h, n_v, n_b = float(hard["runs"]), float(very["runs"]), float(base["runs"])
    var = (
        float(very["accuracy_std"]) ** 2 / n_v / a_v**2
        + float(hard["accuracy_std"]) ** 2 / n_h / a_h**2
        + float(base["accuracy_std"]) ** 2 / n_b * (1 / a_v - 1 / a_h) ** 2
    )
    se = 1000 * math.sqrt(var)
    verdict = _verdict(g_v - g_h, se, sigmas, worse="no: hard expansion gives more per sample")
    size_note = (
        ""
        if a_h == a_v
        else f" The arms differ in size ({int(a_v)} vs {int(a_h)} added); gains usually shrink "
        "as more samples are added, which flatters the smaller arm per sample."
    )
    return {
        "question": QUESTIONS[3],
        "verdict": verdict,
        "answer": f"{verdict.capitalize()}: very-hard {g_v * 100:+.3f} pp vs hard "
        f"{g_h * 100:+.3f} pp accuracy per 1,000 added samples (difference "
        f"{(g_v - g_h) * 100:+.3f} pp; {_noise(g_v - g_h, se, sigmas)}).{size_note}",
    }


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _num(value: Any) -> float:
    """A table cell as a float: None (a NaN in JSON) becomes NaN."""
    return math.nan if value is None else float(value)


def _mean_std(mean: Any, std: Any) -> str:
    m, s = _num(mean), _num(std)
    return f"{m:.4f} ± {s:.4f}" if math.isfinite(s) else f"{m:.4f}"


def _delta(value: Any, se: Any, baseline: bool) -> str:
    if baseline:
        return "–"
    v, e = _num(value), _num(se)
    return f"{_pp(v)} ± {_se(e)}" if math.isfinite(e) else _pp(v)


def summary_table(
    summary: pd.DataFrame | Sequence[Mapping[str, Any]], *, baseline: str = "baseline"
) -> str:
    """The summary as a markdown table (accuracy and macro-F1 mean ± std; deltas ± s.e.).

    Args:
        summary: a :func:`summarise` frame, or its :func:`report_records` (as in the JSON).
        baseline: the variant whose delta cells stay empty.
    """
    records = report_records(summary) if isinstance(summary, pd.DataFrame) else summary
    lines = [
        "| variant | runs | train rows | added | fixed | removed | accuracy (mean ± std) "
        "| Δ accuracy (± s.e.) | macro-F1 (mean ± std) | Δ macro-F1 (± s.e.) "
        "| Δ accuracy per 1k added |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in records:
        is_base = row["variant"] == baseline
        gain, gain_se = _num(row["gain_per_1k_added"]), _num(row["gain_per_1k_added_se"])
        gain_cell = f"{100 * gain:+.3f} pp ± {_se(gain_se)}" if math.isfinite(gain) else "–"
        lines.append(
            f"| {row['title']} | {row['runs']} | {row['rows']} | {row['added']} | "
            f"{row['fixed']} | {row['removed']} | "
            f"{_mean_std(row['accuracy_mean'], row['accuracy_std'])} | "
            f"{_delta(row['delta_accuracy'], row['delta_accuracy_se'], is_base)} | "
            f"{_mean_std(row['macro_f1_mean'], row['macro_f1_std'])} | "
            f"{_delta(row['delta_macro_f1'], row['delta_macro_f1_se'], is_base)} | "
            f"{gain_cell} |"
        )
    return "\n".join(lines)


def render_markdown(report: Mapping[str, Any], *, image: str | None = None) -> str:
    """The ablation report as markdown: setup, the table, the four answers, the chart.

    Args:
        report: the dict written to ``ablation.json`` (``ablation_id``, ``dataset``,
            ``version``, ``train_rows``, ``eval_rows``, ``seeds``, ``annotator``, ``pools``,
            ``sigmas``, ``summary`` records, ``answers``).
        image: the chart's URL or relative path; None leaves it out.
    """
    pools = ", ".join(f"{k} {v}" for k, v in report.get("pools", {}).items()) or "none"
    lines = [
        f"# Ablation `{report['ablation_id']}`",
        "",
        f"Dataset **{report['dataset']}** v{report['version']} ({report['train_rows']} training "
        f"rows, {report['eval_rows']} eval rows). Every variant trained with seeds "
        f"{', '.join(map(str, report['seeds']))}; annotator {report['annotator']}. "
        f"Pools: {pools}.",
        "",
        summary_table(report["summary"]),
        "",
        f"Δ = variant minus baseline; ± after a Δ is its standard error. A difference counts "
        f"when it exceeds {report['sigmas']:g} standard errors.",
        "",
        "## The four questions",
        "",
    ]
    for i, answer in enumerate(report["answers"], start=1):
        lines += [f"{i}. **{answer['question']}** {answer['answer']}", ""]
    if image is not None:
        lines += ["## Chart", "", f"![ablation]({image})", ""]
    return "\n".join(lines)


def plot_ablation(
    summary: pd.DataFrame, path: str | os.PathLike[str], *, title: str = "Ablation"
) -> Path:
    """Bar chart of accuracy and macro-F1 per variant (mean ± std), baseline dashed.

    The y axes are zoomed to the bars' range (differences between variants are a fraction of a
    point); each bar is labelled with its mean. Drawn with matplotlib's object API on the Agg
    canvas (no pyplot state).

    Returns:
        ``path``, a PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(16.0, 4.0 + 1.6 * len(summary)), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    colours = {
        "baseline": "#7f7f7f",
        "relabel": "#1f5fa8",
        "expansion": "#d95f02",
    }
    kinds = [VARIANTS[v].kind if v in VARIANTS else "baseline" for v in summary["variant"]]
    x = np.arange(len(summary))
    for ax, metric, label in zip(
        axes, ("accuracy", "macro_f1"), ("accuracy", "macro-F1"), strict=True
    ):
        mean = summary[f"{metric}_mean"].to_numpy(np.float64)
        std = np.nan_to_num(summary[f"{metric}_std"].to_numpy(np.float64))
        ax.bar(
            x,
            mean,
            yerr=std,
            capsize=4,
            color=[colours[k] for k in kinds],
            edgecolor="black",
            linewidth=0.5,
        )
        base = summary.loc[summary["variant"] == "baseline", f"{metric}_mean"]
        if len(base):
            ax.axhline(float(base.iloc[0]), color="black", linestyle="--", linewidth=0.8)
        low, high = float(np.min(mean - std)), float(np.max(mean + std))
        pad = max(high - low, 0.002) * 0.6
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
        for xi, m, sd in zip(x, mean, std, strict=True):
            ax.annotate(
                f"{m:.4f}",
                (xi, m + sd),
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
                fontsize=7,
            )
        ax.set_xticks(x, list(summary["title"]), rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"eval {label} (mean ± std)")
        ax.set_title(label)
    fig.suptitle(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    return out


def report_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Summary rows as JSON-ready dicts: numpy scalars as Python numbers, NaN as None."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, float | np.floating):
            return float(value) if math.isfinite(float(value)) else None
        return value

    return [
        {str(key): plain(value) for key, value in record.items()}
        for record in summary.to_dict(orient="records")
    ]
