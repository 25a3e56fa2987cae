from pathlib import Path

import pandas as pd
import pytest

from cartoflow.workspace import (
    ENV_VAR,
    Workspace,
    atomic_path,
    check_name,
    config_hash,
    frame_hash,
    write_frame,
    write_json,
)


def test_resolve_prefers_argument_then_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    assert Workspace.resolve().root == (tmp_path / "from-env").resolve()
    assert Workspace.resolve(tmp_path / "explicit").root == (tmp_path / "explicit").resolve()


def test_paths_are_versioned_and_names_checked(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    assert ws.version_path("demo", 7).name == "v0007.parquet"
    with pytest.raises(ValueError, match=r"round id .* but got '\.\./escape'"):
        ws.run_dir("../escape")
    assert check_name("20261128-abc", what="round id") == "20261128-abc"


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "kept.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("disk full")
    assert target.read_text().strip().endswith("}")
    assert '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["kept.json"]


def test_frame_hash_depends_on_content_not_index_or_file() -> None:
    a = pd.DataFrame({"id": ["a", "b"], "label": ["0", "1"]})
    b = a.copy()
    b.index = [10, 11]
    assert frame_hash(a) == frame_hash(b)
    c = a.assign(label=["0", "2"])
    assert frame_hash(a) != frame_hash(c)
    assert frame_hash(a) != frame_hash(a.rename(columns={"label": "y"}))


def test_frame_hash_survives_a_parquet_round_trip(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"], "label": ["0", "1"]})
    path = write_frame(frame, tmp_path / "f.parquet")
    assert frame_hash(pd.read_parquet(path)) == frame_hash(frame)


def test_config_hash_is_order_independent_for_dicts() -> None:
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_write_frame_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        write_frame(pd.DataFrame({"a": [1]}), tmp_path / "f.xlsx")
