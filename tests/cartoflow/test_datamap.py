"""Tests of cartoflow.datamap: the data map and the before/after view write readable PNGs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cartoflow.datamap import (
    DEFAULT_CUTOFFS,
    _hex_means,
    _region_counts,
    plot_before_after,
    plot_data_map,
)
from cartoflow.errors import DataValidationError

PNG = b"\x89PNG\r\n\x1a\n"


def metrics_table(n: int, *, seed: int = 0, epochs: int = 5) -> pd.DataFrame:
    """A metrics table with the three data-map populations, built without any training."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, n, p=[0.6, 0.25, 0.15])
    confidence = np.select(
        [kind == 0, kind == 1], [rng.beta(12, 2, n), rng.beta(5, 5, n)], rng.beta(2, 12, n)
    )
    variability = np.where(kind == 1, rng.uniform(0.2, 0.4, n), rng.uniform(0.0, 0.12, n))
    correctness = np.clip(np.round(confidence * epochs + rng.normal(0, 0.7, n)), 0, epochs)
    return pd.DataFrame(
        {
            "confidence": confidence,
            "variability": variability,
            "correctness": correctness.astype(np.int64),
            "corr_frac": correctness / epochs,
        }
    )


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as image:
        width, height = image.size
    assert width > 1000 and height > 600


def test_small_map_is_a_scatter_png(tmp_path: Path) -> None:
    out = plot_data_map(metrics_table(300), tmp_path / "maps" / "round1" / "map.png", title="t")

    assert out == tmp_path / "maps" / "round1" / "map.png"  # parents created
    assert_png(out)


def test_large_map_uses_hexagons(tmp_path: Path) -> None:
    out = plot_data_map(metrics_table(30_000), tmp_path / "map.png", hexbin_above=20_000)
    assert_png(out)


def test_map_accepts_any_cutoffs_object_and_a_region_column(tmp_path: Path) -> None:
    table = metrics_table(200)
    table["region"] = pd.Categorical(["easy"] * 150 + ["hard"] * 50)
    cutoffs = SimpleNamespace(ambiguous_variability=0.3, easy_confidence=0.6)
    assert_png(plot_data_map(table, tmp_path / "map.png", cutoffs=cutoffs))


def test_map_without_correctness_counts(tmp_path: Path) -> None:
    table = metrics_table(200).drop(columns="correctness")
    table.loc[3, "confidence"] = np.nan  # rows without scores are left out
    assert_png(plot_data_map(table, tmp_path / "map.png"))


def test_map_needs_its_columns(tmp_path: Path) -> None:
    with pytest.raises(
        DataValidationError,
        match="Expected the metrics table to have columns confidence, variability, corr_frac, "
        "but corr_frac missing",
    ):
        plot_data_map(metrics_table(10).drop(columns="corr_frac"), tmp_path / "map.png")


def test_map_needs_finite_scores(tmp_path: Path) -> None:
    table = metrics_table(4).assign(confidence=np.nan)
    with pytest.raises(DataValidationError, match="but none of the 4 rows has them"):
        plot_data_map(table, tmp_path / "map.png")


def test_region_counts() -> None:
    confidence = np.array([0.9, 0.2, 0.5, 0.9, 0.1])
    variability = np.array([0.05, 0.05, 0.1, 0.3, 0.25])
    frame = pd.DataFrame({"confidence": confidence, "variability": variability})

    counts = _region_counts(frame, confidence, variability, DEFAULT_CUTOFFS)
    assert counts == {"easy": 2, "ambiguous": 2, "hard": 1}

    frame["region"] = ["hard"] * 5  # an assigned region column wins
    assert _region_counts(frame, confidence, variability, DEFAULT_CUTOFFS)["hard"] == 5


def test_hex_means_match_matplotlib_hexbin() -> None:
    """The vectorised per-hexagon mean equals hexbin's own (per-point Python loop) result."""
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 0.4, 3000), rng.uniform(0, 1, 3000)
    values = rng.uniform(0, 1, 3000)
    extent, grid = (0.0, 0.45, -0.02, 1.02), (20, 11)

    cx, cy, means, counts = _hex_means(x, y, values, extent, grid)

    ax = Figure().add_subplot()
    reference = ax.hexbin(x, y, C=values, gridsize=grid, extent=extent, mincnt=1)
    np.testing.assert_allclose(np.column_stack([cx, cy]), reference.get_offsets(), atol=1e-9)
    np.testing.assert_allclose(means, reference.get_array(), rtol=1e-12)
    assert counts.sum() == 3000


def test_before_after_png(tmp_path: Path) -> None:
    before = metrics_table(2000)
    after = metrics_table(1500, seed=1).assign(variability=lambda f: f.variability * 0.7)

    out = plot_before_after(before, after, tmp_path / "cmp" / "before_after.png")

    assert out.parent.is_dir()
    assert_png(out)


def test_before_after_needs_the_columns(tmp_path: Path) -> None:
    with pytest.raises(
        DataValidationError, match="Expected the 'after' table to have columns variability, "
    ):
        plot_before_after(metrics_table(5), pd.DataFrame({"x": [1]}), tmp_path / "c.png")


def test_before_after_needs_values(tmp_path: Path) -> None:
    after = metrics_table(5).assign(confidence=np.nan)
    with pytest.raises(
        DataValidationError,
        match="Expected finite values in column confidence of the 'after' table, but all 5",
    ):
        plot_before_after(metrics_table(5), after, tmp_path / "c.png")


def test_plots_leave_pyplot_and_the_backend_alone(tmp_path: Path) -> None:
    code = f"""
import sys
import matplotlib
matplotlib.use("svg")  # the user's choice must survive
import pandas as pd
from cartoflow.datamap import plot_data_map
table = pd.DataFrame(
    {{"confidence": [0.9, 0.2], "variability": [0.1, 0.3], "corr_frac": [1.0, 0.0]}}
)
plot_data_map(table, {str(tmp_path / "m.png")!r})
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG
