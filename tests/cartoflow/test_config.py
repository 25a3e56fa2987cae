"""Round and ablation configs: one data source model, carried from an ablation to its round."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cartoflow.ablation import AblationConfig
from cartoflow.config import DataSource, RoundConfig
from cartoflow.datasets import ColumnMap

SOURCE = {
    "dataset": "tickets",
    "train_path": "/data/train.csv",
    "eval_path": "/data/eval.csv",
    "unlabeled_path": "/data/pool.jsonl",
    "start_version": 3,
    "columns": {"id": "ticket_id", "text": "body", "label": "queue"},
    "demo_size": "tiny",
    "eval_fraction": 0.3,
}


def test_round_and_ablation_configs_read_their_data_the_same_way() -> None:
    fields = set(DataSource.model_fields)
    assert fields == set(SOURCE)
    for config in (RoundConfig, AblationConfig):
        assert issubclass(config, DataSource)
        for name in fields:  # same type, default, bounds and description
            assert repr(config.model_fields[name]) == repr(DataSource.model_fields[name])


def test_an_ablation_hands_its_whole_data_source_to_the_round() -> None:
    ablation = AblationConfig.model_validate({**SOURCE, "annotator_column": "gold"})
    round_config = ablation.round_config()
    assert round_config.data_source() == ablation.data_source()
    assert round_config.columns == ColumnMap(id="ticket_id", text="body", label="queue")
    assert round_config.annotator == "simulated:gold"


def test_bad_data_source_values_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="eval_fraction"):
        RoundConfig.model_validate({"eval_fraction": 1.5})
    with pytest.raises(ValidationError, match="demo_size"):
        AblationConfig.model_validate({"demo_size": "huge"})
