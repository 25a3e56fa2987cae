from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

from cartoflow.annotate import REMOVE, SKIP
from cartoflow.catalog import Catalog
from cartoflow.errors import DataValidationError
from cartoflow.versions import (
    apply_decisions,
    decide,
    read_candidate,
    read_registered,
    read_version,
    register_version,
    write_candidate,
)
from cartoflow.workspace import Workspace


@pytest.fixture
def parent() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "text": ["t1", "t2", "t3", "t4", "t5", "t6"],
            "label": ["0", "1", "2", "0", "1", "2"],
            "group": ["g1", "g1", "g2", "g3", "g4", "g5"],
        }
    )


def _annotations(rows: list[tuple[str, str, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "pool", "new_label"])


def test_register_is_content_addressed_and_never_overwrites(tmp_path: Path, parent) -> None:
    ws = Workspace(tmp_path).ensure()
    catalog = Catalog(ws.catalog_path)
    v1 = register_version(parent, workspace=ws, catalog=catalog, dataset="demo", promoted=True)
    again = register_version(parent.copy(), workspace=ws, catalog=catalog, dataset="demo")
    assert again == v1
    changed = parent.assign(label=["1", "1", "2", "0", "1", "2"])
    v2 = register_version(changed, workspace=ws, catalog=catalog, dataset="demo", parent=1)
    assert (v1.version, v2.version, v2.parent) == (1, 2, 1)
    assert read_version(v1, workspace=ws).equals(parent)
    assert sorted(p.name for p in ws.dataset_dir("demo").iterdir()) == [
        "v0001.parquet",
        "v0002.parquet",
    ]


def test_a_stray_file_is_not_overwritten(tmp_path: Path, parent) -> None:
    ws = Workspace(tmp_path).ensure()
    stray = ws.version_path("demo", 1)
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        register_version(parent, workspace=ws, catalog=Catalog(ws.catalog_path), dataset="demo")
    assert stray.read_bytes() == b"precious"


def test_a_tampered_version_is_refused(tmp_path: Path, parent) -> None:
    ws = Workspace(tmp_path).ensure()
    rec = register_version(parent, workspace=ws, catalog=Catalog(ws.catalog_path), dataset="d")
    parent.head(2).to_parquet(ws.root / rec.file, index=False)
    with pytest.raises(DataValidationError, match="no longer matches"):
        read_version(rec, workspace=ws)


def test_a_version_tampered_after_a_checked_read_is_still_refused(tmp_path: Path, parent) -> None:
    ws = Workspace(tmp_path).ensure()
    rec = register_version(parent, workspace=ws, catalog=Catalog(ws.catalog_path), dataset="d")
    assert read_version(rec, workspace=ws).equals(parent)
    assert read_version(rec, workspace=ws).equals(parent)  # the second read skips the hash
    changed = parent.copy()
    changed.loc[0, "label"] = changed.loc[1, "label"] if len(changed) > 1 else "x"
    changed.loc[0, "text"] = "edited by hand"
    changed.to_parquet(ws.root / rec.file, index=False)
    with pytest.raises(DataValidationError, match="no longer matches"):
        read_version(rec, workspace=ws)


def test_a_version_this_process_registered_is_not_hashed_again(tmp_path: Path, parent) -> None:
    ws = Workspace(tmp_path).ensure()
    rec = register_version(parent, workspace=ws, catalog=Catalog(ws.catalog_path), dataset="d")
    with mock.patch("cartoflow.versions.frame_hash", side_effect=AssertionError("hashed again")):
        assert read_version(rec, workspace=ws).equals(parent)


def test_each_read_of_a_kept_version_is_its_own_copy(tmp_path: Path, parent) -> None:
    ws = Workspace(tmp_path).ensure()
    rec = register_version(parent, workspace=ws, catalog=Catalog(ws.catalog_path), dataset="d")
    first = read_version(rec, workspace=ws)
    first.loc[0, "text"] = "changed by a stage, in memory"
    first.drop(columns=["label"], inplace=True)
    with mock.patch.object(pd, "read_parquet", side_effect=AssertionError("parsed again")):
        second = read_version(rec, workspace=ws)  # kept in memory
    assert second.equals(parent)
    second.loc[1, "text"] = "changed too"
    assert read_version(rec, workspace=ws).equals(parent)


def test_a_registered_version_is_read_by_its_hash(tmp_path: Path, parent) -> None:
    ws = Workspace(tmp_path).ensure()
    rec = register_version(parent, workspace=ws, catalog=Catalog(ws.catalog_path), dataset="d")
    assert read_registered(ws, "d", rec.hash).equals(parent)
    with pytest.raises(KeyError, match="d 000000000000 is not registered"):
        read_registered(ws, "d", "0" * 64)


def test_a_candidate_has_the_hash_of_the_version_registered_from_its_file(
    tmp_path: Path, parent
) -> None:
    ws = Workspace(tmp_path).ensure()
    path = ws.run_dir("r1") / "candidate_version.parquet"
    content = write_candidate(parent.iloc[[2, 0, 1]], path)  # not a plain range index
    with mock.patch("cartoflow.versions.frame_hash", side_effect=AssertionError("hashed again")):
        candidate = read_candidate(path, content)  # written here, read without a new hash
    assert candidate.equals(parent.iloc[[2, 0, 1]].reset_index(drop=True))
    rec = register_version(
        pd.read_parquet(path), workspace=ws, catalog=Catalog(ws.catalog_path), dataset="d"
    )
    assert rec.hash == content


def test_a_candidate_changed_after_it_was_built_is_refused(tmp_path: Path, parent) -> None:
    ws = Workspace(tmp_path).ensure()
    path = ws.run_dir("r1") / "candidate_version.parquet"
    content = write_candidate(parent, path)
    parent.assign(label="0").to_parquet(path, index=False)
    with pytest.raises(DataValidationError, match=r"candidate_version.parquet changed after"):
        read_candidate(path, content)


def test_decide_covers_every_action(parent) -> None:
    ann = _annotations(
        [
            ("a", "relabel", "1"),  # fix
            ("b", "relabel", "1"),  # same label: keep
            ("c", "relabel", REMOVE),  # remove marker
            ("d", "relabel", ""),  # empty: skip
            ("e", "hard", "2"),  # pool strategy remove
            ("f", "relabel", SKIP),
        ]
    )
    decisions = decide(ann, parent, strategies={"relabel": "fix", "hard": "remove"}, annotator="x")
    assert decisions.set_index("sample_id")["action"].to_dict() == {
        "a": "fix",
        "b": "keep",
        "c": "remove",
        "d": "skip",
        "e": "remove",
        "f": "skip",
    }
    assert set(decisions["annotator"]) == {"x"}
    assert decisions["reason"].notna().all()


def test_apply_fixes_removes_and_adds_and_keeps_the_rest_identical(parent) -> None:
    ann = _annotations(
        [("a", "relabel", "1"), ("c", "relabel", REMOVE), ("new1", "expand_hard", "2")]
    ).assign(text=["t1", "t3", "brand new"], group=["g1", "g2", "g9"])
    decisions = decide(ann, parent, strategies={"relabel": "fix"}, annotator="x")
    new = apply_decisions(parent, decisions)
    assert new["id"].tolist() == ["a", "b", "d", "e", "f", "new1"]
    assert new.set_index("id").loc["a", "label"] == "1"
    assert new.set_index("id").loc["new1", ["text", "label", "group"]].tolist() == [
        "brand new",
        "2",
        "g9",
    ]
    untouched = parent[parent["id"].isin(["b", "d", "e", "f"])].reset_index(drop=True)
    assert new[new["id"].isin(["b", "d", "e", "f"])].reset_index(drop=True).equals(untouched)
    assert list(new.dtypes) == list(parent.dtypes)


def test_apply_refuses_duplicate_or_unknown_decisions(parent) -> None:
    dup = decide(
        _annotations([("a", "relabel", "1"), ("a", "relabel", "2")]),
        parent,
        strategies={},
        annotator="x",
    )
    with pytest.raises(DataValidationError, match="ids a have several"):
        apply_decisions(parent, dup)
    with pytest.raises(ValueError, match="strategies 'fix' or 'remove'"):
        decide(
            _annotations([("a", "relabel", "1")]),
            parent,
            strategies={"relabel": "drop"},
            annotator="x",
        )  # type: ignore[dict-item]


def test_a_fix_needs_unique_ids_in_the_parent(parent) -> None:
    twice = pd.concat([parent, parent.iloc[[1]]], ignore_index=True)  # "b" twice
    fix = decide(_annotations([("a", "relabel", "2")]), parent, strategies={}, annotator="x")
    with pytest.raises(DataValidationError, match="ids b repeat"):
        apply_decisions(twice, fix)
    keep = decide(_annotations([("a", "relabel", None)]), parent, strategies={}, annotator="x")
    assert apply_decisions(twice, keep).equals(twice)  # nothing to place: applied as before
