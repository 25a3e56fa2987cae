"""Helpers for the tests that run cartoflow's deployments against a live Prefect API.

Shared by ``tests/deployments/`` (a real ``prefect server start``) and
``tests/flows/test_suspend.py`` (the session's test harness): start and stop subprocesses, serve
``deployments/serve.py``, wait for a flow run's state, and read what a paused round exported.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pyarrow.parquet as pq
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound

ROOT = Path(__file__).resolve().parents[2]
ROUND = "active-learning-round/active-learning-round"
NIGHTLY = "nightly-reanalysis/nightly-reanalysis"
TIMEZONE = "Europe/Berlin"  # the served nightly schedule's, through CARTOFLOW_TIMEZONE
TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prefect_env(*, home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a Prefect subprocess: its own PREFECT_HOME, heartbeats off, quiet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # heartbeats cannot be switched off through the environment; once an hour is off enough
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "3600",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    }
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env | extra


class Process:
    """A subprocess in its own session, its output in a log file, stopped with its children."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return f"--- last lines of {self.log} ---\n" + "\n".join(text[-lines:])

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(f"exited with {self.popen.returncode}\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM to the process group, then SIGKILL to whatever is left of it.

        The process leads its own session, so the group holds the flow runs it started too; a
        flow run paused for a person may outlive its parent's shutdown.
        """
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=20)
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._out.close()


@contextmanager
def served(*, api_url: str, home: Path, log: Path, **env: str) -> Iterator[Process]:
    """``deployments/serve.py`` against ``api_url``, once its deployments are registered."""
    process = Process(
        [sys.executable, str(ROOT / "deployments" / "serve.py")],
        env=prefect_env(home=home, api_url=api_url, **env),
        log=log,
    )
    try:
        deadline = time.monotonic() + 240
        with get_client(sync_client=True) as client:
            while True:
                process.check_alive()
                # registered in order; runs created before the first poll are picked up by it
                with suppress(ObjectNotFound):
                    client.read_deployment_by_name(NIGHTLY)
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"serve.py did not start in 240 s\n{process.tail()}")
                time.sleep(1)
        yield process
    finally:
        process.stop()


def tiny_round(**updates: Any) -> dict[str, Any]:
    """Round parameters for tiny demo data: 600 rows, 3 epochs (enough for a non-empty batch)."""
    config: dict[str, Any] = {
        "demo_size": "tiny",
        "annotator": "human",
        "wait": "pause",
        "timeout_days": 1,
        "model_gate_tolerance": 1.0,  # tiny data is too small for a meaningful model delta
        "train": {"epochs": 3},
    }
    return config | updates


def wait_for_state(
    run_id: UUID, wanted: StateType, *, process: Process, timeout: float = 300
) -> FlowRun:
    """Poll the API until the run reaches ``wanted``; fail early on any other final state."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            state = run.state
            if state is not None and state.type == wanted:
                return run
            if state is not None and state.type in TERMINAL:
                raise AssertionError(
                    f"flow run {run.name} ended {state.name}: {state.message}\n{process.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"flow run {run.name} is {state and state.name} after {timeout} s, "
                    f"not {wanted.value}\n{process.tail()}"
                )
            process.check_alive()
            time.sleep(1)


def round_dir(workspace: Path) -> Path:
    """The one round folder of a workspace that ran one round."""
    (found,) = (workspace / "runs").iterdir()
    return found


def true_labels(workspace: Path, batch_csv: Path) -> dict[str, str]:
    """Inline labels for a batch, from the demo data's hidden ``true_label`` column.

    The batch holds training samples and unlabeled expansion candidates: both first versions
    carry the column.
    """
    batch = pd.read_csv(batch_csv, dtype=str, keep_default_na=False)
    truth = pd.concat(
        pd.read_parquet(path, columns=["id", "true_label"])
        for path in sorted((workspace / "datasets").glob("demo*/v0001.parquet"))
        if "true_label" in pq.read_schema(path).names
    ).set_index("id")["true_label"]
    return {i: str(truth[i]) for i in batch["id"]}
