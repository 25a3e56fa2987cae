from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cartoflow.analysis import label_drift, new_candidates, region_changes, side_by_side


def test_region_changes_match_by_id() -> None:
    before = pd.DataFrame({"id": ["a", "b", "c", "d"], "region": ["easy", "hard", "easy", "hard"]})
    after = pd.DataFrame({"id": ["b", "a", "c", "e"], "region": ["easy", "hard", "easy", "hard"]})
    out = region_changes(before, after)
    assert out["compared"] == 3
    assert out["changed"] == 2
    assert out["transitions"] == {"easy->hard": 1, "hard->easy": 1}
    assert sorted(out["examples"]) == ["a", "b"]


def test_new_candidates() -> None:
    before = pd.DataFrame({"id": ["a", "b"], "pool": ["relabel", "hard"]})
    after = pd.DataFrame({"id": ["a", "b", "c"], "pool": ["relabel", "relabel", "relabel"]})
    assert new_candidates(before, after, pool="relabel") == ["b", "c"]
    assert new_candidates(None, after, pool="relabel") == ["a", "b", "c"]


def test_label_drift_total_variation() -> None:
    out = label_drift(
        pd.Series(["0", "0", "1", "1"]),
        pd.Series(["0", "1", "1", "1"]),
        label_names=["0", "1", "2"],
    )
    assert out["before"] == {"0": 0.5, "1": 0.5, "2": 0.0}
    assert out["total_variation"] == pytest.approx(0.25)
    assert label_drift(None, pd.Series(["0"]), label_names=["0"])["total_variation"] is None


def test_side_by_side_writes_one_png(tmp_path: Path) -> None:
    paths = []
    for i in range(2):
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().plot(np.arange(3) * i)
        paths.append(tmp_path / f"{i}.png")
        fig.savefig(paths[-1])
    out = side_by_side(paths, tmp_path / "both.png", titles=["before", "after"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
