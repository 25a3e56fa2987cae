"""Data maps (Swayamdipta et al. 2020): every training sample placed by how the model learnt it.

:func:`plot_data_map` draws variability (x) against confidence (y), coloured by the fraction of
epochs the sample was predicted correctly, with the easy / ambiguous / hard regions marked and
marginal histograms of confidence, variability and correctness. Up to ``hexbin_above`` samples
are drawn as points; above, as hexagons coloured by the mean correctness fraction of the
samples in them and shaded by how many there are, so a million samples stay readable and
draw in seconds. :func:`plot_before_after` compares two metric tables (e.g. before and
after relabelling): overlaid histograms and empirical CDFs, with means and medians.

Figures are drawn with matplotlib's object API and the Agg canvas: no pyplot, no global
state, and the user's matplotlib backend is left alone. Their panels sit at fixed places
rather than in a layout engine, so each figure is drawn once, without measuring its text first.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator
from PIL import Image

from cartoflow.errors import DataValidationError

__all__ = ["DEFAULT_CUTOFFS", "CutoffsLike", "plot_before_after", "plot_data_map"]

# Red = rarely predicted correctly (likely mislabeled or hard), blue = always.
_CMAP = colormaps["RdYlBu"]
_NORM = Normalize(vmin=0.0, vmax=1.0)
_DPI = 100  # 1250 x 720 px for the data map: sharp on screens, half the bytes of 150
_HEX_GRID = 70  # hexagons across the x axis
_REGION_COLOURS = {"easy": "#1f5fa8", "ambiguous": "#6b4c9a", "hard": "#b2182b"}
_BEFORE, _AFTER = "#7f7f7f", "#d95f02"


class CutoffsLike(Protocol):
    """Region cut-offs, e.g. :class:`cartoflow.metrics.RegionCutoffs`.

    A sample is *ambiguous* when ``variability >= ambiguous_variability``; otherwise *easy* when
    ``confidence >= easy_confidence`` and *hard* below.
    """

    @property
    def ambiguous_variability(self) -> float: ...

    @property
    def easy_confidence(self) -> float: ...


@dataclass(frozen=True)
class _Cutoffs:
    ambiguous_variability: float
    easy_confidence: float


DEFAULT_CUTOFFS: CutoffsLike = _Cutoffs(ambiguous_variability=0.2, easy_confidence=0.5)
"""The defaults of :class:`cartoflow.metrics.RegionCutoffs`, used when ``cutoffs`` is None."""


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"Expected {name} to have columns {', '.join(columns)}, but {', '.join(missing)} "
            f"missing (got columns {', '.join(map(str, frame.columns))})."
        )


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.asarray(frame[column].to_numpy(dtype=np.float64, na_value=np.nan))


def _region_counts(
    frame: pd.DataFrame, confidence: np.ndarray, variability: np.ndarray, cutoffs: CutoffsLike
) -> dict[str, int]:
    """Samples per region: the frame's ``region`` column when present, else from ``cutoffs``."""
    if "region" in frame.columns:
        # Count, then name the counts: turning a million categorical values into strings
        # first took longer than drawing the figure.
        counts = frame["region"].value_counts()
        counts = counts.groupby(counts.index.astype(str)).sum()
        return {name: int(counts.get(name, 0)) for name in _REGION_COLOURS}
    ambiguous = variability >= cutoffs.ambiguous_variability
    easy = ~ambiguous & (confidence >= cutoffs.easy_confidence)
    return {
        "easy": int(easy.sum()),
        "ambiguous": int(ambiguous.sum()),
        "hard": int((~ambiguous & ~easy).sum()),
    }


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas = FigureCanvasAgg(fig)
    if out.suffix.lower() != ".png":
        fig.savefig(out, dpi=_DPI)
        return out
    # Drawn once: there is no layout engine to run first (the axes sit at fixed places, see
    # _inches). Written as RGB at zlib level 3, the pixels take half the time savefig's RGBA
    # at level 6 does, for a file no larger.
    fig.set_dpi(_DPI)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())
    if (pixels[..., 3] == 255).all():  # opaque, as by default: the alpha channel says nothing
        pixels = np.ascontiguousarray(pixels[..., :3])
    Image.fromarray(pixels).save(out, format="png", compress_level=3)
    return out


def _inches(
    fig: Figure, left: float, bottom: float, width: float, height: float
) -> tuple[float, float, float, float]:
    """An axes rectangle given in inches from the figure's lower-left corner, as fractions.

    Fixed places instead of ``layout="constrained"``: that layout measures every tick label of
    every axes before each draw, and makes savefig draw twice; together most of a figure's
    time. The margins are sized for the widest labels these figures print (``1.5k``, ``150k``,
    ``0.25``), with room to spare.
    """
    fig_width, fig_height = fig.get_size_inches()
    return (left / fig_width, bottom / fig_height, width / fig_width, height / fig_height)


# --------------------------------------------------------------------------------------------
# The data map
# --------------------------------------------------------------------------------------------


def _hex_means(
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    extent: tuple[float, float, float, float],
    grid: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean of ``values`` and count per hexagon: (centre x, centre y, mean, count).

    The same lattice as :meth:`matplotlib.axes.Axes.hexbin` (two interleaved rectangular
    lattices, nearest centre wins), but vectorised: hexbin averages a ``C`` array with a
    Python loop over every point, which takes seconds for a million samples.
    """
    xmin, xmax, ymin, ymax = extent
    nx, ny = grid
    padding = 1.0e-9 * (xmax - xmin)
    xmin, xmax = xmin - padding, xmax + padding
    sx, sy = (xmax - xmin) / nx, (ymax - ymin) / ny
    ix, iy = (x - xmin) / sx, (y - ymin) / sy
    ix1, iy1 = np.round(ix), np.round(iy)
    ix2, iy2 = np.floor(ix), np.floor(iy)
    first = (ix - ix1) ** 2 + 3.0 * (iy - iy1) ** 2 < (ix - ix2 - 0.5) ** 2 + 3.0 * (
        iy - iy2 - 0.5
    ) ** 2
    # One cell index space for both lattices: lattice 1 first, then lattice 2.
    n1 = (nx + 1) * (ny + 1)
    cell = np.where(
        first,
        ix1 * (ny + 1) + iy1,
        n1 + ix2 * ny + iy2,
    ).astype(np.int64)
    size = n1 + nx * ny
    counts = np.bincount(cell, minlength=size)
    sums = np.bincount(cell, weights=values, minlength=size)
    used = np.flatnonzero(counts)
    in_first = used < n1
    local = np.where(in_first, used, used - n1)
    rows = np.where(in_first, ny + 1, ny)
    cx = np.where(in_first, local // rows, local // rows + 0.5) * sx + xmin
    cy = np.where(in_first, local % rows, local % rows + 0.5) * sy + ymin
    return cx, cy, sums[used] / counts[used], counts[used]


def _draw_points(
    ax: Axes, variability: np.ndarray, confidence: np.ndarray, colour: np.ndarray
) -> None:
    n = len(variability)
    size = float(np.clip(6000.0 / max(n, 1), 3.0, 28.0))
    alpha = float(np.clip(2000.0 / max(n, 1), 0.35, 0.85))
    # Draw the rarely-correct samples last, so they stay visible on top.
    order = np.argsort(-colour, kind="stable")
    # One marker line per colour of the colour map (at most its 256 entries; one per epoch
    # count when corr_frac comes from whole epochs): Agg stamps one rasterised marker per
    # line, several times faster than a scatter colouring each point, for the same picture.
    # Sorted by correctness, each colour is one run. zorder 1 keeps them under the grid.
    rgba = np.ascontiguousarray(_CMAP(_NORM(colour[order]), bytes=True))
    keys = rgba.view(np.uint32).ravel()
    runs = np.split(order, np.flatnonzero(keys[1:] != keys[:-1]) + 1)
    for members in runs:
        ax.plot(
            variability[members],
            confidence[members],
            linestyle="none",
            marker="o",
            markersize=math.sqrt(size),
            markeredgewidth=0,
            color=_CMAP(_NORM(colour[members[0]])),
            alpha=alpha,
            zorder=1,
            rasterized=True,
        )


def _draw_hexagons(
    ax: Axes,
    variability: np.ndarray,
    confidence: np.ndarray,
    colour: np.ndarray,
    extent: tuple[float, float, float, float],
) -> None:
    grid = (_HEX_GRID, int(_HEX_GRID / math.sqrt(3)))
    cx, cy, means, counts = _hex_means(variability, confidence, colour, extent, grid)
    # Colour = mean correctness, opacity = how many samples (log scale).
    colours = _CMAP(_NORM(means))
    colours[:, 3] = 0.3 + 0.7 * np.log1p(counts) / np.log1p(counts.max())
    # The hexagons of Axes.hexbin on the same lattice. hexbin itself would average the
    # already averaged cells again in a Python loop, and per-cell opacity through set_alpha
    # converts every colour on its own: most of the figure's time.
    sx, sy = (extent[1] - extent[0]) / grid[0], (extent[3] - extent[2]) / grid[1]
    hexagon = [sx, sy / 3] * np.array(
        [[0.5, -0.5], [0.5, 0.5], [0.0, 1.0], [-0.5, 0.5], [-0.5, -0.5], [0.0, -1.0]]
    )
    hexagons = PolyCollection(
        list(np.column_stack([cx, cy])[:, np.newaxis, :] + hexagon),
        facecolors=colours,
        edgecolors="face",
        linewidths=0.2,
    )
    ax.add_collection(hexagons, autolim=False)


def _mark_regions(
    ax: Axes, cutoffs: CutoffsLike, counts: dict[str, int], xmax: float, total: int
) -> None:
    av, ec = cutoffs.ambiguous_variability, cutoffs.easy_confidence
    line: dict[str, Any] = {
        "color": "0.15",
        "linestyle": (0, (5, 3)),
        "linewidth": 1.0,
        "zorder": 3,
    }
    ax.axvline(av, **line)
    ax.plot([0.0, av], [ec, ec], **line)

    def label(name: str, x: float, y: float, ha: str, va: str) -> None:
        share = counts[name] / total if total else 0.0
        ax.text(
            x,
            y,
            f"{name}\n{counts[name]:,} ({share:.0%})",
            ha=ha,
            va=va,
            fontsize=9,
            fontweight="bold",
            color=_REGION_COLOURS[name],
            zorder=4,
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "none", "alpha": 0.8},
        )

    # Next to the corner where the boundaries meet: the far corners of easy and hard are where
    # their samples crowd.
    label("easy", av - 0.015 * xmax, ec + 0.02, "right", "bottom")
    label("hard", av - 0.015 * xmax, ec - 0.02, "right", "top")
    label("ambiguous", xmax - 0.015 * xmax, 0.985, "right", "top")


def _compact(value: float, _position: float | None = None) -> str:
    """Tick labels for counts: 950, 1.5k, 150k, 1.2M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.0f}"


def _correctness_panel(ax: Axes, frame: pd.DataFrame, corr: np.ndarray) -> None:
    if "correctness" in frame.columns and "corr_frac" in frame.columns:
        counts_per = frame["correctness"].to_numpy(dtype=np.int64, na_value=-1)
        valid = counts_per >= 0
        epochs = (
            int(np.round(np.nanmax(counts_per[valid] / np.maximum(corr[valid], 1e-12))))
            if (corr[valid] > 0).any()
            else int(counts_per[valid].max(initial=0))
        )
        epochs = max(epochs, int(counts_per.max(initial=0)), 1)
        heights = np.bincount(counts_per[valid], minlength=epochs + 1)
        positions = np.arange(epochs + 1)
        ax.bar(
            positions,
            heights,
            width=0.85,
            color=_CMAP(_NORM(positions / epochs)),
            edgecolor="0.3",
            linewidth=0.4,
        )
        ax.set_xlabel(f"correctness (epochs correct of {epochs})")
        step = max(1, math.ceil((epochs + 1) / 8))
        ax.set_xticks(positions[::step])
    else:
        edges = np.linspace(0.0, 1.0, 11)
        heights, _ = np.histogram(corr, bins=edges)
        centres = (edges[:-1] + edges[1:]) / 2
        ax.bar(centres, heights, width=0.09, color=_CMAP(_NORM(centres)), edgecolor="0.3")
        ax.set_xlabel("correctness fraction")
    ax.set_ylabel("samples")
    ax.yaxis.set_major_formatter(FuncFormatter(_compact))
    ax.set_title("correctness", fontsize=10, y=1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def plot_data_map(
    metrics: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    hexbin_above: int = 20000,
    cutoffs: CutoffsLike | None = None,
) -> Path:
    """Draw the data map of Swayamdipta et al. 2020 to a PNG.

    Variability on x, confidence on y, colour = correctness fraction (red = rarely predicted
    correctly, blue = always). Regions: *easy* (high confidence, low variability), *hard*
    (low confidence, low variability: likely mislabeled or truly hard), *ambiguous* (high
    variability), with their sample counts. Marginal histograms of confidence and variability
    sit on the map's edges; a third panel shows correctness.

    Args:
        metrics: one row per sample with ``confidence`` and ``variability`` (each in [0, 1])
            and ``corr_frac``; optional ``correctness`` (int epochs correct) and ``region``
            (counts are taken from it when present), as :func:`cartoflow.metrics.compute_metrics`
            returns. Rows with NaN confidence or variability are left out.
        path: where to write the PNG; parent directories are created.
        title: figure title; a default names the number of samples.
        hexbin_above: draw hexagons instead of points above this many samples.
        cutoffs: region cut-offs with ``ambiguous_variability`` and ``easy_confidence``
            (e.g. :class:`cartoflow.metrics.RegionCutoffs`); :data:`DEFAULT_CUTOFFS` when None.

    Returns:
        The path of the PNG.

    Raises:
        DataValidationError: missing columns, or no sample with finite scores.
    """
    _require(metrics, ("confidence", "variability", "corr_frac"), "the metrics table")
    cut = cutoffs if cutoffs is not None else DEFAULT_CUTOFFS
    confidence = _floats(metrics, "confidence")
    variability = _floats(metrics, "variability")
    corr = _floats(metrics, "corr_frac")
    keep = np.isfinite(confidence) & np.isfinite(variability) & np.isfinite(corr)
    if not keep.any():
        raise DataValidationError(
            f"Expected samples with finite confidence, variability and corr_frac, but none of "
            f"the {len(metrics)} rows has them."
        )
    frame = metrics if keep.all() else metrics.loc[keep]
    confidence, variability, corr = confidence[keep], variability[keep], corr[keep]
    n = len(confidence)
    xmax = float(max(variability.max() * 1.08, cut.ambiguous_variability * 1.3, 0.05))
    # Scores outside their ranges would be a bug upstream; still draw them, inside the frame.
    extent = (
        float(min(0.0, variability.min())),
        xmax,
        float(min(-0.02, confidence.min() - 0.02)),
        float(max(1.02, confidence.max() + 0.02)),
    )

    fig = Figure(figsize=(12.5, 7.2))
    # Inches: the map with its marginals above and to the right, the colour bar, then the
    # correctness panel; the explanation sits above the right-hand panels.
    low, tall = 0.5, 4.58
    ax = fig.add_axes(_inches(fig, 0.66, low, 5.43, tall))
    top = fig.add_axes(_inches(fig, 0.66, 5.44, 5.43, 1.18), sharex=ax)
    right = fig.add_axes(_inches(fig, 6.23, low, 1.78, tall), sharey=ax)
    colour_axes = fig.add_axes(_inches(fig, 8.11, low, 0.115, tall))
    side = fig.add_axes(_inches(fig, 9.45, low, 3.0, tall))

    hexagons = n > hexbin_above
    if hexagons:
        _draw_hexagons(ax, variability, confidence, corr, extent)
    else:
        _draw_points(ax, variability, confidence, corr)
    _mark_regions(ax, cut, _region_counts(frame, confidence, variability, cut), xmax, n)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("variability (std of the gold-label probability across epochs)")
    ax.set_ylabel("confidence (mean gold-label probability)")
    ax.grid(alpha=0.25)

    # One filled outline per histogram rather than 60 bars: the same picture, one artist.
    hist: dict[str, Any] = {
        "histtype": "stepfilled",
        "color": "#4a6fa5",
        "alpha": 0.85,
        "linewidth": 0,
    }
    top.hist(variability, bins=60, range=(extent[0], xmax), **hist)
    top.set_ylabel("samples")
    top.yaxis.set_major_formatter(FuncFormatter(_compact))
    top.tick_params(labelbottom=False)
    # y=1.0 pins each title above its axes, where matplotlib would put it after measuring the
    # tick labels of the axes once more.
    top.set_title("variability", fontsize=10, loc="left", y=1.0)
    right.hist(
        confidence,
        bins=60,
        range=(min(0.0, float(confidence.min())), max(1.0, float(confidence.max()))),
        orientation="horizontal",
        **hist,
    )
    right.set_xlabel("samples")
    right.xaxis.set_major_formatter(FuncFormatter(_compact))
    right.xaxis.set_major_locator(MaxNLocator(nbins=3))
    right.tick_params(labelleft=False)
    right.set_title("confidence", fontsize=10, y=1.0)
    for marginal in (top, right):
        marginal.grid(alpha=0.25)
        marginal.set_axisbelow(True)

    colourbar = fig.colorbar(ScalarMappable(norm=_NORM, cmap=_CMAP), cax=colour_axes)
    colourbar.set_label(
        "correctness fraction (mean per hexagon)" if hexagons else "correctness fraction"
    )
    _correctness_panel(side, frame, corr)

    drawn = (
        "Hexagons: colour = mean correctness fraction of their samples,\n"
        "opacity = number of samples (log scale)."
        if hexagons
        else "One point per sample, coloured by its correctness fraction."
    )
    fig.text(
        6.48,
        6.6,
        f"Regions (Swayamdipta et al. 2020):\n"
        f"  ambiguous: variability >= {cut.ambiguous_variability:g}\n"
        f"  easy: confidence >= {cut.easy_confidence:g}, otherwise hard\n"
        f"  hard = low confidence and low variability:\n"
        f"  likely mislabeled, or truly hard.\n"
        f"{drawn}",
        transform=fig.dpi_scale_trans,  # inches
        ha="left",
        va="top",
        fontsize=9,
        color="0.2",
        linespacing=1.4,
    )
    # Placed 0.06 in below the top edge, clear of the panel titles.
    fig.suptitle(
        title or f"Data map: {n:,} samples", y=1 - 0.06 / 7.2, fontsize=13, fontweight="bold"
    )
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Before / after
# --------------------------------------------------------------------------------------------


def _ecdf(values: np.ndarray, points: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF at up to ``points`` of the values: (x ascending, share of values <= x).

    The values at evenly spaced ranks, always the smallest and the largest, each with its
    exact share (ties counted), after a first point at (smallest, 1 / n) where a step per
    sample starts. Drawn as steps (``steps-post``) it lies under the full ECDF by less than
    ``1 / (points - 1)``, under a pixel at these figure sizes; with ``points`` values or fewer
    it is the full ECDF. A step per sample drew 40k vertices per curve for 20k samples.
    """
    ordered = np.sort(values)
    n = len(ordered)
    ranks = np.linspace(0, n - 1, min(n, points)).round().astype(np.int64)
    x = np.unique(ordered[ranks])
    share = np.searchsorted(ordered, x, side="right") / n
    # Ties at the smallest value would otherwise lose their rise from 1 / n.
    return np.r_[x[0], x], np.r_[1 / n, share]


def plot_before_after(
    before: pd.DataFrame,
    after: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] = ("variability", "confidence"),
) -> Path:
    """Compare the distributions of metrics in two tables (e.g. before and after relabelling).

    One row of panels per column: overlaid histograms (as densities, so tables of different
    sizes compare) with the means (solid) and medians (dashed) marked, and the empirical CDFs
    (drawn through up to 512 of the values, within a pixel of the full step curve).
    The reference report found that fixing labels lowers the variability of the whole set: the
    "after" curve of variability then sits to the left.

    Args:
        before: metrics table of the first dataset version (one row per sample).
        after: metrics table of the second version.
        path: where to write the PNG; parent directories are created.
        columns: numeric columns present in both tables.

    Returns:
        The path of the PNG.

    Raises:
        DataValidationError: a column missing from either table, or no finite values in it.
    """
    columns = list(columns)
    if not columns:
        raise DataValidationError("Expected at least one column to compare, but got none.")
    _require(before, columns, "the 'before' table")
    _require(after, columns, "the 'after' table")

    rows = len(columns)
    fig = Figure(figsize=(12.0, 3.6 * rows + 0.6))
    # Inches: 0.6 above for the titles, 0.48 below and 0.72 between rows for the labels.
    width, height = 5.235, 2.88 + 0.24 / rows
    for row, column in enumerate(columns):
        bottom = 0.48 + (rows - 1 - row) * (height + 0.72)
        hist_ax = fig.add_axes(_inches(fig, 0.64, bottom, width, height))
        cdf_ax = fig.add_axes(_inches(fig, 0.64 + width + 0.75, bottom, width, height))
        series = {}
        for name, frame in (("before", before), ("after", after)):
            values = _floats(frame, column)
            values = values[np.isfinite(values)]
            if not len(values):
                raise DataValidationError(
                    f"Expected finite values in column {column} of the '{name}' table, but "
                    f"all {len(frame)} rows are NaN."
                )
            series[name] = values
        low = min(v.min() for v in series.values())
        high = max(v.max() for v in series.values())
        if high <= low:
            high = low + 1e-6
        bins = np.linspace(low, high, 61).tolist()
        for name, colour in (("before", _BEFORE), ("after", _AFTER)):
            values = series[name]
            mean, median = float(values.mean()), float(np.median(values))
            hist_ax.hist(
                values,
                bins=bins,
                density=True,
                histtype="stepfilled" if name == "before" else "step",
                color=colour,
                alpha=0.35 if name == "before" else 1.0,
                linewidth=1.8,
                label=f"{name} (n={len(values):,}): mean {mean:.3f}, median {median:.3f}",
            )
            hist_ax.axvline(mean, color=colour, linewidth=1.2, alpha=0.9)
            hist_ax.axvline(median, color=colour, linewidth=1.2, alpha=0.9, linestyle="--")
            x, y = _ecdf(values)
            cdf_ax.plot(x, y, color=colour, linewidth=1.8, label=name, drawstyle="steps-post")
            cdf_ax.axvline(median, color=colour, linewidth=1.0, linestyle="--")
        b_mean, a_mean = series["before"].mean(), series["after"].mean()
        change = (a_mean - b_mean) / abs(b_mean) if b_mean else float("nan")
        # Placed by matplotlib, unlike the other titles: a density axis can print a
        # multiplier (1e7) at its top left, where this title starts.
        hist_ax.set_title(
            f"{column}: mean {b_mean:.3f} → {a_mean:.3f} ({change:+.1%})",
            fontsize=11,
            loc="left",
        )
        hist_ax.set_xlabel(column)
        hist_ax.set_ylabel("density")
        handles, labels = hist_ax.get_legend_handles_labels()
        handles += [
            Line2D([], [], color="0.3", linewidth=1.6),
            Line2D([], [], color="0.3", linewidth=1.6, linestyle="--"),
        ]
        labels += ["mean", "median"]
        # "best" only weighs this panel's two histogram outlines and four lines: cheap.
        hist_ax.legend(handles, labels, fontsize=8, loc="best", frameon=True, framealpha=0.9)
        cdf_ax.set_title(f"{column}: empirical CDF", fontsize=11, loc="left", y=1.0)
        cdf_ax.set_xlabel(column)
        cdf_ax.set_ylabel("share of samples <= x")
        cdf_ax.set_ylim(0.0, 1.0)
        cdf_ax.legend(fontsize=8, loc="lower right")
        for axis in (hist_ax, cdf_ax):
            axis.grid(alpha=0.25)
            axis.set_axisbelow(True)
    # Placed 0.06 in below the top edge, clear of the panel titles.
    fig.suptitle("Before vs after", y=1 - 0.06 / (3.6 * rows + 0.6), fontsize=13, fontweight="bold")
    return _save(fig, path)
