"""Load and validate user datasets (CSV, Parquet, JSONL) into one normalised frame.

Validation happens once, here at the boundary. Every problem raises
:class:`~cartoflow.errors.DataValidationError` with a message that names the file, the column,
the rows and the fix. Rows are numbered as the user sees them:

* CSV: the line number in the file, the header being line 1, so data row ``i`` (0-based) is
  line ``i + 2`` unless a quoted field spans several lines (then the record's first line).
* JSONL: the line number in the file, so data row ``i`` is line ``i + 1`` (blank lines count).
* Parquet: the 1-based row number.
* An in-memory frame (:func:`dataset_from_frame`): the 0-based position, as in ``frame.iloc``.

The normalised frame has the columns ``id`` (str), ``text`` (str), ``label`` (str: the class
name; integer labels become their decimal string, so ``2`` and ``"2"`` are the same class),
optional ``group`` (str) and ``true_label`` (str, simulation only), then any other columns of
the file unchanged.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cartoflow.errors import DataValidationError, describe_items

__all__ = [
    "ColumnMap",
    "Dataset",
    "LabelMap",
    "dataset_from_frame",
    "id_keys",
    "load_dataset",
    "objects",
    "pick",
    "read_table",
    "save_dataset",
    "stratified_split",
]


def id_keys(values: pd.Series | Collection[Any]) -> pd.Index:
    """Ids as an object Index of ``str`` (None where missing): comparable for any id dtype.

    Object dtype on purpose: ``isin`` on pandas' Arrow-backed strings loops in Python, about
    30x slower at 20k ids than the object hash table.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    return pd.Index(objects(series.astype("string")), dtype=object)


def objects(values: pd.Series) -> np.ndarray:
    """Values as an object array, missing entries (NaN, NA) as None (which GX skips)."""
    out = values.astype(object).to_numpy(copy=True)
    out[values.isna().to_numpy()] = None
    return out


def pick(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``values[positions]`` as objects, None where a position is -1 (``get_indexer`` miss)."""
    out = np.full(len(positions), None, dtype=object)
    found = positions >= 0
    out[found] = values[positions[found]]
    return out


# Column names a file often uses instead of ours; used only to suggest a ColumnMap.
_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("uid", "qid", "idx", "index", "sample_id", "question_id", "guid", "key"),
    "text": ("title", "sentence", "content", "question", "body", "query", "document", "review"),
    "label": ("labels", "class", "category", "target", "y", "tag", "gold", "annotation"),
    "group": ("group_id", "cluster", "qid", "question_id", "thread"),
    "true_label": ("gold_label", "clean_label", "truth"),
}


class ColumnMap(BaseModel):
    """Which file column holds each field of the dataset contract.

    ``label=None`` loads an unlabeled pool. ``group`` and ``true_label`` are optional: when left
    at their default names they are used if the file has them; a non-default name that the file
    lacks is an error (a misspelt group column should not silently switch grouping off).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        default="id", description="Column with a unique sample id (any type; becomes str)."
    )
    text: str = Field(default="text", description="Column with the non-empty input text.")
    label: str | None = Field(
        default="label",
        description="Column with the class (name or integer); empty for unlabeled data.",
    )
    group: str | None = Field(
        default="group",
        description="Optional column grouping near-duplicates (e.g. a question id).",
    )
    true_label: str | None = Field(
        default="true_label", description="Optional hidden clean label (simulations only)."
    )

    def active(self) -> dict[str, str]:
        """Normalised name -> file column, for the fields that are not switched off."""
        mapping = {
            "id": self.id,
            "text": self.text,
            "label": self.label,
            "group": self.group,
            "true_label": self.true_label,
        }
        return {key: value for key, value in mapping.items() if value is not None}


def _is_int_name(name: str) -> bool:
    text = name.strip()
    return bool(text) and (text.lstrip("+-").isdigit())


class LabelMap(BaseModel):
    """A stable class name <-> index map; index ``i`` is ``names[i]``.

    Built once per dataset (:meth:`from_labels`) and stored as JSON beside it, so indices mean
    the same class in every round, every model and every dynamics file.
    """

    model_config = ConfigDict(frozen=True)

    names: list[str] = Field(description="Class names; a class's index is its position.")

    @field_validator("names")
    @classmethod
    def _unique_names(cls, names: list[str]) -> list[str]:
        empty = [i for i, name in enumerate(names) if not name.strip()]
        if empty:
            raise ValueError(f"Expected non-empty class names, but positions {empty} are empty.")
        counts = pd.Series(names, dtype=object).value_counts()
        repeated = sorted(str(name) for name in counts.index[counts.to_numpy() > 1])
        if repeated:
            raise ValueError(f"Expected unique class names, but {repeated} appear twice or more.")
        return names

    @classmethod
    def from_labels(cls, values: Iterable[Any]) -> LabelMap:
        """The map of the distinct labels in ``values``, in a stable order.

        Integer labels (ints, or strings such as ``"10"``) sort numerically, so ``"2"`` comes
        before ``"10"`` and class ``k`` of an integer-labelled dataset gets index ``k`` when the
        labels are ``0..C-1``; any other names sort lexicographically. Nulls are ignored.
        """
        names = sorted({_label_name(v) for v in values if not _is_null(v)})
        if names and all(_is_int_name(n) for n in names):
            names.sort(key=lambda n: int(n))
        return cls(names=names)

    @property
    def num_classes(self) -> int:
        """How many classes the map holds."""
        return len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """The index of one class name; ``ValueError`` listing the known names if unknown."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(
                f"Expected one of the classes {self.names}, but got {name!r}."
            ) from None

    def to_json(self) -> str:
        """``{"names": [...]}`` as UTF-8-friendly JSON text (class names are kept readable)."""
        return json.dumps({"names": self.names}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> LabelMap:
        """Read what :meth:`to_json` wrote (a bare JSON list of names is accepted too)."""
        payload = json.loads(text)
        if isinstance(payload, list):
            payload = {"names": payload}
        return cls.model_validate(payload)

    def encode(self, values: Iterable[Any], *, source: str = "labels") -> np.ndarray:
        """Class indices of ``values`` (names, or integers that are names), shape ``(N,)`` int64.

        Raises:
            DataValidationError: a value is null or not a known class; names the 0-based
                positions and the values.
        """
        series = pd.Series(list(values) if not isinstance(values, pd.Series) else values)
        series = series.reset_index(drop=True)
        try:
            names = _to_names(series)
        except (ValueError, UnicodeDecodeError):
            names = pd.Series([str(v) for v in series.tolist()], dtype="str")
        codes = pd.Index(self.names).get_indexer(pd.Index(names.to_numpy(dtype=object)))
        bad = np.flatnonzero(codes < 0)
        if bad.size:
            shown = sorted({str(v) for v in series.iloc[bad]})
            raise DataValidationError(
                f"{source}: expected class names among {self.names}, but positions "
                f"{describe_items(bad.tolist())} (0-based) hold {describe_items(shown)}. "
                "Fix: correct those labels or build the LabelMap from all classes."
            )
        return codes.astype(np.int64)

    def decode(self, indices: Iterable[int] | np.ndarray) -> list[str]:
        """Class names of ``indices`` (shape ``(N,)``); ``ValueError`` naming bad positions."""
        array = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        if array.size == 0:
            return []
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"Expected integer class indices, but got dtype {array.dtype}.")
        bad = np.flatnonzero((array < 0) | (array >= len(self.names)))
        if bad.size:
            raise ValueError(
                f"Expected class indices in [0, {len(self.names)}), but positions "
                f"{describe_items(bad.tolist())} hold {describe_items(array[bad].tolist())}."
            )
        table = np.asarray(self.names, dtype=object)
        return [str(name) for name in table[array]]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated dataset: the normalised frame plus its label map.

    Attributes:
        frame: columns ``id``, ``text``, ``label`` (class name; absent for an unlabeled pool),
            optional ``group`` and ``true_label``, then any extra columns of the source.
        label_map: the class name <-> index map the labels are encoded with.
        source: the file it came from, if any.
        name: a short name (defaults to the file stem).
    """

    frame: pd.DataFrame
    label_map: LabelMap
    source: Path | None = None
    name: str | None = None

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def has_labels(self) -> bool:
        """Whether the frame has a ``label`` column (an unlabeled pool has none)."""
        return "label" in self.frame.columns

    @property
    def labels(self) -> np.ndarray:
        """Class indices under :attr:`label_map`, shape ``(N,)`` int64."""
        if not self.has_labels:
            raise DataValidationError(
                f"{self._where}: has no `label` column (it was loaded as an unlabeled pool)."
            )
        return self.label_map.encode(self.frame["label"], source=self._where)

    @property
    def texts(self) -> list[str]:
        """The texts, in row order."""
        return [str(t) for t in self.frame["text"].tolist()]

    @property
    def ids(self) -> list[str]:
        """The sample ids, in row order."""
        return [str(i) for i in self.frame["id"].tolist()]

    @property
    def groups(self) -> np.ndarray | None:
        """The group of each row, shape ``(N,)`` object, or ``None`` without a group column."""
        if "group" not in self.frame.columns:
            return None
        return self.frame["group"].to_numpy(dtype=object)

    @property
    def num_classes(self) -> int:
        """Number of classes in the label map (not only those present in this frame)."""
        return self.label_map.num_classes

    def subset(self, positions: np.ndarray | Sequence[int]) -> Dataset:
        """The rows at the 0-based ``positions``, same label map, index reset."""
        frame = self.frame.iloc[np.asarray(positions, dtype=np.int64)].reset_index(drop=True)
        return Dataset(frame=frame, label_map=self.label_map, source=self.source, name=self.name)

    @property
    def _where(self) -> str:
        return str(self.source) if self.source is not None else (self.name or "dataset")


# --------------------------------------------------------------------------------------------
# Reading: suffix -> reader. Each returns the raw frame and how to number its rows.


@dataclass
class _Rows:
    """Turns 0-based data-row positions into the row numbers the user sees in the source."""

    source: str
    kind: Literal["csv", "jsonl", "parquet", "frame"]
    csv_text: str | None = None
    line_numbers: np.ndarray | None = None
    num_rows: int | None = None

    def numbers(self, positions: np.ndarray | Sequence[int]) -> list[int]:
        pos = np.asarray(positions, dtype=np.int64)
        if self.kind == "frame":
            return [int(p) for p in pos]
        if self.kind == "parquet":
            return [int(p) + 1 for p in pos]
        lines = self._lines()
        if lines is not None and (pos.size == 0 or int(pos.max()) < lines.size):
            return [int(line) for line in lines[pos]]
        offset = 2 if self.kind == "csv" else 1
        return [int(p) + offset for p in pos]

    def describe(self, positions: np.ndarray | Sequence[int]) -> str:
        """``"lines 3, 7 (and 2 more)"``, with the numbering convention once at the end."""
        numbers = self.numbers(positions)
        noun = {"csv": "line", "jsonl": "line", "parquet": "row", "frame": "position"}[self.kind]
        plural = noun if len(numbers) == 1 else f"{noun}s"
        return f"{plural} {describe_items(numbers)}"

    @property
    def convention(self) -> str:
        return {
            "csv": "line numbers are file lines; the header is line 1",
            "jsonl": "line numbers are file lines, counting from 1",
            "parquet": "rows are numbered from 1",
            "frame": "positions are 0-based, as in frame.iloc",
        }[self.kind]

    def _lines(self) -> np.ndarray | None:
        if self.line_numbers is None and self.kind == "csv" and self.csv_text is not None:
            # Computed only on an error path: a quoted field may span lines.
            self.line_numbers = _csv_record_lines(self.csv_text)
        if self.line_numbers is None or self.line_numbers.size != self.num_rows:
            return None  # the file did not parse the way we count it: fall back to i + 2
        return self.line_numbers


def _csv_record_lines(text: str) -> np.ndarray:
    """First file line of every CSV data record, skipping blank lines like pandas does."""
    reader = csv.reader(io.StringIO(text, newline=""))
    starts: list[int] = []
    previous = 0
    for record in reader:
        start = previous + 1
        previous = reader.line_num
        if record:
            starts.append(start)
    return np.asarray(starts[1:], dtype=np.int64)  # drop the header


def _decode_utf8(path: Path, data: bytes) -> str:
    """Decode strictly as UTF-8 (a BOM is allowed); name every undecodable line otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        bad_lines: list[int] = []
        for number, line in enumerate(data.split(b"\n"), start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad_lines.append(number)
        line_no = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        noun = "line" if len(bad_lines) == 1 else "lines"
        raise DataValidationError(
            f"{path}: expected UTF-8 text, but byte 0x{data[offset]:02x} at byte offset "
            f"{offset} (line {line_no}, byte {column} of that line) is not valid UTF-8; "
            f"undecodable bytes are on {noun} {describe_items(bad_lines)}. Fix: re-save the "
            f"file as UTF-8, e.g. `iconv -f GBK -t UTF-8 {path.name} > fixed{path.suffix}` "
            "if it is GBK-encoded Chinese text."
        ) from None


def _read_csv(path: Path) -> tuple[pd.DataFrame, _Rows]:
    text = _decode_utf8(path, path.read_bytes())
    rows = _Rows(str(path), "csv", csv_text=text)
    if not text.strip():
        return pd.DataFrame(), rows
    try:
        # Every cell as a string: ids such as "007" keep their zeros, nothing becomes NaN.
        frame = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, engine="c"
        )
    except pd.errors.ParserError as exc:
        raise DataValidationError(
            f"{path}: expected a CSV file with the same number of fields on every line, but "
            f"the parser said: {str(exc).strip()}. Fix: quote text fields that contain commas, "
            'quotes or line breaks (a quote inside a quoted field is written "").'
        ) from None
    rows.num_rows = len(frame)
    return frame, rows


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, _Rows]:
    text = _decode_utf8(path, path.read_bytes())
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    not_objects: list[int] = []
    invalid: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            invalid.append((number, exc.msg))
            continue
        if not isinstance(value, dict):
            not_objects.append(number)
            continue
        records.append(value)
        numbers.append(number)
    if invalid:
        lines = [n for n, _ in invalid]
        noun = "line" if len(lines) == 1 else "lines"
        raise DataValidationError(
            f"{path}: expected one JSON object per line, but {noun} {describe_items(lines)} "
            f"are not valid JSON (line {invalid[0][0]}: {invalid[0][1]}). Fix: write each record "
            "as one JSON object on its own line (JSON Lines)."
        )
    if not_objects:
        noun = "line" if len(not_objects) == 1 else "lines"
        raise DataValidationError(
            f"{path}: expected one JSON object per line, but {noun} "
            f"{describe_items(not_objects)} hold another JSON value. Fix: write each record as "
            '{"id": ..., "text": ..., "label": ...}.'
        )
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    line_numbers = np.asarray(numbers, dtype=np.int64)
    return frame, _Rows(str(path), "jsonl", line_numbers=line_numbers, num_rows=len(frame))


def _read_parquet(path: Path) -> tuple[pd.DataFrame, _Rows]:
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DataValidationError(
            f"{path}: expected a Parquet file, but it cannot be read: {exc}. Fix: re-export "
            "it with pandas.DataFrame.to_parquet or pyarrow.parquet.write_table."
        ) from None
    return frame.reset_index(drop=True), _Rows(str(path), "parquet")


_READERS: dict[str, Callable[[Path], tuple[pd.DataFrame, _Rows]]] = {
    ".csv": _read_csv,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".parquet": _read_parquet,
    ".pq": _read_parquet,
}


def _reader(path: Path) -> Callable[[Path], tuple[pd.DataFrame, _Rows]]:
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataValidationError(
            f"{path}: expected one of the suffixes {sorted(_READERS)}, but got "
            f"{path.suffix or 'no suffix'!r}. Fix: save the data as CSV, Parquet or JSONL "
            "(or rename the file if its content is one of those)."
        )
    return reader


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV, Parquet or JSONL file as is (CSV cells as strings), after a strict UTF-8 check.

    Raises:
        DataValidationError: unknown suffix, undecodable bytes, or a malformed file.
    """
    resolved = Path(path)
    return _reader(resolved)(resolved)[0]


# --------------------------------------------------------------------------------------------
# Normalising and validating.


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and np.isnan(value)


def _label_name(value: Any) -> str:
    """The class name of one non-null label value: integers (also 2.0) as decimal strings."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if float(value).is_integer():
            return str(int(value))
        raise ValueError(f"non-integer number {value!r}")
    return str(value).strip()


def _to_names(values: pd.Series) -> pd.Series:
    """Label values -> class-name strings (NaN where null); ValueError for non-integer floats.

    Vectorised for the common dtypes; only mixed object columns go value by value.
    """
    values = values.reset_index(drop=True)
    missing = values.isna().to_numpy()
    out = np.full(len(values), np.nan, dtype=object)
    present = values[~missing]
    if pd.api.types.is_bool_dtype(present.dtype):
        out[~missing] = present.astype(bool).astype(str).to_numpy(dtype=object)
    elif pd.api.types.is_integer_dtype(present.dtype):
        out[~missing] = present.astype(np.int64).astype(str).to_numpy(dtype=object)
    elif pd.api.types.is_float_dtype(present.dtype):
        array = present.to_numpy(dtype=np.float64)
        fractional = np.flatnonzero(array != np.round(array))
        if fractional.size:
            raise ValueError(f"non-integer numbers such as {array[fractional[0]]!r}")
        out[~missing] = array.astype(np.int64).astype(str).astype(object)
    elif pd.api.types.is_string_dtype(present.dtype) and present.dtype != object:
        out[~missing] = present.str.strip().to_numpy(dtype=object)
    else:
        out[~missing] = [_label_name(v) for v in present.tolist()]
    result = pd.Series(out, dtype="str")
    return result.where(result.str.len() > 0, np.nan)


def _to_strings(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Any column -> str dtype (NaN where null) and the positions of undecodable bytes values."""
    values = values.reset_index(drop=True)
    undecodable: list[int] = []
    if values.dtype == object:
        converted: list[Any] = []
        for position, value in enumerate(values.tolist()):
            if _is_null(value):
                converted.append(np.nan)
            elif isinstance(value, bytes):
                try:
                    converted.append(value.decode("utf-8"))
                except UnicodeDecodeError:
                    undecodable.append(position)
                    converted.append(np.nan)
            elif isinstance(value, float) and value.is_integer():
                converted.append(str(int(value)))
            else:
                converted.append(str(value))
        result = pd.Series(converted, dtype="str")
    elif pd.api.types.is_float_dtype(values.dtype):
        # Integer ids stored as floats (a column with nulls) must read "7", not "7.0".
        array = values.to_numpy(dtype=np.float64)
        nan = np.isnan(array)
        integral = ~nan & np.isfinite(array) & (array == np.round(array))
        text = array.astype(str).astype(object)
        text[integral] = array[integral].astype(np.int64).astype(str)
        text[nan] = np.nan
        result = pd.Series(text, dtype="str")
    else:
        result = values.astype("str").where(values.notna(), np.nan)
    return result, np.asarray(undecodable, dtype=np.int64)


def _blank(values: pd.Series) -> np.ndarray:
    """Positions that are null or only whitespace."""
    mask = values.isna() | (values.str.strip() == "")
    return np.flatnonzero(mask.to_numpy(dtype=bool))


def _suggest(field_name: str, available: Sequence[str]) -> str | None:
    """The available column most likely meant for ``field_name``, if any."""
    lowered = {str(c).lower(): str(c) for c in available}
    for alias in _ALIASES.get(field_name, ()):
        if alias in lowered:
            return lowered[alias]
    close = difflib.get_close_matches(field_name, list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None


class _Checker:
    """Builds the error messages for one source, so each names file, column, rows and fix."""

    def __init__(self, rows: _Rows) -> None:
        self.rows = rows

    def fail(self, column: str, problem: str, positions: np.ndarray, fix: str) -> NoReturn:
        raise DataValidationError(
            f"{self.rows.source}: column `{column}` {problem} on "
            f"{self.rows.describe(positions)} ({self.rows.convention}). Fix: {fix}"
        )


def _check_columns(raw: pd.DataFrame, columns: ColumnMap, rows: _Rows) -> dict[str, str]:
    """The fields to read (normalised -> file column); raises for required ones missing."""
    available = [str(c) for c in raw.columns]
    defaults = ColumnMap()
    wanted = columns.active()
    use: dict[str, str] = {}
    missing: list[tuple[str, str]] = []
    for key, column in wanted.items():
        if column in available:
            use[key] = column
        elif key in ("group", "true_label") and column == getattr(defaults, key):
            continue  # optional column left at its default name: simply absent
        else:
            missing.append((key, column))
    if missing:
        hints = []
        for key, _column in missing:
            guess = _suggest(key, available)
            hints.append(f"{key}={guess!r}" if guess else f"{key}=<one of {available}>")
        names = ", ".join(f"`{column}` (for {key})" for key, column in missing)
        raise DataValidationError(
            f"{rows.source}: expected the column{'s' if len(missing) > 1 else ''} {names}, but "
            f"the file has only {available}. Fix: rename the column(s), or pass "
            f"columns=ColumnMap({', '.join(hints)})."
        )
    return use


def _normalize(
    raw: pd.DataFrame, *, columns: ColumnMap, label_map: LabelMap | None, rows: _Rows
) -> tuple[pd.DataFrame, LabelMap]:
    """Validate ``raw`` and return the normalised frame and the label map it is encoded with."""
    if len(raw) == 0:
        raise DataValidationError(
            f"{rows.source}: expected at least one data row, but it has none"
            f"{' (only a header)' if len(raw.columns) else ''}. Fix: point to the file that "
            "holds the data, or check that it was written completely."
        )
    use = _check_columns(raw, columns, rows)
    check = _Checker(rows)
    out: dict[str, pd.Series] = {}

    ids, bad_bytes = _to_strings(raw[use["id"]])
    blank = _blank(ids)
    if bad_bytes.size or blank.size:
        check.fail(
            use["id"], "is missing an id", np.union1d(blank, bad_bytes), "give every row an id."
        )
    duplicated = ids.duplicated(keep=False).to_numpy(dtype=bool)
    if duplicated.any():
        positions = np.flatnonzero(duplicated)
        by_id = pd.Series(positions).groupby(ids.iloc[positions].to_numpy(), sort=False)
        details = [
            f"id {key!r} on {rows.describe(group.to_numpy())}" for key, group in list(by_id)[:5]
        ]
        extra = by_id.ngroups - len(details)
        raise DataValidationError(
            f"{rows.source}: column `{use['id']}` must hold unique ids, but "
            f"{'; '.join(details)}{f' (and {extra} more ids)' if extra > 0 else ''} "
            f"({rows.convention}). Fix: give every row its own id, or drop the repeated rows."
        )
    out["id"] = ids

    texts, bad_bytes = _to_strings(raw[use["text"]])
    if bad_bytes.size:
        check.fail(
            use["text"],
            "holds bytes that are not valid UTF-8",
            bad_bytes,
            "re-encode those texts as UTF-8.",
        )
    blank = _blank(texts)
    if blank.size:
        check.fail(
            use["text"],
            "is empty or only whitespace",
            blank,
            "fill in the text, or drop those rows.",
        )
    out["text"] = texts

    if "label" in use:
        try:
            labels = _to_names(raw[use["label"]])
        except (ValueError, UnicodeDecodeError) as exc:
            labels_raw = raw[use["label"]].reset_index(drop=True)
            bad = [i for i, v in enumerate(labels_raw.tolist()) if not _valid_label_value(v)]
            check.fail(
                use["label"],
                f"must hold class names or integers, but holds {exc}",
                np.asarray(bad),
                "use integer class ids or class names as labels.",
            )
        blank = _blank(labels)
        if blank.size:
            check.fail(
                use["label"],
                "is empty (null label)",
                blank,
                "label those rows, or load them as an unlabeled pool with ColumnMap(label=None).",
            )
        if label_map is not None:
            codes = pd.Index(label_map.names).get_indexer(pd.Index(labels.to_numpy(dtype=object)))
            unknown = np.flatnonzero(codes < 0)
            if unknown.size:
                values = sorted(set(labels.iloc[unknown].tolist()))
                check.fail(
                    use["label"],
                    f"holds unknown classes {describe_items(values)} (expected one of "
                    f"{label_map.names})",
                    unknown,
                    "correct those labels, or drop the rows; a new class needs a new label map.",
                )
        else:
            label_map = LabelMap.from_labels(labels.unique().tolist())
        present = labels.unique()
        if len(present) < 2:
            raise DataValidationError(
                f"{rows.source}: column `{use['label']}` holds a single class ({present[0]!r}) "
                f"in all {len(labels)} rows, but a classifier needs at least 2. Fix: point to "
                "the full dataset, or check the label column mapping."
            )
        out["label"] = labels
    elif label_map is None:
        label_map = LabelMap(names=[])

    if "group" in use:
        groups, bad_bytes = _to_strings(raw[use["group"]])
        blank = np.union1d(_blank(groups), bad_bytes)
        if blank.size:
            check.fail(
                use["group"],
                "is missing a group",
                blank,
                "give every row a group (a singleton group may reuse the row's id), or pass "
                "ColumnMap(group=None) to ignore groups.",
            )
        out["group"] = groups
    if "true_label" in use:
        try:
            out["true_label"] = _to_names(raw[use["true_label"]])
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataValidationError(
                f"{rows.source}: column `{use['true_label']}` must hold class names or "
                f"integers, but holds {exc}. Fix: correct it or pass ColumnMap(true_label=None)."
            ) from None

    taken = set(use.values()) | set(ColumnMap().active())
    frame = pd.DataFrame(out)
    for column in raw.columns:
        if str(column) not in taken:
            frame[str(column)] = raw[column].reset_index(drop=True)
    return frame, label_map


def _valid_label_value(value: Any) -> bool:
    if _is_null(value):
        return True
    try:
        _label_name(value)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def load_dataset(
    path: str | os.PathLike[str],
    *,
    columns: ColumnMap | None = None,
    label_map: LabelMap | None = None,
    name: str | None = None,
) -> Dataset:
    """Read a CSV, Parquet or JSONL file (by suffix) and validate it into a :class:`Dataset`.

    Args:
        path: the file. CSV and JSONL must be UTF-8 (a BOM is fine); CSV cells are read as
            strings, so ids keep leading zeros.
        columns: which file columns hold id, text, label, group, true_label.
        label_map: the classes the labels must belong to (e.g. the training set's map when
            loading an eval file); built from the labels when not given.
        name: a short name for messages and the catalog; defaults to the file stem.

    Returns:
        The dataset; ``frame`` has normalised columns (see the module docstring) and index
        ``0..N-1`` in file order.

    Raises:
        DataValidationError: unknown suffix, undecodable bytes, malformed file, zero rows,
            missing columns, missing or duplicate ids, empty text, null or unknown labels,
            a single class, missing groups. The message names file, column and rows.
    """
    resolved = Path(path)
    raw, rows = _reader(resolved)(resolved)
    frame, labels = _normalize(raw, columns=columns or ColumnMap(), label_map=label_map, rows=rows)
    return Dataset(frame=frame, label_map=labels, source=resolved, name=name or resolved.stem)


def dataset_from_frame(
    frame: pd.DataFrame,
    *,
    columns: ColumnMap | None = None,
    label_map: LabelMap | None = None,
    name: str = "frame",
) -> Dataset:
    """Validate an in-memory frame like :func:`load_dataset` does a file.

    Rows in messages are 0-based positions (as in ``frame.iloc``).
    """
    raw = frame.reset_index(drop=True)
    normalized, labels = _normalize(
        raw, columns=columns or ColumnMap(), label_map=label_map, rows=_Rows(name, "frame")
    )
    return Dataset(frame=normalized, label_map=labels, name=name)


# --------------------------------------------------------------------------------------------
# Splitting and saving.


def _round_half_up(value: float) -> int:
    return int(np.floor(value + 0.5))


def stratified_split(
    dataset: Dataset, *, eval_fraction: float = 0.2, seed: int = 0, by_group: bool = True
) -> tuple[Dataset, Dataset]:
    """Split into (train, eval), stratified by label, seeded and deterministic.

    Each class with at least two units sends ``round(eval_fraction * units)`` of them to eval,
    clamped to ``[1, units - 1]``, so every such class is in both parts; a class with a single
    unit stays in train. A unit is a row, or (``by_group`` and a ``group`` column present) a whole
    group, so near-duplicates never straddle the split; a group is stratified by its first
    row's label. Rows keep their original order within each part.

    Raises:
        ValueError: ``eval_fraction`` not in (0, 1).
        DataValidationError: the dataset has no labels.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"Expected eval_fraction in (0, 1), but got {eval_fraction}.")
    labels = dataset.labels
    if by_group and "group" in dataset.frame.columns:
        unit_of_row, _ = pd.factorize(dataset.frame["group"], sort=False)
    else:
        unit_of_row = np.arange(len(labels))
    num_units = int(unit_of_row.max()) + 1 if len(unit_of_row) else 0
    first_row = np.full(num_units, len(labels), dtype=np.int64)
    np.minimum.at(first_row, unit_of_row, np.arange(len(labels)))
    unit_label = labels[first_row]

    rng = np.random.default_rng(seed)
    eval_units: list[np.ndarray] = []
    for cls in range(dataset.num_classes):
        units = np.flatnonzero(unit_label == cls)
        if units.size < 2:
            continue
        take = min(max(_round_half_up(eval_fraction * units.size), 1), units.size - 1)
        eval_units.append(rng.permutation(units)[:take])
    is_eval_unit = np.zeros(num_units, dtype=bool)
    if eval_units:
        is_eval_unit[np.concatenate(eval_units)] = True
    is_eval = is_eval_unit[unit_of_row]
    return dataset.subset(np.flatnonzero(~is_eval)), dataset.subset(np.flatnonzero(is_eval))


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Write through a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


_WRITERS: dict[str, Callable[[pd.DataFrame, Path], Any]] = {
    ".parquet": lambda frame, tmp: frame.to_parquet(tmp, index=False),
    ".csv": lambda frame, tmp: frame.to_csv(tmp, index=False, encoding="utf-8"),
    ".jsonl": lambda frame, tmp: frame.to_json(
        tmp, orient="records", lines=True, force_ascii=False
    ),
}


def save_dataset(frame: pd.DataFrame | Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a frame (or a dataset's frame) as Parquet, CSV (UTF-8) or JSONL, atomically.

    Readers never see a half-written file: the data goes to a temporary file in the same
    folder that is renamed over ``path`` only once complete.

    Raises:
        ValueError: an unsupported suffix (the message lists the supported ones).
    """
    target = Path(path)
    data = frame.frame if isinstance(frame, Dataset) else frame
    writer = _WRITERS.get(target.suffix.lower())
    if writer is None:
        raise ValueError(
            f"Expected a path ending in one of {sorted(_WRITERS)}, but got {str(target)!r}."
        )
    return _atomic_write(target, lambda tmp: writer(data.reset_index(drop=True), tmp))
