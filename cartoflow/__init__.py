"""cartoflow: find the training samples that hold a classifier back, from its training dynamics.

The library is pure and Prefect-free. Heavy modules load on first use, so
``from cartoflow import DynamicsRecorder`` costs numpy and pyarrow, not torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ["DynamicsRecorder", "TrainingDynamics", "read_dynamics", "record_eval_pass"],
        "cartoflow.dynamics",
    ),
    **dict.fromkeys(
        ["compute_metrics", "metrics_from_arrays", "assign_regions", "RegionCutoffs"],
        "cartoflow.metrics",
    ),
    **dict.fromkeys(
        ["select_pools", "PoolConfig", "PatternRule", "pool_summary"], "cartoflow.pools"
    ),
    **dict.fromkeys(
        ["assign_threshold_samples", "aum_cutoff", "estimate_mislabeled", "flag_mislabeled"],
        "cartoflow.aum",
    ),
    **dict.fromkeys(["plot_data_map", "plot_before_after"], "cartoflow.datamap"),
    **dict.fromkeys(
        ["train_classifier", "evaluate", "predict_proba", "save_model", "load_model"],
        "cartoflow.train",
    ),
    "TrainConfig": "cartoflow.train_config",
    "HashedNgrams": "cartoflow.featurize",
    **dict.fromkeys(["FastTextClassifier", "TextModel"], "cartoflow.models"),
    **dict.fromkeys(
        ["load_dataset", "Dataset", "ColumnMap", "LabelMap", "stratified_split"],
        "cartoflow.datasets",
    ),
    **dict.fromkeys(["generate_demo", "write_demo", "NoiseConfig"], "cartoflow.demo"),
    **dict.fromkeys(
        ["SimulatedAnnotator", "export_batch", "read_annotations"], "cartoflow.annotate"
    ),
    **dict.fromkeys(
        ["nearest_neighbours", "select_expansion", "random_expansion"], "cartoflow.expansion"
    ),
    **dict.fromkeys(["near_duplicate_groups", "conflict_pool", "dedup_batch"], "cartoflow.neardup"),
    **dict.fromkeys(["run_suite", "raise_for_failures"], "cartoflow.quality"),
    **dict.fromkeys(
        [
            "CartoflowError",
            "DataValidationError",
            "DynamicsError",
            "DataQualityError",
            "TrainingError",
        ],
        "cartoflow.errors",
    ),
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cartoflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
