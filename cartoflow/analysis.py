"""Compare two analyses of a dataset (e.g. last night's and tonight's).

What changed between two metric tables and their pools: samples that moved region, relabel
candidates that are new, how the label distribution drifted, and the two data maps side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

EXAMPLES = 20


def region_changes(before: pd.DataFrame, after: pd.DataFrame) -> dict[str, Any]:
    """Samples (matched by ``id``) whose region (easy / ambiguous / hard) changed.

    Returns:
        ``{"changed": n, "compared": n, "transitions": {"easy->hard": n, ...},
        "examples": [ids]}``; samples present in only one table are not compared.
    """
    joined = before[["id", "region"]].merge(
        after[["id", "region"]], on="id", suffixes=("_before", "_after")
    )
    old = joined["region_before"].astype(str)
    new = joined["region_after"].astype(str)
    moved = joined[(old != new).to_numpy()]
    transitions = (
        (moved["region_before"].astype(str) + "->" + moved["region_after"].astype(str))
        .value_counts()
        .sort_index()
    )
    return {
        "changed": len(moved),
        "compared": len(joined),
        "transitions": {str(k): int(v) for k, v in transitions.items()},
        "examples": moved["id"].astype(str).head(EXAMPLES).tolist(),
    }


def new_candidates(before: pd.DataFrame | None, after: pd.DataFrame, *, pool: str) -> list[str]:
    """Ids in ``pool`` now that were not in it before (all of them when there is no before)."""
    current = after.loc[after["pool"] == pool, "id"].astype(str)
    if before is None:
        return current.tolist()
    previous = set(before.loc[before["pool"] == pool, "id"].astype(str))
    return [i for i in current if i not in previous]


def label_drift(
    before: pd.Series | None, after: pd.Series, *, label_names: Sequence[str]
) -> dict[str, Any]:
    """Label shares before and after, and their total-variation distance (0 = same, 1 = disjoint).

    Args:
        before, after: one label (class name) per training sample.
    """

    def shares(labels: pd.Series | None) -> np.ndarray:
        if labels is None or len(labels) == 0:
            return np.zeros(len(label_names))
        counts = labels.astype(str).value_counts()
        return np.array([counts.get(n, 0) for n in label_names], dtype=float) / len(labels)

    old, new = shares(before), shares(after)
    return {
        "before": dict(zip(label_names, old.round(6).tolist(), strict=True)),
        "after": dict(zip(label_names, new.round(6).tolist(), strict=True)),
        "total_variation": float(0.5 * np.abs(new - old).sum()) if before is not None else None,
    }


def side_by_side(images: Sequence[Path], path: Path, *, titles: Sequence[str]) -> Path:
    """Put PNG images (e.g. two data maps) next to each other in one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    figure = Figure(figsize=(9 * len(images), 5.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(images), squeeze=False)[0]
    for ax, image, title in zip(axes, images, titles, strict=True):
        ax.imshow(imread(str(image)))
        ax.set_title(title)
        ax.set_axis_off()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
