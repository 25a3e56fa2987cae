"""Data maps (Swayamdipta et al. 2020): every training sample placed by how the model learnt it.

:func:`plot_data_map` draws variability (x) against confidence (y), coloured by the fraction of
epochs the sample was predicted correctly, with the easy / ambiguous / hard regions marked and
marginal histograms of confidence, variability and correctness. Up to ``hexbin_above`` samples
are drawn as points; above, as hexagons coloured by the mean correctness fraction of the
samples in them and shaded by how many there are, so a million samples stay readable and
draw in seconds. :func:`plot_before_after` compares two metric tables (e.g. before and
after relabelling): overlaid histograms and empirical CDFs, with means and medians.

Figures are drawn with matplotlib's object API and the Agg canvas: no pyplot, no global
state, and the user's matplotlib backend is left alone.
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
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from cartoflow.errors import DataValidationError

__all__ = ["DEFAULT_CUTOFFS", "CutoffsLike", "plot_before_after", "plot_data_map"]

# Red = rarely predicted correctly (likely mislabeled or hard), blue = always.
_CMAP = colormaps["RdYlBu"]
_NORM = Normalize(vmin=0.0, vmax=1.0)
_DPI = 150
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
        counts = frame["region"].astype(str).value_counts()
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
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=_DPI)
    return out


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
    ax.scatter(
        variability[order],
        confidence[order],
        c=colour[order],
        cmap=_CMAP,
        norm=_NORM,
        s=size,
        alpha=alpha,
        linewidths=0,
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
    hexes = ax.hexbin(
        cx,
        cy,
        C=means,
        gridsize=grid,
        extent=extent,
        cmap=_CMAP,
        norm=_NORM,
        reduce_C_function=np.mean,
        mincnt=1,
        linewidths=0.2,
    )
    # Shade each hexagon by its count: the colour shows correctness, the opacity where the
    # samples are. hexbin keeps its non-empty cells in lattice order, as _hex_means does.
    offsets = np.asarray(hexes.get_offsets())
    if offsets.shape == (len(cx), 2) and np.allclose(offsets, np.column_stack([cx, cy])):
        hexes.set_alpha(0.3 + 0.7 * np.log1p(counts) / np.log1p(counts.max()))
    hexes.set_edgecolor("face")


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
    ax.set_title("correctness", fontsize=10)
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

    fig = Figure(figsize=(12.5, 7.2), layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=[4.6, 1.5, 2.6], height_ratios=[1.1, 4.0])
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    right = fig.add_subplot(grid[1, 1], sharey=ax)
    side = fig.add_subplot(grid[1, 2])

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

    hist: dict[str, Any] = {"color": "#4a6fa5", "alpha": 0.85, "linewidth": 0}
    top.hist(variability, bins=60, range=(extent[0], xmax), **hist)
    top.set_ylabel("samples")
    top.yaxis.set_major_formatter(FuncFormatter(_compact))
    top.tick_params(labelbottom=False)
    top.set_title("variability", fontsize=10, loc="left")
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
    right.set_title("confidence", fontsize=10)
    for marginal in (top, right):
        marginal.grid(alpha=0.25)
        marginal.set_axisbelow(True)

    colourbar = fig.colorbar(
        ScalarMappable(norm=_NORM, cmap=_CMAP), ax=right, fraction=0.22, pad=0.06, aspect=40
    )
    colourbar.set_label(
        "correctness fraction (mean per hexagon)" if hexagons else "correctness fraction"
    )
    _correctness_panel(side, frame, corr)

    info = fig.add_subplot(grid[0, 1:])
    info.axis("off")
    drawn = (
        "Hexagons: colour = mean correctness fraction of their samples,\n"
        "opacity = number of samples (log scale)."
        if hexagons
        else "One point per sample, coloured by its correctness fraction."
    )
    info.text(
        0.04,
        0.98,
        f"Regions (Swayamdipta et al. 2020):\n"
        f"  ambiguous: variability >= {cut.ambiguous_variability:g}\n"
        f"  easy: confidence >= {cut.easy_confidence:g}, otherwise hard\n"
        f"  hard = low confidence and low variability:\n"
        f"  likely mislabeled, or truly hard.\n"
        f"{drawn}",
        transform=info.transAxes,
        ha="left",
        va="top",
        fontsize=9,
        color="0.2",
        linespacing=1.4,
    )
    fig.suptitle(title or f"Data map: {n:,} samples", fontsize=13, fontweight="bold")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Before / after
# --------------------------------------------------------------------------------------------


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ordered = np.sort(values)
    return ordered, np.arange(1, len(ordered) + 1) / len(ordered)


def plot_before_after(
    before: pd.DataFrame,
    after: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] = ("variability", "confidence"),
) -> Path:
    """Compare the distributions of metrics in two tables (e.g. before and after relabelling).

    One row of panels per column: overlaid histograms (as densities, so tables of different
    sizes compare) with the means (solid) and medians (dashed) marked, and the empirical CDFs.
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

    fig = Figure(figsize=(12.0, 3.6 * len(columns) + 0.6), layout="constrained")
    axes = fig.subplots(len(columns), 2, squeeze=False)
    for (hist_ax, cdf_ax), column in zip(axes, columns, strict=True):
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
        bins = np.linspace(low, high, 61)
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
        hist_ax.legend(handles, labels, fontsize=8, loc="best", frameon=True, framealpha=0.9)
        cdf_ax.set_title(f"{column}: empirical CDF", fontsize=11, loc="left")
        cdf_ax.set_xlabel(column)
        cdf_ax.set_ylabel("share of samples <= x")
        cdf_ax.set_ylim(0.0, 1.0)
        cdf_ax.legend(fontsize=8, loc="lower right")
        for axis in (hist_ax, cdf_ax):
            axis.grid(alpha=0.25)
            axis.set_axisbelow(True)
    fig.suptitle("Before vs after", fontsize=13, fontweight="bold")
    return _save(fig, path)
