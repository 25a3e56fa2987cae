"""Training configuration, kept free of torch so configs load (and render as Prefect forms)
without importing it. :mod:`cartoflow.train` checks that its registries match these names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ARCHITECTURE_NAMES = ("fasttext", "minilm")
OPTIMIZER_NAMES = ("adam", "sgd")


class TrainConfig(BaseModel):
    """How to train the classifier; every field has a default tuned for short titles on CPU.

    The defaults train the fastText-style model on 20k titles x 5 epochs in about 8 s of CPU
    time on one thread, dynamics capture included (see ``benchmarks/bench_training.py``), and
    reach about 88% eval accuracy on the bundled demo data.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: str = Field(
        default="fasttext", description="Model kind: 'fasttext' (default, no download) or 'minilm'."
    )
    epochs: int = Field(default=5, ge=1, le=1000, description="Passes over the training set.")
    batch_size: int = Field(default=128, ge=1, description="Samples per optimiser step.")
    lr: float = Field(default=0.005, gt=0, description="Peak learning rate.")
    lr_schedule: Literal["constant", "linear"] = Field(
        default="linear",
        description="'linear' decays the rate to 0 over the run, as fastText does.",
    )
    optimizer: str = Field(
        default="adam", description="'adam' (sparse Adam for embeddings) or 'sgd'."
    )
    weight_decay: float = Field(default=0.0, ge=0, description="L2 penalty on the dense layers.")
    dim: int = Field(default=64, ge=1, description="Embedding width (fasttext).")
    buckets: int = Field(default=2**18, ge=1, description="Hash buckets for n-grams (fasttext).")
    ngram_range: tuple[int, int] = Field(
        default=(1, 3), description="Character n-gram lengths (fasttext)."
    )
    word_ngrams: int = Field(
        default=0, ge=0, le=2, description="0, 1 or 2: add word n-grams (fasttext)."
    )
    hidden: int | None = Field(
        default=None, ge=1, description="Hidden layer width; None = linear head."
    )
    dropout: float = Field(
        default=0.0, ge=0, lt=1, description="Dropout on the pooled representation."
    )
    seed: int = Field(default=0, ge=0, description="Seeds initialisation, shuffling, dropout.")
    record: Literal["train", "eval"] = Field(
        default="train",
        description="'train': dynamics from the training forward pass (free); "
        "'eval': an extra eval-mode pass over the training set at each epoch end.",
    )
    record_probs: bool = Field(
        default=True, description="Store full probabilities (turn off for many classes)."
    )
    # One thread: the default model's ops (a batch of ~10k n-gram rows) are too small to gain
    # from intra-op threads, and on a busy 2-core machine a second thread makes epochs up to 10x
    # slower while the threads wait for each other.
    num_threads: int | None = Field(
        default=1,
        ge=1,
        description="torch intra-op CPU threads for the run (restored after); None = leave as is.",
    )
    eval_batch_size: int = Field(
        default=4096, ge=1, description="Samples per batch when only predicting."
    )
    device: str = Field(default="cpu", description="Torch device, e.g. 'cpu' or 'cuda'.")

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        if value not in ARCHITECTURE_NAMES:
            raise ValueError(
                f"Expected architecture in {sorted(ARCHITECTURE_NAMES)}, got {value!r}."
            )
        return value

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        if value not in OPTIMIZER_NAMES:
            raise ValueError(f"Expected optimizer in {sorted(OPTIMIZER_NAMES)}, got {value!r}.")
        return value

    @field_validator("ngram_range")
    @classmethod
    def _ngram_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1] <= 16:
            raise ValueError(f"Expected 1 <= min <= max <= 16, got {value!r}.")
        return value
