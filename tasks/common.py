"""Shared shell helpers for the stage tasks: content cache keys, artifacts, timing.

Tasks are thin: paths in, paths out. Every task that does real work is cached by content
(dataset hash + config + round), never by a file path alone, so a suspended round that Prefect
re-runs from the top comes back to the human gate without retraining.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from prefect.artifacts import create_image_artifact, create_markdown_artifact
from prefect.context import TaskRunContext

from cartoflow.workspace import config_hash

_KEY_SAFE = re.compile(r"[^a-z0-9-]+")


def _content(value: Any) -> Any:
    """``value`` without its timings: stage results carry ``seconds``, which are not content."""
    if isinstance(value, dict):
        return {k: _content(v) for k, v in value.items() if not str(k).endswith("seconds")}
    if isinstance(value, list | tuple):
        return [_content(v) for v in value]
    return value


def content_key(*names: str) -> Callable[[TaskRunContext, dict[str, Any]], str]:
    """A Prefect ``cache_key_fn`` that hashes the named parameters (hashes, configs, round id).

    Timings (keys ending in ``seconds``) are left out, so a stage that is not cached itself
    (loading, which reads the files again) still hands its cached successors the same key.
    """

    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        task_name = context.task.name if context and context.task else "task"
        return f"{task_name}-" + config_hash(*(_content(parameters[name]) for name in names))

    return key


def artifact_key(*parts: str) -> str:
    """An artifact key Prefect accepts: lowercase letters, digits and dashes."""
    return _KEY_SAFE.sub("-", "-".join(parts).lower()).strip("-")[:100]


def png_data_url(path: Path) -> str:
    """A ``data:`` URL for a PNG, so artifacts show images without a file server."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def publish_image(path: Path, *, key: str, description: str) -> None:
    create_image_artifact(image_url=png_data_url(path), key=key, description=description)


def publish_markdown(markdown: str, *, key: str, description: str) -> None:
    create_markdown_artifact(markdown=markdown, key=key, description=description)


TABLE_BYTES = 1_000_000
"""How large a table artifact may be as sent. Prefect's API refuses events over 1.5 MB
(``PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES``), the artifact's own event among them, and the
UI pages a table anyway: a larger one is previewed, and its file is named."""
TABLE_TEXT_CHARS = 300
"""Longer cells are cut in a table artifact (the file keeps the whole text)."""


def _cell(value: Any) -> str:
    if pd.api.types.is_scalar(value) and pd.isna(value):  # None, NaN, NA, NaT: an empty cell
        return ""
    text = str(value)
    return text if len(text) <= TABLE_TEXT_CHARS else text[: TABLE_TEXT_CHARS - 1] + "\u2026"


def table_preview(
    frame: pd.DataFrame, *, max_bytes: int = TABLE_BYTES
) -> tuple[dict[str, list[str]], int]:
    """The first rows of ``frame`` as a table artifact's columns, within ``max_bytes`` as sent.

    Column-wise (``{column: [cells]}``: the names once, not once per row), every cell a string
    (missing: empty) cut to :data:`TABLE_TEXT_CHARS`. The size counted is the one Prefect
    sends: the table is JSON-encoded into the artifact's ``data`` field (non-ASCII text as
    ``\\uXXXX``), which is JSON-encoded again in the request and its event (its backslash
    escaped: 7 bytes a character).

    Returns:
        ``(columns, rows)``: the table and how many of ``frame``'s rows it holds (all of them
        when it fits; at least one when ``frame`` has any).
    """
    cells = frame.map(_cell)
    # Each cell as sent: JSON in JSON (its outer quotes stand for its separator).
    sizes = cells.map(lambda v: len(json.dumps(json.dumps(v)))).sum(axis=1).to_numpy()
    header = len(json.dumps(json.dumps({str(c): [] for c in frame.columns})))
    fits = int((header + sizes.cumsum() <= max_bytes).sum())
    rows = max(fits, min(len(frame), 1))
    return {str(c): cells[c].iloc[:rows].tolist() for c in frame.columns}, rows


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as t: ...`` then ``t["seconds"]``."""
    timing: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield timing
    finally:
        timing["seconds"] = round(time.perf_counter() - start, 3)


_STOPS: dict[str, str] = {}
_STOPS_LOCK = threading.Lock()


def request_stop(round_id: str, reason: str) -> None:
    """Ask the round's trainings to stop at their next batch (the first reason is kept).

    A round's gates and trainings are tasks of one flow run, threads of one process: a gate
    that fails beside a training asks it to stop, so the round ends with the gate's error in
    seconds instead of after the whole training.
    """
    with _STOPS_LOCK:
        _STOPS.setdefault(round_id, reason)


def stop_requested(round_id: str) -> str | None:
    """Why the round's trainings should stop, or None (asked before every batch)."""
    return _STOPS.get(round_id)


def clear_stop(round_id: str) -> None:
    """Forget a stop request: a round (or its re-run after a suspension) starts clean."""
    with _STOPS_LOCK:
        _STOPS.pop(round_id, None)
