"""Configuration of a round, as pydantic models so the Prefect UI renders them as forms."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from cartoflow.datasets import ColumnMap
from cartoflow.expansion import ExpansionConfig
from cartoflow.pools import PoolConfig
from cartoflow.train_config import TrainConfig

Strategy = Literal["fix", "remove"]


def _default_strategies() -> dict[str, Strategy]:
    return {"relabel": "fix"}


class DataSource(BaseModel):
    """Where the data comes from: files, a stored version, or the bundled demo data.

    The first fields of :class:`RoundConfig` and of the ablation's
    :class:`cartoflow.ablation.AblationConfig`, which load their data the same way.
    """

    dataset: str = Field("demo", description="Dataset name in the workspace catalog.")
    train_path: str | None = Field(
        None, description="Training file (CSV, Parquet or JSONL). Empty: the bundled demo data."
    )
    eval_path: str | None = Field(
        None, description="Eval file. Empty: a stratified, seeded split of the training file."
    )
    unlabeled_path: str | None = Field(
        None, description="Unlabeled pool that expansion draws from."
    )
    start_version: int | None = Field(
        None, description="Start from this stored version of the dataset instead of a file."
    )
    columns: ColumnMap = Field(default_factory=ColumnMap)
    demo_size: Literal["tiny", "small", "demo"] = Field(
        "demo", description="Size of the generated demo data when no training file is given."
    )
    eval_fraction: float = Field(0.2, gt=0, lt=1)

    def data_source(self) -> dict[str, object]:
        """This model's :class:`DataSource` fields, by name (values as they are)."""
        return {name: getattr(self, name) for name in DataSource.model_fields}


class RoundConfig(DataSource):
    """Everything one active-learning round needs; every field has a safe default."""

    train: TrainConfig = Field(default_factory=TrainConfig)
    pools: PoolConfig = Field(default_factory=PoolConfig)
    batch_pools: list[str] = Field(
        default_factory=lambda: ["relabel"],
        description="Pools whose samples go to the annotators in this round's batch.",
    )
    expansion: ExpansionConfig = Field(
        default_factory=ExpansionConfig,
        description="Unlabeled samples similar to the hard and very-hard pools, labelled in the "
        "same batch and added to the new version (needs an unlabeled file).",
    )
    expand: bool = Field(True, description="Send expansion candidates to the annotators.")
    conflicts: bool = Field(
        True,
        description="Near-duplicate training texts with different labels become a `conflict` "
        "pool, ahead of relabel: one row per group in the batch, its label applied to the group.",
    )
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard.")
    strategies: dict[str, Strategy] = Field(
        default_factory=_default_strategies,
        description="Per pool: 'fix' replaces a disputed label, 'remove' drops the sample.",
    )
    annotator: str = Field(
        "human",
        description="'human' waits for a person; 'simulated:<column>' answers from that column.",
    )
    annotator_error_rate: float = Field(0.0, ge=0, le=1)
    wait: Literal["pause", "suspend"] = Field(
        "pause",
        description="'pause' keeps the process waiting; 'suspend' exits (needs a deployment).",
    )
    timeout_days: float = Field(7.0, gt=0, description="How long to wait for people.")
    model_gate_tolerance: float = Field(
        0.01, ge=0, description="Promote the new version if macro-F1 >= baseline - tolerance."
    )
    min_class_share: float = Field(0.01, ge=0, lt=1)
    quality_gates: bool = Field(
        True,
        description="Run the Great Expectations gate of every stage. Off only to measure "
        "their cost or in an emergency: nothing then stops bad data.",
    )
    seed: int = 0

    @field_validator("annotator")
    @classmethod
    def _annotator(cls, value: str) -> str:
        if value != "human" and not (value.startswith("simulated:") and len(value) > 10):
            raise ValueError(f"Expected 'human' or 'simulated:<column>', but got {value!r}.")
        return value

    @property
    def simulated_column(self) -> str | None:
        """The column a simulated annotator answers from, or None for people."""
        return self.annotator.split(":", 1)[1] if self.annotator.startswith("simulated:") else None


class NightlyConfig(BaseModel):
    """The nightly re-analysis of a dataset's current version."""

    dataset: str = Field("demo", description="Dataset name in the workspace catalog.")
    train: TrainConfig = Field(default_factory=TrainConfig)
    pools: PoolConfig = Field(default_factory=PoolConfig)
    relabel_trigger: int = Field(
        500,
        ge=0,
        description="Start an active-learning round when the relabel pool holds more samples "
        "than this (0: never).",
    )
    round_deployment: str = Field(
        "active-learning-round/active-learning-round",
        description="The deployment started when the relabel pool is over the trigger.",
    )
    round: RoundConfig = Field(
        default_factory=lambda: RoundConfig(), description="Parameters of the round it starts."
    )
