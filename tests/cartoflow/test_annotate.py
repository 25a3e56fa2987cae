"""Annotation batches, the simulated annotator and reading answers (cartoflow.annotate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cartoflow.annotate import (
    BATCH_COLUMNS,
    REMOVE,
    SKIP,
    SimulatedAnnotator,
    annotation_coverage,
    annotations_from_mapping,
    export_batch,
    read_annotations,
    read_batch,
)
from cartoflow.datasets import Dataset, LabelMap, dataset_from_frame
from cartoflow.errors import DataValidationError

LABELS = LabelMap(names=["0", "1", "2"])


@pytest.fixture
def dataset() -> Dataset:
    frame = pd.DataFrame(
        {
            "id": [f"t{i}" for i in range(8)],
            "text": [
                "如何学习 Python？",
                "考研怎么准备？",
                "如何看待 618？",
                "a",
                "b",
                "c",
                "d",
                "e",
            ],
            "label": ["0", "1", "2", "0", "1", "2", "0", "1"],
            "group": [f"g{i // 2}" for i in range(8)],
            "true_label": ["0", "1", "1", "0", "2", "2", "0", "1"],
        }
    )
    return dataset_from_frame(frame)


@pytest.fixture
def pools() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample": [4, 2, 7],
            "id": ["t4", "t2", "t7"],
            "label": [1, 2, 1],
            "pool": ["relabel", "relabel", "hard"],
            "rule": ["confidence<0.3", "pattern:view", "0.35<confidence<0.5"],
            "suggested_label": np.array([2, 1, 1], dtype=np.int64),
        }
    )


@pytest.fixture
def batch(tmp_path: Path, dataset: Dataset, pools: pd.DataFrame) -> pd.DataFrame:
    _, parquet_path = export_batch(pools, dataset, tmp_path / "batch")
    return pd.read_parquet(parquet_path)


# ---------------------------------------------------------------------------- export


def test_export_batch_writes_csv_and_parquet(
    tmp_path: Path, dataset: Dataset, pools: pd.DataFrame
) -> None:
    csv_path, parquet_path = export_batch(pools, dataset, tmp_path / "runs" / "batch")
    assert csv_path.name == "batch.csv" and parquet_path.name == "batch.parquet"
    assert sorted(p.name for p in csv_path.parent.iterdir()) == ["batch.csv", "batch.parquet"]
    from_parquet = pd.read_parquet(parquet_path)
    expected = [*BATCH_COLUMNS[:-1], "group", "new_label"]
    assert list(from_parquet.columns) == expected
    assert from_parquet["id"].tolist() == ["t4", "t2", "t7"]  # pool order kept
    assert from_parquet["text"].tolist() == ["b", "如何看待 618？", "e"]
    assert from_parquet["label"].tolist() == ["1", "2", "1"]  # the dataset's current label
    assert from_parquet["suggested_label"].tolist() == ["2", "1", "1"]  # decoded
    assert (from_parquet["new_label"] == "").all()
    assert "true_label" not in from_parquet.columns  # never show annotators the hidden truth
    from_csv = read_batch(csv_path)
    assert csv_path.read_text(encoding="utf-8").count("如何看待 618？") == 1
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)


def test_export_batch_decodes_with_named_classes(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"], "label": ["cat", "dog"]})
    pools = pd.DataFrame({"sample": [1], "pool": ["hard"], "suggested_label": [0]})
    _, path = export_batch(pools, frame, tmp_path / "b", label_map=LabelMap(names=["cat", "dog"]))
    batch = pd.read_parquet(path)
    assert batch[["id", "label", "suggested_label", "rule"]].values.tolist() == [
        ["b", "dog", "cat", ""]
    ]
    # a bare frame without a label map decodes with the map of its own labels
    _, path = export_batch(pools, frame, tmp_path / "c")
    assert pd.read_parquet(path)["suggested_label"].tolist() == ["cat"]


def test_export_empty_batch(tmp_path: Path, dataset: Dataset, pools: pd.DataFrame) -> None:
    csv_path, parquet_path = export_batch(pools.iloc[:0], dataset, tmp_path / "b")
    assert len(pd.read_parquet(parquet_path)) == 0
    assert read_batch(csv_path).columns.tolist()[-1] == "new_label"


def test_export_batch_bad_pools(tmp_path: Path, dataset: Dataset, pools: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match=r"ids tX, tY are not"):
        export_batch(pools.assign(id=["tX", "t2", "tY"]), dataset, tmp_path / "b")
    with pytest.raises(DataValidationError, match=r"ids t4 are selected more than once"):
        export_batch(pools.assign(id=["t4", "t2", "t4"]), dataset, tmp_path / "b")
    with pytest.raises(DataValidationError, match=r"rows 1 hold 99"):
        export_batch(pools.drop(columns="id").assign(sample=[0, 99, 1]), dataset, tmp_path / "b")
    with pytest.raises(DataValidationError, match=r"`pool` column and an `id` or `sample`"):
        export_batch(pools.drop(columns="pool"), dataset, tmp_path / "b")
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------- simulated


def big_batch(n: int = 500) -> tuple[pd.DataFrame, pd.Series]:
    ids = [f"s{i}" for i in range(n)]
    truth = pd.Series(np.array(["0", "1", "2"])[np.arange(n) % 3], index=ids)
    batch = pd.DataFrame({"id": ids, "text": ids, "new_label": ""})
    return batch, truth


def test_annotator_without_errors_answers_the_truth(batch: pd.DataFrame, dataset: Dataset) -> None:
    filled = SimulatedAnnotator(label_names=LABELS.names).annotate(batch, dataset.frame)
    assert filled["new_label"].tolist() == ["2", "1", "1"]
    assert filled.drop(columns="new_label").equals(batch.drop(columns="new_label"))


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.25, 1.0])
def test_annotator_error_rate_is_exact(rate: float) -> None:
    batch, truth = big_batch()
    annotator = SimulatedAnnotator(error_rate=rate, seed=1, label_names=LABELS.names)
    answers = annotator.answers(batch, truth)
    wrong = answers["new_label"].to_numpy() != truth.to_numpy()
    assert wrong.sum() == round(rate * 500)
    assert (wrong == answers["wrong"].to_numpy()).all()
    assert set(answers["new_label"]) <= set(LABELS.names)


def test_annotator_is_deterministic_per_seed() -> None:
    batch, truth = big_batch()
    one = SimulatedAnnotator(error_rate=0.2, seed=1).annotate(batch, truth)
    two = SimulatedAnnotator(error_rate=0.2, seed=1).annotate(batch, truth)
    other = SimulatedAnnotator(error_rate=0.2, seed=2).annotate(batch, truth)
    assert one.equals(two)
    assert not one["new_label"].equals(other["new_label"])


def test_annotator_wrong_answers_are_spread_over_other_classes() -> None:
    batch, truth = big_batch(3000)
    answers = SimulatedAnnotator(error_rate=0.5, seed=0).answers(batch, truth)
    wrong = answers[answers["wrong"]]
    pairs = pd.crosstab(truth[wrong["id"]].to_numpy(), wrong["new_label"].to_numpy())
    assert (np.diag(pairs.reindex(index=["0", "1", "2"], columns=["0", "1", "2"])) == 0).all()
    assert pairs.to_numpy().sum() == 1500 and (pairs.to_numpy()[~np.eye(3, dtype=bool)] > 150).all()


def test_annotator_reads_integer_truth_from_a_named_column() -> None:
    batch = pd.DataFrame({"id": [1, 2]})
    truth = pd.DataFrame({"id": ["1", "2"], "gold": [2, 0]})
    filled = SimulatedAnnotator(column="gold").annotate(batch, truth)
    assert filled["new_label"].tolist() == ["2", "0"]


def test_annotator_bad_truth(batch: pd.DataFrame, dataset: Dataset) -> None:
    annotator = SimulatedAnnotator(label_names=LABELS.names)
    with pytest.raises(DataValidationError, match=r"batch ids t7 are not in the truth"):
        annotator.annotate(batch, dataset.frame.iloc[:5])
    no_truth = dataset.frame.assign(true_label=[None] * 8)
    with pytest.raises(DataValidationError, match=r"empty for batch ids t4, t2, t7"):
        annotator.annotate(batch, no_truth)
    with pytest.raises(DataValidationError, match=r"hold one of \['0', '1', '2'\].*t4.*hold 9"):
        annotator.annotate(batch, dataset.frame.assign(true_label="9"))
    with pytest.raises(DataValidationError, match=r"`id` and `gold` columns"):
        SimulatedAnnotator(column="gold").annotate(batch, dataset.frame)
    twice = pd.Series(["0", "1"], index=["t4", "t4"])
    with pytest.raises(DataValidationError, match="ids t4 appear twice"):
        annotator.annotate(batch, twice)
    with pytest.raises(ValueError):
        SimulatedAnnotator(error_rate=1.5)


# ---------------------------------------------------------------------------- reading


def fill_csv(path: Path, batch: pd.DataFrame, labels: list[str]) -> Path:
    batch.assign(new_label=labels).to_csv(path, index=False, encoding="utf-8")
    return path


def test_read_annotations_round_trip(tmp_path: Path, batch: pd.DataFrame) -> None:
    path = fill_csv(tmp_path / "filled.csv", batch, ["2", "<REMOVE>", ""])
    answers = read_annotations(path, batch=batch, label_map=LABELS)
    assert answers.columns.tolist() == ["id", "new_label"]
    assert answers.values.tolist() == [["t4", "2"], ["t2", REMOVE], ["t7", SKIP]]
    assert answers.attrs["coverage"] == {
        "batch": 3,
        "answered": 3,
        "labelled": 1,
        "changed": 1,
        "confirmed": 0,
        "removed": 1,
        "skipped": 1,
        "missing": 0,
    }


def test_read_partial_parquet_annotations_and_batch_path(
    tmp_path: Path, batch: pd.DataFrame
) -> None:
    batch.to_parquet(tmp_path / "batch.parquet")
    pd.DataFrame({"id": ["t7"], "new_label": ["1"]}).to_parquet(tmp_path / "a.parquet")
    answers = read_annotations(
        tmp_path / "a.parquet", batch=tmp_path / "batch.parquet", label_map=LABELS
    )
    assert answers.values.tolist() == [["t7", "1"]]
    coverage = annotation_coverage(answers, batch)
    assert coverage["confirmed"] == 1 and coverage["missing"] == 2


def test_unknown_ids_are_named_with_lines(tmp_path: Path, batch: pd.DataFrame) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id,new_label\nt4,1\nzz,2\nt2,0\nyy,\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        read_annotations(path, batch=batch, label_map=LABELS)
    message = str(info.value)
    assert "f.csv" in message and "ids zz, yy" in message and "lines 3, 5" in message
    assert "not in the batch" in message


def test_duplicated_ids_are_rejected(tmp_path: Path, batch: pd.DataFrame) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id,new_label\nt4,1\nt2,0\nt4,2\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"f\.csv.*ids t4 appear on lines 2, 4"):
        read_annotations(path, batch=batch, label_map=LABELS)


def test_labels_outside_the_label_set(tmp_path: Path, batch: pd.DataFrame) -> None:
    path = fill_csv(tmp_path / "f.csv", batch, ["1", "seven", "remove"])
    with pytest.raises(DataValidationError) as info:
        read_annotations(path, batch=batch, label_map=LABELS)
    message = str(info.value)
    assert "column `new_label`" in message and "remove, seven" in message
    assert "lines 3, 4" in message and "'<remove>'" in message


def test_missing_columns_and_ids(tmp_path: Path, batch: pd.DataFrame) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id,label\nt4,1\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"f\.csv: expected the columns \['new_label'\]"):
        read_annotations(path, batch=batch, label_map=LABELS)
    path.write_text("id,new_label\nt4,1\n,2\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"column `id` is empty on line 3"):
        read_annotations(path, batch=batch, label_map=LABELS)


def test_undecodable_annotation_file(tmp_path: Path, batch: pd.DataFrame) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"id,new_label\nt4," + "二".encode("gbk") + b"\n")
    with pytest.raises(DataValidationError, match=r"f\.csv.*UTF-8.*line 2"):
        read_annotations(path, batch=batch, label_map=LABELS)


def test_annotations_from_mapping(batch: pd.DataFrame) -> None:
    answers = annotations_from_mapping({"t7": "0", "t4": " "}, batch, label_map=LABELS)
    assert answers.values.tolist() == [["t7", "0"], ["t4", SKIP]]
    assert answers.attrs["coverage"]["missing"] == 1
    with pytest.raises(DataValidationError, match=r"inline labels: ids nope .*not in the batch"):
        annotations_from_mapping({"nope": "0"}, batch, label_map=LABELS)
    with pytest.raises(DataValidationError, match=r"inline labels: column `new_label` holds x"):
        annotations_from_mapping({"t7": "x"}, batch, label_map=LABELS)
