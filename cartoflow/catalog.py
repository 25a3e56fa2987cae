"""The SQLite catalog of a workspace: dataset versions, rounds and every label decision.

One file (``catalog.sqlite``), stdlib ``sqlite3``, one transaction per write. Rows are only ever
added or moved forward (a round's state and timings); nothing is deleted, so the history of who
changed which label, when and why survives every later round.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS dataset_versions (
    dataset     TEXT NOT NULL,
    version     INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    parent      INTEGER,
    rows        INTEGER NOT NULL,
    file        TEXT NOT NULL,
    round_id    TEXT,
    note        TEXT,
    promoted    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (dataset, version)
);
CREATE INDEX IF NOT EXISTS dataset_versions_hash ON dataset_versions (dataset, hash);
CREATE TABLE IF NOT EXISTS rounds (
    round_id    TEXT PRIMARY KEY,
    dataset     TEXT NOT NULL,
    config      TEXT NOT NULL,
    state       TEXT NOT NULL,
    reason      TEXT,
    version_in  INTEGER,
    version_out INTEGER,
    timings     TEXT NOT NULL DEFAULT '{}',
    report      TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS label_decisions (
    round_id    TEXT NOT NULL,
    sample_id   TEXT NOT NULL,
    old_label   TEXT,
    new_label   TEXT,
    action      TEXT NOT NULL CHECK (action IN ('fix', 'remove', 'add', 'keep', 'skip')),
    annotator   TEXT,
    decided_at  TEXT NOT NULL,
    pool        TEXT,
    reason      TEXT,
    PRIMARY KEY (round_id, sample_id)
);
CREATE TABLE IF NOT EXISTS analyses (
    analysis_id TEXT PRIMARY KEY,
    dataset     TEXT NOT NULL,
    version     INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    run_dir     TEXT NOT NULL,
    dynamics    TEXT NOT NULL,
    metrics     TEXT NOT NULL,
    pools       TEXT NOT NULL,
    relabel     INTEGER NOT NULL,
    report      TEXT,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gate_results (
    round_id    TEXT NOT NULL,
    gate        TEXT NOT NULL,
    success     INTEGER NOT NULL,
    summary     TEXT NOT NULL,
    checked_at  TEXT NOT NULL
);
"""

ROUND_STATES = (
    "running",
    "awaiting_review",
    "completed",
    "rejected",
    "nothing_to_review",
    "failed",
    "not_promoted",
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class VersionRecord:
    """One immutable dataset version as the catalog knows it."""

    dataset: str
    version: int
    hash: str
    parent: int | None
    rows: int
    file: str
    round_id: str | None = None
    promoted: bool = False


class Catalog:
    """Read and append to a workspace's catalog. Cheap to create; opens a connection per call."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            with db:  # one transaction: commit on success, roll back on error
                yield db

    # dataset versions -------------------------------------------------------------------------
    def find_version(self, dataset: str, content_hash: str) -> VersionRecord | None:
        """The version of ``dataset`` with this content hash, if one was registered."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM dataset_versions WHERE dataset = ? AND hash = ? ORDER BY version",
                (dataset, content_hash),
            ).fetchone()
        return _version(row) if row else None

    def get_version(self, dataset: str, version: int) -> VersionRecord:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM dataset_versions WHERE dataset = ? AND version = ?",
                (dataset, version),
            ).fetchone()
        if row is None:
            known = [v.version for v in self.versions(dataset)]
            raise KeyError(f"Dataset {dataset!r} has no version {version}; it has {known}.")
        return _version(row)

    def latest_version(self, dataset: str) -> VersionRecord | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM dataset_versions WHERE dataset = ? ORDER BY version DESC LIMIT 1",
                (dataset,),
            ).fetchone()
        return _version(row) if row else None

    def current_version(self, dataset: str) -> VersionRecord | None:
        """The newest promoted version: the one the next round or nightly analysis starts from."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM dataset_versions WHERE dataset = ? AND promoted = 1 "
                "ORDER BY version DESC LIMIT 1",
                (dataset,),
            ).fetchone()
        return _version(row) if row else None

    def promote(self, dataset: str, version: int) -> None:
        """Mark a version as accepted (it passed the model gate, or it is a loaded source)."""
        with self._connect() as db:
            db.execute(
                "UPDATE dataset_versions SET promoted = 1 WHERE dataset = ? AND version = ?",
                (dataset, version),
            )

    def versions(self, dataset: str) -> list[VersionRecord]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM dataset_versions WHERE dataset = ? ORDER BY version", (dataset,)
            ).fetchall()
        return [_version(r) for r in rows]

    def next_version_number(self, dataset: str) -> int:
        latest = self.latest_version(dataset)
        return 1 if latest is None else latest.version + 1

    def add_version(self, record: VersionRecord, *, note: str | None = None) -> VersionRecord:
        with self._connect() as db:
            db.execute(
                "INSERT INTO dataset_versions (dataset, version, hash, parent, rows, file, "
                "round_id, note, promoted, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.dataset,
                    record.version,
                    record.hash,
                    record.parent,
                    record.rows,
                    record.file,
                    record.round_id,
                    note,
                    int(record.promoted),
                    _now(),
                ),
            )
        return record

    # rounds -----------------------------------------------------------------------------------
    def start_round(self, round_id: str, *, dataset: str, config: Mapping[str, Any]) -> None:
        """Record a round as running; a re-run of the same round (resume) keeps its history."""
        now = _now()
        with self._connect() as db:
            db.execute(
                "INSERT INTO rounds (round_id, dataset, config, state, created_at, updated_at) "
                "VALUES (?, ?, ?, 'running', ?, ?) "
                "ON CONFLICT(round_id) DO UPDATE SET updated_at = excluded.updated_at",
                (round_id, dataset, json.dumps(config, default=str), now, now),
            )

    def update_round(
        self,
        round_id: str,
        *,
        state: str | None = None,
        reason: str | None = None,
        version_in: int | None = None,
        version_out: int | None = None,
        timings: Mapping[str, float] | None = None,
        report: str | None = None,
    ) -> None:
        """Move a round forward. ``timings`` are merged into the stored ones."""
        if state is not None and state not in ROUND_STATES:
            raise ValueError(f"Expected a round state in {ROUND_STATES}, but got {state!r}.")
        with self._connect() as db:
            row = db.execute(
                "SELECT timings FROM rounds WHERE round_id = ?", (round_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"No round {round_id!r} in the catalog {self.path}.")
            merged = {**json.loads(row["timings"]), **dict(timings or {})}
            fields = {
                "state": state,
                "reason": reason,
                "version_in": version_in,
                "version_out": version_out,
                "report": report,
            }
            sets = [f"{k} = ?" for k, v in fields.items() if v is not None]
            values = [v for v in fields.values() if v is not None]
            db.execute(
                f"UPDATE rounds SET {', '.join([*sets, 'timings = ?', 'updated_at = ?'])} "
                "WHERE round_id = ?",
                (*values, json.dumps(merged), _now(), round_id),
            )

    def get_round(self, round_id: str) -> dict[str, Any]:
        with self._connect() as db:
            row = db.execute("SELECT * FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
        if row is None:
            raise KeyError(f"No round {round_id!r} in the catalog {self.path}.")
        out = dict(row)
        out["config"] = json.loads(out["config"])
        out["timings"] = json.loads(out["timings"])
        return out

    def rounds(self, dataset: str | None = None) -> pd.DataFrame:
        query = "SELECT * FROM rounds" + (" WHERE dataset = ?" if dataset else "")
        with self._connect() as db:
            return pd.read_sql_query(
                query + " ORDER BY created_at", db, params=(dataset,) if dataset else ()
            )

    # label decisions --------------------------------------------------------------------------
    def record_decisions(self, round_id: str, decisions: pd.DataFrame) -> int:
        """Append one row per decision (columns: sample_id, old_label, new_label, action,
        annotator, pool, reason). Re-recording a round's decision for a sample is refused, so
        a decision once taken is never silently rewritten."""
        required = ["sample_id", "old_label", "new_label", "action", "annotator", "pool", "reason"]
        missing = [c for c in required if c not in decisions.columns]
        if missing:
            raise ValueError(f"Expected decision columns {required}, but {missing} are missing.")
        now = _now()
        # Every value as text, missing ones as None (NULL), column by column, not per value.
        text = decisions[required].astype("string").astype(object)
        text = text.where(text.notna(), None)
        rows: Sequence[tuple[Any, ...]] = [
            (round_id, *rec, now) for rec in text.to_numpy().tolist()
        ]
        with self._connect() as db:
            db.executemany(
                "INSERT INTO label_decisions (round_id, sample_id, old_label, new_label, action, "
                "annotator, pool, reason, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def decisions(self, round_id: str | None = None) -> pd.DataFrame:
        query = "SELECT * FROM label_decisions" + (" WHERE round_id = ?" if round_id else "")
        with self._connect() as db:
            return pd.read_sql_query(query, db, params=(round_id,) if round_id else ())

    # analyses (nightly re-analysis) -----------------------------------------------------------
    def add_analysis(self, record: Mapping[str, Any]) -> None:
        """Record one analysis: which version it scored and where its files are."""
        columns = [
            "analysis_id",
            "dataset",
            "version",
            "hash",
            "run_dir",
            "dynamics",
            "metrics",
            "pools",
            "relabel",
            "report",
        ]
        with self._connect() as db:
            db.execute(
                f"INSERT OR REPLACE INTO analyses ({', '.join(columns)}, created_at) "
                f"VALUES ({', '.join('?' * (len(columns) + 1))})",
                (*(record.get(c) for c in columns), _now()),
            )

    def latest_analysis(self, dataset: str, *, before: str | None = None) -> dict[str, Any] | None:
        """The newest analysis of ``dataset`` (other than ``before``, when given)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM analyses WHERE dataset = ? AND analysis_id != ? "
                "ORDER BY created_at DESC, analysis_id DESC LIMIT 1",
                (dataset, before or ""),
            ).fetchone()
        return dict(row) if row else None

    # gates ------------------------------------------------------------------------------------
    def record_gate(self, round_id: str, gate: str, *, success: bool, summary: Any) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO gate_results VALUES (?, ?, ?, ?, ?)",
                (round_id, gate, int(success), json.dumps(summary, default=str), _now()),
            )

    def gates(self, round_id: str) -> pd.DataFrame:
        with self._connect() as db:
            return pd.read_sql_query(
                "SELECT * FROM gate_results WHERE round_id = ?", db, params=(round_id,)
            )


def _version(row: sqlite3.Row) -> VersionRecord:
    return VersionRecord(
        dataset=row["dataset"],
        version=row["version"],
        hash=row["hash"],
        parent=row["parent"],
        rows=row["rows"],
        file=row["file"],
        round_id=row["round_id"],
        promoted=bool(row["promoted"]),
    )
