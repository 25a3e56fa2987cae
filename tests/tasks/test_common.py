"""Shared task helpers: content cache keys and artifact keys."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tasks.common import artifact_key, content_key


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
