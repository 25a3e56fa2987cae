from pathlib import Path

import pandas as pd
import pytest

from cartoflow.catalog import Catalog, VersionRecord


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog.sqlite")


def _record(version: int, parent: int | None = None, promoted: bool = False) -> VersionRecord:
    return VersionRecord(
        dataset="demo",
        version=version,
        hash=f"h{version}",
        parent=parent,
        rows=10,
        file=f"datasets/demo/v{version:04d}.parquet",
        promoted=promoted,
    )


def test_versions_are_numbered_found_by_hash_and_promoted(catalog: Catalog) -> None:
    assert catalog.next_version_number("demo") == 1
    catalog.add_version(_record(1, promoted=True))
    catalog.add_version(_record(2, parent=1))
    assert catalog.next_version_number("demo") == 3
    assert catalog.find_version("demo", "h2") == _record(2, parent=1)
    assert catalog.latest_version("demo") == _record(2, parent=1)
    assert catalog.current_version("demo") == _record(1, promoted=True)
    catalog.promote("demo", 2)
    current = catalog.current_version("demo")
    assert current is not None and current.version == 2


def test_a_version_number_is_never_reused(catalog: Catalog) -> None:
    catalog.add_version(_record(1))
    with pytest.raises(Exception, match="UNIQUE"):
        catalog.add_version(_record(1))


def test_unknown_version_names_the_known_ones(catalog: Catalog) -> None:
    catalog.add_version(_record(1))
    with pytest.raises(KeyError, match=r"no version 5; it has \[1\]"):
        catalog.get_version("demo", 5)


def test_rounds_move_forward_and_merge_timings(catalog: Catalog) -> None:
    catalog.start_round("r1", dataset="demo", config={"epochs": 3})
    catalog.update_round("r1", timings={"train": 1.5})
    catalog.update_round("r1", state="completed", version_out=2, timings={"metrics": 0.5})
    row = catalog.get_round("r1")
    assert row["state"] == "completed"
    assert row["version_out"] == 2
    assert row["timings"] == {"train": 1.5, "metrics": 0.5}
    assert row["config"] == {"epochs": 3}
    # a resumed round keeps its state
    catalog.start_round("r1", dataset="demo", config={"epochs": 3})
    assert catalog.get_round("r1")["state"] == "completed"


def test_round_state_is_checked(catalog: Catalog) -> None:
    catalog.start_round("r1", dataset="demo", config={})
    with pytest.raises(ValueError, match="round state"):
        catalog.update_round("r1", state="done-ish")
    with pytest.raises(KeyError, match="No round 'r2'"):
        catalog.update_round("r2", state="failed")


def test_label_decisions_are_kept_and_never_rewritten(catalog: Catalog) -> None:
    decisions = pd.DataFrame(
        {
            "sample_id": ["a", "b"],
            "old_label": ["0", "1"],
            "new_label": ["1", pd.NA],
            "action": ["fix", "skip"],
            "annotator": ["ana", "ana"],
            "pool": ["relabel", "relabel"],
            "reason": ["wrong", "unsure"],
        }
    )
    assert catalog.record_decisions("r1", decisions) == 2
    stored = catalog.decisions("r1").set_index("sample_id")
    assert stored.loc["a", "new_label"] == "1"
    assert pd.isna(stored.loc["b", "new_label"])
    with pytest.raises(Exception, match="UNIQUE"):
        catalog.record_decisions("r1", decisions.head(1))
    assert len(catalog.decisions("r1")) == 2


def test_decisions_need_every_column(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match=r"\['reason'\] are missing"):
        catalog.record_decisions(
            "r1",
            pd.DataFrame(
                columns=["sample_id", "old_label", "new_label", "action", "annotator", "pool"]
            ),
        )
