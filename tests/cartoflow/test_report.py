import pandas as pd
import pytest

from cartoflow.report import (
    compare_evals,
    distribution_summary,
    label_change_counts,
    render_markdown,
)

BASE = {"accuracy": 0.8, "macro_f1": 0.7, "per_class_f1": [0.9, 0.6, 0.6]}
NEW = {"accuracy": 0.85, "macro_f1": 0.75, "per_class_f1": [0.9, 0.7, 0.65]}


def test_compare_gives_deltas_per_class() -> None:
    out = compare_evals(BASE, NEW, label_names=["a", "b", "c"])
    assert out["delta"]["accuracy"] == pytest.approx(0.05)
    assert out["delta"]["per_class_f1"] == pytest.approx({"a": 0.0, "b": 0.1, "c": 0.05})
    assert out["retrained"]["per_class_f1"]["b"] == 0.7


def test_compare_rejects_mismatched_class_count() -> None:
    with pytest.raises(ValueError):
        compare_evals(BASE, NEW, label_names=["a", "b"])


def test_label_change_counts() -> None:
    decisions = pd.DataFrame({"action": ["fix", "fix", "remove", "keep", "skip", "add"]})
    assert label_change_counts(decisions) == {
        "fixed": 2,
        "removed": 1,
        "added": 1,
        "unchanged": 1,
        "skipped": 1,
    }
    assert label_change_counts(pd.DataFrame({"action": []}))["fixed"] == 0


def test_distribution_summary() -> None:
    assert distribution_summary(pd.Series([0.0, 0.1, 0.2, 0.3])) == pytest.approx(
        {"mean": 0.15, "median": 0.15, "p75": 0.225}
    )


def test_markdown_shows_states_deltas_and_gates() -> None:
    report = {
        "round_id": "r1",
        "state": "completed",
        "dataset": "demo",
        "version_in": 1,
        "version_out": 2,
        "pools": {"relabel": 3},
        "label_changes": {"fixed": 2},
        "comparison": compare_evals(BASE, NEW, label_names=["a", "b", "c"]),
        "variability": {
            "before": {"mean": 0.2, "median": 0.2, "p75": 0.3},
            "after": {"mean": 0.1, "median": 0.1, "p75": 0.2},
        },
        "timings": {"train": 1.0},
        "gates": [{"gate": "dataset", "success": True}],
    }
    md = render_markdown(report)
    assert "v1 -> v2" in md
    assert "| accuracy | 80.00% | 85.00% | +5.00 pp |" in md
    assert "| dataset | passed |" in md
    rejected = render_markdown({**report, "state": "rejected", "version_out": None})
    assert "no new version" in rejected
