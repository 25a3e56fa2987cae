"""Shared shell helpers for the stage tasks: content cache keys, artifacts, timing.

Tasks are thin: paths in, paths out. Every task that does real work is cached by content
(dataset hash + config + round), never by a file path alone, so a suspended round that Prefect
re-runs from the top comes back to the human gate without retraining.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
