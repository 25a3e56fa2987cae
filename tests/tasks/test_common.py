"""Shared task helpers: content cache keys, artifact keys, table previews."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pandas as pd

from tasks.common import TABLE_TEXT_CHARS, artifact_key, content_key, table_preview


def _key(**parameters: Any) -> str:
    context: Any = SimpleNamespace(task=SimpleNamespace(name="stage"))
    return content_key(*parameters)(context, parameters)


def test_content_keys_leave_timings_out() -> None:
    data = {"train": {"hash": "ab", "rows": 3}, "seconds": 0.41}
    same = {"train": {"hash": "ab", "rows": 3}, "seconds": 0.39}
    other = {"train": {"hash": "cd", "rows": 3}, "seconds": 0.41}
    assert _key(data=data, round_id="r") == _key(data=same, round_id="r")
    assert _key(data=data, round_id="r") != _key(data=other, round_id="r")
    assert _key(data=data, round_id="r") != _key(data=data, round_id="s")
    nested = {"figures": [{"plot": "a.png", "plot_seconds": 1.0}]}
    assert _key(x=nested) == _key(x={"figures": [{"plot": "a.png", "plot_seconds": 2.0}]})
    assert _key(x=nested) != _key(x={"figures": [{"plot": "b.png", "plot_seconds": 1.0}]})


def test_artifact_keys_are_lowercase_letters_digits_and_dashes() -> None:
    key = artifact_key("round", "20261128-144310-A7BA", "Gate", "new_version")
    assert key == "round-20261128-144310-a7ba-gate-new-version"
    assert len(artifact_key("x" * 300)) <= 100


def _sent_size(table: dict[str, list[str]]) -> int:
    """The table's size as Prefect sends it: JSON in the artifact's JSON ``data`` field."""
    return len(json.dumps(json.dumps(table)))


def test_a_table_that_fits_is_sent_whole_column_wise() -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "label": [1, None], "text": ["x" * 400, "y"]})
    frame["score"] = pd.array([0.5, None], dtype="Float64")
    table, rows = table_preview(frame)
    assert rows == 2
    assert table["id"] == ["a", "b"]
    assert table["label"] == ["1.0", ""] and table["score"] == ["0.5", ""]  # missing: empty
    assert len(table["text"][0]) == TABLE_TEXT_CHARS  # cut, with an ellipsis
    assert table["text"][0].endswith("\u2026") and table["text"][1] == "y"


def test_a_large_table_is_previewed_within_the_size_the_api_accepts() -> None:
    # Non-ASCII text is sent escaped (7 bytes a character): 2000 rows of 150 characters.
    frame = pd.DataFrame(
        {"id": [f"t{i:05d}" for i in range(2000)], "text": ["青岛的房价" * 30] * 2000}
    )
    table, rows = table_preview(frame, max_bytes=200_000)
    assert 0 < rows < 2000
    assert table["id"] == frame["id"].iloc[:rows].tolist()
    assert _sent_size(table) <= 200_000
    bigger, _ = table_preview(frame.iloc[: rows + 1], max_bytes=10**9)
    assert _sent_size(bigger) > 200_000  # as many rows as fit, not fewer
    one, shown = table_preview(frame, max_bytes=10)
    assert shown == 1 and len(one["id"]) == 1  # never an empty table for a batch with rows
    assert table_preview(frame.iloc[:0]) == ({"id": [], "text": []}, 0)
