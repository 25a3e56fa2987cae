"""The workspace folder: dataset versions, round folders and the catalog, nothing overwritten.

Layout::

    <root>/
      catalog.sqlite                 versions, rounds, label decisions, gate results
      datasets/<name>/vNNNN.parquet  immutable dataset versions (written to a temp file, renamed)
      datasets/<name>/labels.json    the stable label name <-> index map of that dataset
      runs/<round>/                  everything one round wrote: dynamics, metrics, pools, batch,
                                     annotations, models, data maps, Data Docs, report.json

The root comes from an explicit argument, else ``$CARTOFLOW_WORKSPACE``, else ``./workspace``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

ENV_VAR = "CARTOFLOW_WORKSPACE"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str, *, what: str) -> str:
    """Return ``name`` if it is safe as a folder name, else raise naming the rule."""
    if not _NAME.match(name):
        raise ValueError(
            f"Expected the {what} to be 1-64 letters, digits, '.', '_' or '-' "
            f"(starting with a letter or digit), but got {name!r}."
        )
    return name


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace folder. Creating the object creates no files."""

    root: Path

    @classmethod
    def resolve(cls, root: str | os.PathLike[str] | None = None) -> Workspace:
        """The workspace at ``root``, else ``$CARTOFLOW_WORKSPACE``, else ``./workspace``."""
        chosen = root if root is not None else os.environ.get(ENV_VAR, "workspace")
        return cls(Path(chosen).expanduser().resolve())

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    def dataset_dir(self, name: str) -> Path:
        return self.root / "datasets" / check_name(name, what="dataset name")

    def version_path(self, name: str, number: int) -> Path:
        return self.dataset_dir(name) / f"v{number:04d}.parquet"

    def run_dir(self, round_id: str) -> Path:
        return self.root / "runs" / check_name(round_id, what="round id")

    def ensure(self) -> Workspace:
        (self.root / "datasets").mkdir(parents=True, exist_ok=True)
        (self.root / "runs").mkdir(parents=True, exist_ok=True)
        return self


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    Readers never see a half-written file, and a failure leaves any earlier file untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_atomic(path: Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and rename the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return path


def write_text(path: Path, text: str) -> Path:
    """Write UTF-8 text, atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as pretty UTF-8 JSON, atomically."""
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    return write_atomic(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame as Parquet or CSV (by suffix), atomically."""
    if path.suffix == ".parquet":
        return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    if path.suffix == ".csv":
        return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False, encoding="utf-8"))
    raise ValueError(f"Expected a .parquet or .csv path, but got {path}.")


def frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of a frame: column names, dtypes' kinds and every value, not the index.

    Two frames with the same rows in the same order hash the same whatever file they came from,
    so caches keyed on it survive a re-run that re-reads the data (Prefect suspend/resume).
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(list(map(str, frame.columns))).encode())
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest.update(row_hashes.tobytes())
    return digest.hexdigest()


def config_hash(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (pydantic models are dumped first)."""
    normalised = [p.model_dump(mode="json") if hasattr(p, "model_dump") else p for p in parts]
    text = json.dumps(normalised, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
