"""Loading, validating, splitting and saving datasets (cartoflow.datasets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartoflow.datasets import (
    ColumnMap,
    Dataset,
    LabelMap,
    dataset_from_frame,
    load_dataset,
    read_table,
    save_dataset,
    stratified_split,
)
from cartoflow.errors import DataValidationError

ROWS = [
    {"id": "a1", "text": "如何学习 Python？", "label": "0"},
    {"id": "a2", "text": "2021 年考研怎么准备？", "label": "1"},
    {"id": "a3", "text": "如何看待 2021 年 618 大促？", "label": "2"},
    {"id": "a4", "text": "为什么天空是蓝色的？", "label": "0"},
    {"id": "a5", "text": "iPhone 13 值得买吗？", "label": "1"},
    {"id": "a6", "text": "今晚的春晚有哪些亮点？", "label": "2"},
]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_of(rows: list[dict[str, object]]) -> str:
    return pd.DataFrame(rows).to_csv(index=False)


# ---------------------------------------------------------------------------- good input


def test_csv_with_name_labels(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", csv_of(ROWS))
    data = load_dataset(path)
    assert list(data.frame.columns) == ["id", "text", "label"]
    assert data.ids == [r["id"] for r in ROWS]
    assert data.texts[0] == "如何学习 Python？"
    assert data.label_map.names == ["0", "1", "2"]
    assert data.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.labels.dtype == np.int64
    assert data.num_classes == 3 and len(data) == 6
    assert data.source == path and data.name == "d"


def test_csv_keeps_ids_as_written_and_strips_labels(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "id,text,label\n007,a, x\n08,b,y \n")
    data = load_dataset(path)
    assert data.ids == ["007", "08"]
    assert data.frame["label"].tolist() == ["x", "y"]


def test_parquet_with_int_labels_and_int_ids(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [10, 11, 12], "text": ["a", "b", "c"], "label": [2, 10, 1]})
    frame.to_parquet(tmp_path / "d.parquet")
    data = load_dataset(tmp_path / "d.parquet")
    assert data.ids == ["10", "11", "12"]
    assert data.frame["label"].tolist() == ["2", "10", "1"]
    assert data.label_map.names == ["1", "2", "10"]  # numeric order, not "1" < "10" < "2"
    assert data.labels.tolist() == [1, 2, 0]


def test_float_labels_from_nullable_columns_read_as_integers(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [1.0, 2.0], "text": ["a", "b"], "label": [0.0, 1.0]})
    frame.to_parquet(tmp_path / "d.parquet")
    data = load_dataset(tmp_path / "d.parquet")
    assert data.ids == ["1", "2"]
    assert data.frame["label"].tolist() == ["0", "1"]


def test_jsonl_with_custom_columns_and_mixed_label_types(tmp_path: Path) -> None:
    records: list[dict[str, object]] = [
        {"qid": 1, "title": "t1", "category": 0, "thread": "g1", "extra": 1.5},
        {"qid": 2, "title": "t2", "category": "0", "thread": "g1", "extra": 2.5},
        {"qid": 3, "title": "t3", "category": 1, "thread": 7, "extra": None},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    columns = ColumnMap(id="qid", text="title", label="category", group="thread")
    data = load_dataset(path, columns=columns)
    assert list(data.frame.columns) == ["id", "text", "label", "group", "extra"]
    assert data.frame["label"].tolist() == ["0", "0", "1"]  # 0 and "0" are one class
    assert data.frame["group"].tolist() == ["g1", "g1", "7"]
    assert data.groups is not None and data.groups.tolist() == ["g1", "g1", "7"]


def test_given_label_map_fixes_the_indices(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "id,text,label\n1,a,b\n2,b,c\n")
    label_map = LabelMap(names=["c", "b", "a"])
    data = load_dataset(path, label_map=label_map)
    assert data.label_map is label_map
    assert data.labels.tolist() == [1, 0]


def test_utf8_bom_and_quoted_multiline_text(tmp_path: Path) -> None:
    text = 'id,text,label\n1,"two\nlines, and a comma",x\n2,b,y\n'
    (tmp_path / "d.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    data = load_dataset(tmp_path / "d.csv")
    assert data.ids == ["1", "2"]
    assert data.texts[0] == "two\nlines, and a comma"


def test_optional_columns_are_used_when_present(tmp_path: Path) -> None:
    rows = [dict(r, group=f"g{i // 2}", true_label=r["label"]) for i, r in enumerate(ROWS)]
    data = load_dataset(write_csv(tmp_path / "d.csv", csv_of(rows)))
    assert list(data.frame.columns) == ["id", "text", "label", "group", "true_label"]
    data = load_dataset(tmp_path / "d.csv", columns=ColumnMap(group=None, true_label=None))
    assert list(data.frame.columns) == ["id", "text", "label"]


def test_unlabeled_pool(tmp_path: Path) -> None:
    rows = [{"id": r["id"], "text": r["text"], "label": None} for r in ROWS]
    pd.DataFrame(rows).to_parquet(tmp_path / "u.parquet")
    data = load_dataset(tmp_path / "u.parquet", columns=ColumnMap(label=None))
    assert list(data.frame.columns) == ["id", "text"]
    assert not data.has_labels and data.num_classes == 0
    with pytest.raises(DataValidationError, match="no `label` column"):
        _ = data.labels


def test_dataset_from_frame_uses_positions() -> None:
    frame = pd.DataFrame(ROWS)
    data = dataset_from_frame(frame)
    assert data.labels.tolist() == [0, 1, 2, 0, 1, 2]
    frame.loc[3, "text"] = " "
    with pytest.raises(DataValidationError, match=r"position 3 \(positions are 0-based"):
        dataset_from_frame(frame, name="mine")


def test_read_table_reads_csv_cells_as_strings(tmp_path: Path) -> None:
    raw = read_table(write_csv(tmp_path / "d.csv", "id,text,label\n007,a,1\n"))
    assert raw["id"].tolist() == ["007"]


# ---------------------------------------------------------------------------- LabelMap


def test_label_map_orders() -> None:
    assert LabelMap.from_labels(["b", "a", "c", "a", None]).names == ["a", "b", "c"]
    assert LabelMap.from_labels([10, 2, "1", 2.0]).names == ["1", "2", "10"]
    assert LabelMap.from_labels(["10", "x", "2"]).names == ["10", "2", "x"]


def test_label_map_rejects_duplicates_and_empty_names() -> None:
    with pytest.raises(ValueError, match="unique"):
        LabelMap(names=["a", "a"])
    with pytest.raises(ValueError, match="non-empty"):
        LabelMap(names=["a", " "])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(min_size=1).filter(lambda s: s.strip() == s and s != ""), min_size=1))
def test_label_map_json_and_codes_round_trip(values: list[str]) -> None:
    label_map = LabelMap.from_labels(values)
    assert LabelMap.from_json(label_map.to_json()) == label_map
    codes = label_map.encode(values)
    assert label_map.decode(codes) == values
    assert np.all(np.diff(label_map.encode(label_map.names)) == 1)


def test_label_map_accepts_a_bare_json_list() -> None:
    assert LabelMap.from_json('["x", "y"]').names == ["x", "y"]


def test_label_map_encode_names_unknown_positions() -> None:
    label_map = LabelMap(names=["0", "1"])
    assert label_map.encode([1, "0", 1.0]).tolist() == [1, 0, 1]
    with pytest.raises(DataValidationError, match=r"positions 1, 3 \(0-based\) hold 7, x"):
        label_map.encode(["0", "7", "1", "x"])
    with pytest.raises(ValueError, match=r"positions 1 hold 2"):
        label_map.decode(np.array([0, 2]))
    with pytest.raises(ValueError, match="one of the classes"):
        label_map.index("9")
    assert label_map.index("1") == 1


# ---------------------------------------------------------------------------- bad input


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"data\.txt.*\.csv.*\.jsonl.*\.parquet"):
        load_dataset(path)


def test_missing_column_lists_available_and_suggests_a_column_map(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "id,title,category\n1,a,x\n2,b,y\n")
    with pytest.raises(DataValidationError) as info:
        load_dataset(path)
    message = str(info.value)
    assert "d.csv" in message and "`text`" in message and "`label`" in message
    assert "['id', 'title', 'category']" in message
    assert "ColumnMap(text='title', label='category')" in message


def test_renamed_optional_column_must_exist(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", csv_of(ROWS))
    with pytest.raises(DataValidationError, match="`qid` \\(for group\\)"):
        load_dataset(path, columns=ColumnMap(group="qid"))


def test_duplicate_ids_name_ids_and_csv_lines(tmp_path: Path) -> None:
    rows = [dict(r) for r in ROWS]
    rows[3]["id"] = "a1"
    rows[5]["id"] = "a2"
    path = write_csv(tmp_path / "dup.csv", csv_of(rows))
    with pytest.raises(DataValidationError) as info:
        load_dataset(path)
    message = str(info.value)
    assert "dup.csv" in message and "column `id`" in message
    assert "id 'a1' on lines 2, 5" in message and "id 'a2' on lines 3, 7" in message
    assert "header is line 1" in message


def test_missing_ids(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["a", None, "c"], "text": ["x", "y", "z"], "label": [0, 1, 0]})
    frame.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataValidationError, match=r"d\.parquet: column `id` is missing.*row 2"):
        load_dataset(tmp_path / "d.parquet")


def test_empty_and_whitespace_text(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", 'id,text,label\n1,a,0\n2,"  ",1\n3,,0\n4,b,1\n')
    with pytest.raises(DataValidationError) as info:
        load_dataset(path)
    message = str(info.value)
    assert "d.csv" in message and "column `text`" in message and "lines 3, 4" in message


def test_rows_of_multiline_records_are_their_first_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", 'id,text,label\n1,"a\nb\nc",0\n2,,1\n')
    with pytest.raises(DataValidationError, match="on line 5 "):
        load_dataset(path)


def test_null_labels_in_jsonl_name_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"id": 1, "text": "a", "label": 0}\n\n'
        '{"id": 2, "text": "b", "label": null}\n'
        '{"id": 3, "text": "c", "label": 1}\n'
        '{"id": 4, "text": "d", "label": " "}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataValidationError) as info:
        load_dataset(path)
    message = str(info.value)
    assert "d.jsonl" in message and "column `label`" in message
    assert "lines 3, 5" in message and "ColumnMap(label=None)" in message


def test_unknown_labels_against_a_label_map(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [1, 2, 3, 4], "text": list("abcd"), "label": [0, 7, 1, 9]})
    frame.to_parquet(tmp_path / "eval.parquet")
    with pytest.raises(DataValidationError) as info:
        load_dataset(tmp_path / "eval.parquet", label_map=LabelMap(names=["0", "1"]))
    message = str(info.value)
    assert "eval.parquet" in message and "column `label`" in message
    assert "7, 9" in message and "rows 2, 4" in message and "['0', '1']" in message


def test_undecodable_bytes_name_line_and_offset(tmp_path: Path) -> None:
    good = "id,text,label\n1,你好,0\n".encode()
    bad = "2,再见,1\n".encode("gbk")
    (tmp_path / "gbk.csv").write_bytes(good + bad + b"3,ok,1\n")
    with pytest.raises(DataValidationError) as info:
        load_dataset(tmp_path / "gbk.csv")
    message = str(info.value)
    assert "gbk.csv" in message and "UTF-8" in message
    assert f"byte offset {len(good) + 2}" in message and "line 3" in message
    assert "iconv" in message


def test_undecodable_bytes_after_a_bom(tmp_path: Path) -> None:
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfid,text,label\n1,\xff,0\n")
    with pytest.raises(DataValidationError, match=r"byte 0xff at byte offset 19 \(line 2, byte 3"):
        load_dataset(tmp_path / "bom.csv")


def test_undecodable_bytes_in_jsonl(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(b'{"id": 1, "text": "\xff", "label": 0}\n')
    with pytest.raises(DataValidationError, match=r"d\.jsonl.*0xff.*line 1"):
        load_dataset(tmp_path / "d.jsonl")


def test_undecodable_bytes_in_a_parquet_binary_column(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [1, 2], "text": [b"ok", b"\xff\xfe"], "label": [0, 1]})
    frame.to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataValidationError, match=r"b\.parquet: column `text`.*UTF-8.*row 2"):
        load_dataset(tmp_path / "b.parquet")


def test_single_class(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "one.csv", "id,text,label\n1,a,x\n2,b,x\n")
    with pytest.raises(DataValidationError, match=r"one\.csv: column `label`.*single class"):
        load_dataset(path)


def test_zero_rows(tmp_path: Path) -> None:
    header_only = write_csv(tmp_path / "h.csv", "id,text,label\n")
    with pytest.raises(DataValidationError, match=r"h\.csv.*no.*only a header"):
        load_dataset(header_only)
    empty = write_csv(tmp_path / "e.jsonl", "\n")
    with pytest.raises(DataValidationError, match=r"e\.jsonl.*at least one data row"):
        load_dataset(empty)
    pd.DataFrame({"id": [], "text": [], "label": []}).to_parquet(tmp_path / "z.parquet")
    with pytest.raises(DataValidationError, match=r"z\.parquet.*at least one data row"):
        load_dataset(tmp_path / "z.parquet")


def test_null_group(tmp_path: Path) -> None:
    rows = [dict(r, group="g") for r in ROWS]
    rows[2]["group"] = ""
    path = write_csv(tmp_path / "g.csv", csv_of(rows))
    with pytest.raises(DataValidationError, match=r"g\.csv: column `group` is missing.*line 4"):
        load_dataset(path)


def test_non_integer_numeric_labels(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [1, 2, 3], "text": list("abc"), "label": [0.0, 1.5, 1.0]})
    frame.to_parquet(tmp_path / "f.parquet")
    with pytest.raises(DataValidationError, match=r"f\.parquet: column `label`.*1\.5.*row 2"):
        load_dataset(tmp_path / "f.parquet")


def test_malformed_csv(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", "id,text,label\n1,a,0\n2,b,c,1\n")
    with pytest.raises(DataValidationError, match=r"m\.csv.*line 3.*quote"):
        load_dataset(path)


def test_invalid_json_lines(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "j.jsonl", '{"id": 1, "text": "a", "label": 0}\n{"id": 2,\n')
    with pytest.raises(DataValidationError, match=r"j\.jsonl.*line 2 .*not valid JSON"):
        load_dataset(path)
    path = write_csv(tmp_path / "k.jsonl", '{"id": 1, "text": "a", "label": 0}\n[1, 2]\n')
    with pytest.raises(DataValidationError, match=r"k\.jsonl.*line 2 hold another JSON"):
        load_dataset(path)


def test_unreadable_parquet(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataValidationError, match=r"x\.parquet: expected a Parquet file"):
        load_dataset(tmp_path / "x.parquet")


# ---------------------------------------------------------------------------- splitting


def labelled(labels: list[int], groups: list[str] | None = None) -> Dataset:
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(len(labels))],
            "text": [f"t{i}" for i in range(len(labels))],
            "label": [str(x) for x in labels],
        }
    )
    if groups is not None:
        frame["group"] = groups
    return Dataset(frame=frame, label_map=LabelMap.from_labels(frame["label"]))


def test_split_is_stratified_seeded_and_ordered() -> None:
    data = labelled([0] * 50 + [1] * 30 + [2] * 20)
    train, evaluation = stratified_split(data, eval_fraction=0.2, seed=3)
    assert evaluation.frame["label"].value_counts().to_dict() == {"0": 10, "1": 6, "2": 4}
    assert sorted(train.ids + evaluation.ids) == sorted(data.ids)
    assert train.frame.index.tolist() == list(range(len(train)))
    positions = [int(i[1:]) for i in evaluation.ids]
    assert positions == sorted(positions)
    again = stratified_split(data, eval_fraction=0.2, seed=3)[1]
    assert again.ids == evaluation.ids
    assert stratified_split(data, eval_fraction=0.2, seed=4)[1].ids != evaluation.ids
    assert train.label_map is data.label_map


def test_split_keeps_rare_classes_in_both_parts_when_possible() -> None:
    data = labelled([0] * 40 + [1] * 2 + [2])
    train, evaluation = stratified_split(data, eval_fraction=0.1, seed=0)
    assert set(evaluation.frame["label"]) == {"0", "1"}
    assert set(train.frame["label"]) == {"0", "1", "2"}


def test_split_keeps_groups_whole() -> None:
    groups = [f"g{i // 3}" for i in range(60)]
    data = labelled([(i // 3) % 2 for i in range(60)], groups)
    train, evaluation = stratified_split(data, eval_fraction=0.25, seed=1)
    assert not set(train.frame["group"]) & set(evaluation.frame["group"])
    # 10 groups per class; round(0.25 * 10) = 3 (half rounds up) whole groups per class
    assert evaluation.frame["group"].nunique() == 6 and len(evaluation) == 18
    rows_apart = stratified_split(data, eval_fraction=0.25, seed=1, by_group=False)[1]
    assert len(rows_apart) == 16  # round(0.25 * 30) = 8 rows per class


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match=r"eval_fraction in \(0, 1\)"):
        stratified_split(labelled([0, 1]), eval_fraction=1.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=2, max_size=80),
    st.floats(0.05, 0.95),
    st.integers(0, 2**16),
)
def test_split_partitions_and_covers_classes(labels: list[int], fraction: float, seed: int) -> None:
    data = labelled(labels)
    train, evaluation = stratified_split(data, eval_fraction=fraction, seed=seed)
    assert sorted(train.ids + evaluation.ids) == sorted(data.ids)
    counts = pd.Series(labels).value_counts()
    for cls, count in counts.items():
        in_eval = int((evaluation.frame["label"] == str(cls)).sum())
        if count >= 2:
            assert 1 <= in_eval <= count - 1
        else:
            assert in_eval == 0


# ---------------------------------------------------------------------------- saving


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_save_round_trips(tmp_path: Path, suffix: str) -> None:
    data = dataset_from_frame(pd.DataFrame(ROWS))
    path = save_dataset(data, tmp_path / "sub" / f"out{suffix}")
    assert path.exists() and [p.name for p in path.parent.iterdir()] == [path.name]
    again = load_dataset(path)
    pd.testing.assert_frame_equal(again.frame, data.frame)


def test_save_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.csv.*\.jsonl.*\.parquet"):
        save_dataset(pd.DataFrame(ROWS), tmp_path / "out.xlsx")


def test_failed_save_leaves_the_old_file(tmp_path: Path) -> None:
    path = save_dataset(pd.DataFrame(ROWS), tmp_path / "out.parquet")
    before = path.read_bytes()
    unwritable = pd.DataFrame({"id": [1], "text": [object()], "label": [0]})
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises, nothing is replaced
        save_dataset(unwritable, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
