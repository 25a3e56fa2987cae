"""Tests of cartoflow.datamap: the data map and the before/after view write readable PNGs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from PIL import Image

from cartoflow import datamap
from cartoflow.datamap import (
    DEFAULT_CUTOFFS,
    _draw_hexagons,
    _draw_points,
    _ecdf,
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


def test_png_is_opaque_rgb_and_other_suffixes_keep_their_format(tmp_path: Path) -> None:
    with Image.open(plot_data_map(metrics_table(50), tmp_path / "map.png")) as image:
        assert image.mode == "RGB"
    svg = plot_data_map(metrics_table(50), tmp_path / "map.svg")
    assert b"<svg" in svg.read_bytes()[:1000]


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

    frame["region"] = pd.Categorical(["hard", "easy"] * 2 + [None], categories=["easy", "hard"])
    counts = _region_counts(frame, confidence, variability, DEFAULT_CUTOFFS)
    assert counts == {"easy": 2, "ambiguous": 0, "hard": 2}


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


def rendered(draw: Callable[[Axes], None]) -> np.ndarray:
    """The RGBA pixels of a small figure after ``draw(ax)``."""
    fig = Figure(figsize=(4, 3), dpi=100)
    ax = fig.add_axes((0.05, 0.05, 0.9, 0.9))
    draw(ax)
    ax.set_xlim(0.0, 0.45)
    ax.set_ylim(-0.02, 1.02)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def test_hexagons_look_like_hexbin_shaded_by_count() -> None:
    """The hexagons equal hexbin's of the per-cell means, with opacity set per cell by count."""
    table = metrics_table(3000)
    x, y = table["variability"].to_numpy(), table["confidence"].to_numpy()
    colour = table["corr_frac"].to_numpy()
    extent = (0.0, 0.45, -0.02, 1.02)

    def reference(ax: Axes) -> None:
        grid = (datamap._HEX_GRID, int(datamap._HEX_GRID / np.sqrt(3)))
        cx, cy, means, counts = _hex_means(x, y, colour, extent, grid)
        hexes = ax.hexbin(
            cx, cy, C=means, gridsize=grid, extent=extent, cmap="RdYlBu", vmin=0, vmax=1
        )
        hexes.set_linewidth(0.2)
        hexes.set_alpha(0.3 + 0.7 * np.log1p(counts) / np.log1p(counts.max()))
        hexes.set_edgecolor("face")

    ours = rendered(lambda ax: _draw_hexagons(ax, x, y, colour, extent))
    np.testing.assert_array_equal(ours, rendered(reference))


def test_points_are_drawn_once_each_in_their_colour_rarely_correct_last() -> None:
    colour = np.array([1.0, 0.0, 0.6, 1.0, 0.2, 0.6, 0.0])
    x, y = np.arange(7) / 10, np.arange(7) / 7
    ax = Figure().add_subplot()

    _draw_points(ax, x, y, colour)

    cmap, norm = colormaps["RdYlBu"], Normalize(0, 1)
    drawn = [(line.get_xdata(), line.get_color()) for line in ax.get_lines()]
    assert sorted(np.concatenate([xs for xs, _ in drawn]).tolist()) == x.tolist()
    shown = []
    for xs, colour_of_line in drawn:
        values = colour[np.searchsorted(x, xs)]
        assert np.all(values == values[0])
        assert to_rgba(colour_of_line) == pytest.approx(cmap(norm(values[0])))
        shown.append(values[0])
    assert shown == sorted(set(colour.tolist()), reverse=True)


def full_ecdf(values: list[float], x: np.ndarray) -> np.ndarray:
    """Share of values <= each x, counted one x at a time."""
    return np.array([sum(v <= xi for v in values) / len(values) for xi in x])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-5, 5), st.sampled_from([0.0, 0.5, 1.0])), min_size=1, max_size=400
    ),
    st.integers(2, 40),
)
def test_thinned_ecdf_is_exact_where_drawn_and_close_in_between(
    values: list[float], points: int
) -> None:
    x, share = _ecdf(np.array(values), points=points)

    # It starts where a step per sample starts, then steps through at most `points` values.
    assert (x[0], share[0]) == (min(values), pytest.approx(1 / len(values)))
    x, share = x[1:], share[1:]
    assert len(x) <= points
    assert x[0] == min(values) and x[-1] == max(values) and share[-1] == 1.0
    assert np.all(np.diff(x) > 0)
    np.testing.assert_allclose(share, full_ecdf(values, x), atol=1e-12)
    if len(values) <= points:
        assert x.tolist() == sorted(set(values))
    # As drawn (steps-post), under the full ECDF by less than 1 / (points - 1) at every value.
    at = np.array(sorted(values))
    drawn = share[np.searchsorted(x, at, side="right") - 1]
    gap = full_ecdf(values, at) - drawn
    assert np.all(gap >= -1e-12) and np.all(gap < 1 / (points - 1))


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the plot functions save, in order."""
    saved: list[Figure] = []
    save = datamap._save

    def keep(fig: Figure, path: Path) -> Path:
        saved.append(fig)
        return save(fig, path)

    monkeypatch.setattr(datamap, "_save", keep)
    return saved


def text_and_panel_boxes(fig: Figure) -> dict[str, Bbox]:
    """Panels, their tick labels, axis labels and titles, and the figure's texts, in pixels."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = {}
    for i, ax in enumerate(fig.axes):
        boxes[f"axes {i} panel"] = ax.bbox
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            box = axis.get_tightbbox(renderer)
            if box is not None:
                boxes[f"axes {i} {name} axis"] = box
        for title in (ax.title, ax._left_title, ax._right_title):
            if title.get_text():
                boxes[f"axes {i} title {title.get_text()!r}"] = title.get_window_extent(renderer)
    for text in fig.texts:
        boxes[f"text {text.get_text()[:20]!r}"] = text.get_window_extent(renderer)
    return boxes


def overlaps_and_clips(fig: Figure) -> list[str]:
    boxes = text_and_panel_boxes(fig)
    inside = fig.bbox
    problems = [
        f"{name} leaves the figure"
        for name, box in boxes.items()
        if box.x0 < 0 or box.y0 < 0 or box.x1 > inside.x1 or box.y1 > inside.y1
    ]
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = Bbox.intersection(boxes[a], boxes[b])
            if common is not None and common.width * common.height > 0:
                problems.append(f"{a} overlaps {b}")
    return problems


@pytest.mark.parametrize(
    ("rows", "title"),
    [(300, None), (30_000, "Data map: baseline (round 20261128-134258-f200c6d5)")],
)
def test_map_panels_and_labels_neither_overlap_nor_leave_the_figure(
    tmp_path: Path, figures: list[Figure], rows: int, title: str | None
) -> None:
    """The fixed places leave room for the labels: counts in thousands, a long title."""
    table = metrics_table(rows)
    table["region"] = np.where(table["variability"] >= 0.2, "ambiguous", "easy")
    plot_data_map(table, tmp_path / "map.png", title=title)
    assert overlaps_and_clips(figures[0]) == []


@pytest.mark.parametrize("columns", [("variability",), ("variability", "confidence", "corr_frac")])
def test_before_after_panels_and_labels_neither_overlap_nor_leave_the_figure(
    tmp_path: Path, figures: list[Figure], columns: tuple[str, ...]
) -> None:
    before, after = metrics_table(2000), metrics_table(1500, seed=1)
    plot_before_after(before, after, tmp_path / "c.png", columns=columns)
    assert overlaps_and_clips(figures[0]) == []
