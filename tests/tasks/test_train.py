"""The training task's progress artifact, posted from a thread of its own."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import tasks.train
from tasks.train import _Progress

LOGGER = logging.getLogger("tests.tasks.train")


class FakeAPI:
    """Records the progress artifact calls; the first update waits until ``release`` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.release = threading.Event()
        self.release.set()

    def create(self, *, progress: float, key: str, description: str) -> str:
        self.calls.append(("create", progress))
        return "artifact-1"

    def update(self, artifact: str, *, progress: float) -> None:
        assert artifact == "artifact-1"
        self.release.wait(timeout=10)
        self.calls.append(("update", progress))


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    fake = FakeAPI()
    monkeypatch.setattr(tasks.train, "create_progress_artifact", fake.create)
    monkeypatch.setattr(tasks.train, "update_progress_artifact", fake.update)
    return fake


def test_every_update_is_posted_in_order_and_close_waits_for_the_last(api: FakeAPI) -> None:
    progress = _Progress(key="round-r1-baseline-training", description="Training", logger=LOGGER)
    for done in (20.0, 40.0):
        progress.update(done)
    progress.update(120.0)  # clipped to the artifact's 0-100
    progress.close()
    assert api.calls[0] == ("create", 0.0)
    assert api.calls[-1] == ("update", 100.0)
    assert [value for _, value in api.calls] == sorted(value for _, value in api.calls)


def test_updates_that_wait_behind_a_slow_post_are_merged_into_the_latest(api: FakeAPI) -> None:
    api.release.clear()  # the API is slow: the first update is still being posted
    progress = _Progress(key="k", description="Training", logger=LOGGER)
    progress.update(20.0)
    for done in (40.0, 60.0, 80.0):
        progress.update(done)
    api.release.set()
    progress.close()
    updates = [value for call, value in api.calls if call == "update"]
    assert updates[-1] == 80.0 and len(updates) <= 3  # not one post per queued update


def test_an_api_error_is_logged_and_the_training_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(**_: Any) -> str:
        raise RuntimeError("API unreachable")

    monkeypatch.setattr(tasks.train, "create_progress_artifact", refused)
    progress = _Progress(key="round-r1-baseline-training", description="Training", logger=LOGGER)
    progress.update(50.0)
    progress.close()  # returns: nothing left to post
    assert "was not updated: API unreachable" in caplog.text
