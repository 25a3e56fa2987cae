"""cartoflow.helpers: functions run in a helper process, or here when the helper cannot."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator

import pandas as pd
import pytest

from cartoflow.helpers import Helper
from tests.cartoflow import helper_functions

HERE = os.getpid()


@pytest.fixture
def helper() -> Iterator[Helper]:
    running = Helper("tests.cartoflow.helper_functions", helper_functions.FUNCTIONS)
    yield running
    running.stop()


def test_a_call_runs_in_the_helper_and_returns_its_value(helper: Helper) -> None:
    frame = pd.DataFrame({"id": pd.array(["a", "b"], dtype="string"), "x": [1.5, 2.5]})
    args, kwargs, pid = helper.call("echo", frame, 3, labels=range(3))
    assert pid != HERE
    pd.testing.assert_frame_equal(args[0], frame)
    assert (args[1], kwargs) == (3, {"labels": range(3)})
    assert helper.call("pid") == pid  # the same process, kept between calls


def test_the_helpers_exception_is_raised_here_with_its_type_and_message(helper: Helper) -> None:
    with pytest.raises(ValueError, match="the frame has no id column"):
        helper.call("fail", "the frame has no id column")
    assert helper.call("pid") != HERE  # the helper lives on


def test_what_a_function_prints_does_not_reach_the_replies(
    helper: Helper, capfd: pytest.CaptureFixture[str]
) -> None:
    assert helper.call("chatty") != HERE
    assert helper.call("pid") != HERE
    assert "must not reach" in capfd.readouterr().err


def test_a_reply_that_does_not_pickle_is_made_here(helper: Helper) -> None:
    lock, pid = helper.call("lock")
    assert pid == HERE and hasattr(lock, "acquire")
    assert helper.call("pid") != HERE  # the helper is still used afterwards


def test_an_argument_that_does_not_pickle_is_run_here(helper: Helper) -> None:
    _, _, pid = helper.call("echo", threading.Lock())
    assert pid == HERE


def test_a_helper_that_dies_during_a_call_is_not_used_again_until_stopped(
    helper: Helper,
) -> None:
    # Here, die() would end the test process: count the call instead (the helper runs its own).
    ran_here: list[str] = []
    helper.functions = {**helper.functions, "die": lambda: ran_here.append("die")}
    helper.call("die")
    assert ran_here == ["die"]  # the helper died mid-call: the call was made here
    assert helper.call("pid") == HERE  # and so are later ones
    helper.stop()
    assert helper.call("pid") != HERE  # a stopped helper is started again


def test_a_helper_found_dead_before_a_call_is_started_again(helper: Helper) -> None:
    helper.start()
    assert helper._process is not None
    first = helper._process.pid
    helper._process.kill()
    helper._process.wait()
    pid = helper.call("pid")
    assert pid not in (HERE, first)


def test_without_processes_every_call_runs_here(
    helper: Helper, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_processes(*args: object, **kwargs: object) -> None:
        raise OSError("no processes here")

    monkeypatch.setattr(subprocess, "Popen", no_processes)
    assert helper.call("pid") == HERE
    with pytest.raises(ValueError, match="still raised"):
        helper.call("fail", "still raised")


def test_a_helper_can_run_at_a_lower_cpu_priority(
    helper: Helper, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = os.nice(0)
    monkeypatch.setenv("HELPER_TEST_NICE", "7")
    assert helper.call("niceness") == min(here + 7, 19)


def test_an_unknown_function_is_refused(helper: Helper) -> None:
    with pytest.raises(KeyError):
        helper.call("nope")
