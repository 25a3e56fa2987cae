"""Compare a baseline and a retrained model and render the round report (JSON + markdown).

Everything here works on plain dicts so the report can be written, diffed and read back
without cartoflow installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def compare_evals(
    baseline: Mapping[str, Any], retrained: Mapping[str, Any], *, label_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class F1 of both models and their deltas (retrained - baseline).

    Args:
        baseline, retrained: dicts with ``accuracy``, ``macro_f1`` and ``per_class_f1`` (a list in
            label-index order), as returned by the training stage.
        label_names: class names in label-index order.
    """

    def per_class(result: Mapping[str, Any]) -> dict[str, float]:
        return {
            name: float(f1) for name, f1 in zip(label_names, result["per_class_f1"], strict=True)
        }

    base_pc, new_pc = per_class(baseline), per_class(retrained)
    return {
        "baseline": {
            "accuracy": float(baseline["accuracy"]),
            "macro_f1": float(baseline["macro_f1"]),
            "per_class_f1": base_pc,
        },
        "retrained": {
            "accuracy": float(retrained["accuracy"]),
            "macro_f1": float(retrained["macro_f1"]),
            "per_class_f1": new_pc,
        },
        "delta": {
            "accuracy": float(retrained["accuracy"]) - float(baseline["accuracy"]),
            "macro_f1": float(retrained["macro_f1"]) - float(baseline["macro_f1"]),
            "per_class_f1": {name: new_pc[name] - base_pc[name] for name in label_names},
        },
    }


def distribution_summary(values: pd.Series | np.ndarray) -> dict[str, float]:
    """Mean, median and upper quartile of a score over the whole training set."""
    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        "p75": float(np.quantile(array, 0.75)),
    }


def label_change_counts(decisions: pd.DataFrame) -> dict[str, int]:
    """How many samples were fixed, removed, added, confirmed (unchanged) and skipped."""
    counts = decisions["action"].value_counts() if len(decisions) else pd.Series(dtype=int)
    return {
        "fixed": int(counts.get("fix", 0)),
        "removed": int(counts.get("remove", 0)),
        "added": int(counts.get("add", 0)),
        "unchanged": int(counts.get("keep", 0)),
        "skipped": int(counts.get("skip", 0)),
    }


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _signed(value: float) -> str:
    return f"{100 * value:+.2f} pp"


def render_markdown(report: Mapping[str, Any]) -> str:
    """A human summary of ``report.json`` for the Prefect UI and the terminal."""
    lines = [
        f"# Round `{report['round_id']}`: {report['state']}",
        "",
        f"Dataset `{report['dataset']}`: v{report['version_in']} -> "
        + (f"v{report['version_out']}" if report.get("version_out") else "no new version"),
    ]
    if report.get("reason"):
        lines += ["", f"**Why:** {report['reason']}"]
    pools = report.get("pools") or {}
    if pools:
        lines += ["", "## Pools", "", "| pool | samples |", "|---|---:|"]
        lines += [f"| {name} | {count} |" for name, count in pools.items()]
    changes = report.get("label_changes") or {}
    if changes:
        lines += ["", "## Label changes", "", "| change | samples |", "|---|---:|"]
        lines += [f"| {name} | {count} |" for name, count in changes.items()]
    comparison = report.get("comparison")
    if comparison:
        base, new, delta = comparison["baseline"], comparison["retrained"], comparison["delta"]
        lines += [
            "",
            "## Eval set",
            "",
            "| metric | baseline | retrained | delta |",
            "|---|---:|---:|---:|",
            f"| accuracy | {_pct(base['accuracy'])} | {_pct(new['accuracy'])} "
            f"| {_signed(delta['accuracy'])} |",
            f"| macro-F1 | {_pct(base['macro_f1'])} | {_pct(new['macro_f1'])} "
            f"| {_signed(delta['macro_f1'])} |",
        ]
        lines += [
            f"| F1 `{name}` | {_pct(base['per_class_f1'][name])} "
            f"| {_pct(new['per_class_f1'][name])} | {_signed(delta['per_class_f1'][name])} |"
            for name in base["per_class_f1"]
        ]
    variability = report.get("variability")
    if variability:
        before, after = variability["before"], variability["after"]
        lines += [
            "",
            "## Variability of the whole training set",
            "",
            "| | mean | median | p75 |",
            "|---|---:|---:|---:|",
            f"| before | {before['mean']:.4f} | {before['median']:.4f} | {before['p75']:.4f} |",
            f"| after | {after['mean']:.4f} | {after['median']:.4f} | {after['p75']:.4f} |",
        ]
    timings = report.get("timings") or {}
    if timings:
        lines += ["", "## Stage timings", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in timings.items()]
    gates = report.get("gates") or []
    if gates:
        lines += ["", "## Data-quality gates", "", "| gate | result |", "|---|---|"]
        lines += [f"| {g['gate']} | {'passed' if g['success'] else 'FAILED'} |" for g in gates]
    files = report.get("files") or {}
    if files:
        lines += ["", "## Files", ""]
        lines += [f"- {name}: `{path}`" for name, path in files.items()]
    return "\n".join(lines) + "\n"
