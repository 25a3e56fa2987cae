"""Prefect's temporary local API for ``cartoflow round``, started ahead of the heavy imports.

Without ``PREFECT_API_URL``, Prefect starts a temporary API ("ephemeral mode") the first time a
client is needed: after this process has imported torch, the flows and Great Expectations, and
after importing Prefect's whole server app into this process just to launch it (about 5 s of
this process's time on a 2-core machine). ``EmbeddedAPI.start`` launches the same server the same
way (uvicorn running ``prefect.server.api.server:create_app`` with the UI and services of an
ephemeral server) before those imports, so it boots on the second core while they run, and
points this process's Prefect settings at it.

``stop`` first hands the run's last logs and events to the API, then stops it. Prefect's own
exit order is the reverse (the server's exit hook runs before logging's), which left every
``cartoflow round`` waiting 5 s at exit for a log flush to a server that was gone.

``runs()`` (or ``flow_runs(api)``, which also takes None: a configured server) wraps the flow
runs made against this API: it waits for the API, then switches flow-run heartbeats off.
Heartbeats let a server mark a run as crashed when its process dies; this API dies with the
process, so nobody would read them, and each flow run waited for the heartbeat thread's
one-second sleep to end (half a second on average) before returning.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

PORT_IN_USE = 3  # uvicorn's exit code when the port was taken between our check and its bind
PR_SET_PDEATHSIG = 1  # linux/prctl.h
API_NICE = 5
"""How far below the round's CPU priority the API runs once it answers (see ``wait_ready``)."""
NOTICE_AFTER = 2.0
"""Seconds of waiting for the API before ``wait_ready`` says on stderr what the wait is."""
NOTICE = (
    "Starting Prefect's temporary local API (a few seconds; the first time on this machine "
    "it also creates Prefect's database, about 15 s more)..."
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedAPI:
    """A Prefect API subprocess on 127.0.0.1 that lives as long as this ``cartoflow`` command.

    Args:
        env: the server's environment (this process's Prefect settings and ephemeral mode).
        app_dir: the folder that holds the ``prefect`` package.
    """

    def __init__(self, env: dict[str, str], app_dir: str) -> None:
        self._env = env
        self._app_dir = app_dir
        self.port = _free_port()
        self.process = self._spawn()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @classmethod
    def start(cls) -> EmbeddedAPI | None:
        """Launch the API unless Prefect is configured to use a server; returns at once.

        The server is launched before Prefect is imported here (a second or two), with this
        process's environment: it reads the same profile and settings this process will.

        Returns:
            the launched API, or ``None`` when ``PREFECT_API_URL`` is set (in the environment
            or the active profile) or ephemeral mode is switched off: Prefect then behaves
            exactly as it would without cartoflow.
        """
        if os.environ.get("PREFECT_API_URL"):
            return None
        spec = importlib.util.find_spec("prefect")
        if spec is None or spec.origin is None:
            return None  # the import below names the missing install
        server_env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",  # ephemeral-server services, as Prefect's own
            "PREFECT__SERVER_FINAL": "1",
        }
        api = cls(server_env, str(Path(spec.origin).resolve().parent.parent))
        from prefect.settings import get_current_settings

        settings = get_current_settings()
        if settings.api.url or not settings.server.ephemeral.enabled:
            api.stop(drain=False)  # a server is configured in the profile: use that one
            return None
        api._point_prefect_here()
        return api

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "flows.embedded_api",  # _serve: uvicorn, ended with this process however it ends
            str(os.getpid()),
            "--app-dir",
            self._app_dir,
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ]
        return subprocess.Popen(command, env=self._env)

    def _point_prefect_here(self) -> None:
        from prefect.context import refresh_global_settings_context

        os.environ["PREFECT_API_URL"] = self.url
        refresh_global_settings_context()

    @contextmanager
    def runs(self) -> Iterator[None]:
        """Wait for the API, then make the flow runs inside this block against it, without
        heartbeats (nobody would read them)."""
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        self.wait_ready()
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield

    def _below_the_round(self) -> None:
        """Run the API ``API_NICE`` below this process's CPU priority, once it is up.

        It boots at the round's priority (the flow waits for it), then mostly records what the
        round's tasks report: the task runs' events, logs and artifacts queue up while the
        stages the round waits for take the cores. (In one A/B of warm demo rounds, 4 each,
        the time outside training and metrics fell from 4.55 s to 4.26 s, median.)
        """
        if hasattr(os, "setpriority"):
            wanted = min(os.getpriority(os.PRIO_PROCESS, 0) + API_NICE, 19)
            with suppress(OSError):  # a platform that refuses: the API runs as it is
                os.setpriority(os.PRIO_PROCESS, self.process.pid, wanted)

    def wait_ready(
        self, *, timeout: float | None = None, notice_after: float = NOTICE_AFTER
    ) -> None:
        """Block until the API answers its health check.

        A wait longer than ``notice_after`` seconds is explained once on stderr (:data:`NOTICE`):
        the API's start is most of a round's first seconds, and the very first one on a machine
        also creates Prefect's database (10-20 s on 2 cores), with nothing else on the screen.

        Args:
            timeout: seconds; default Prefect's ``server.ephemeral.startup_timeout_seconds``.
            notice_after: seconds to wait before the notice.

        Raises:
            RuntimeError: the server exited or did not answer in time; names the URL, the exit
                code and the way around (start ``prefect server start`` and set
                ``PREFECT_API_URL``).
        """
        if timeout is None:
            from prefect.settings import get_current_settings

            timeout = float(get_current_settings().server.ephemeral.startup_timeout_seconds)
        start = time.monotonic()
        deadline = start + timeout
        noticed = False
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code == PORT_IN_USE:  # lost a race for the port: take another one
                self._relaunch()
                continue
            if code is not None:
                raise RuntimeError(self._failure(f"exited with code {code}"))
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        self._below_the_round()
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if not noticed and time.monotonic() - start >= notice_after:  # not up yet
                print(NOTICE, file=sys.stderr, flush=True)
                noticed = True
            time.sleep(0.05)
        self.stop(drain=False)
        raise RuntimeError(self._failure(f"did not answer within {timeout:.0f} s"))

    def _relaunch(self) -> None:
        self.port = _free_port()
        self.process = self._spawn()
        self._point_prefect_here()

    def _failure(self, what: str) -> str:
        return (
            f"Prefect's temporary local API on {self.url} {what}. Its own error, if any, is "
            "printed above. To run against a server instead, start one with "
            "`prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api."
        )

    def stop(self, *, drain: bool = True) -> None:
        """Send the run's pending logs and events (at most 5 s each), then stop the API."""
        try:
            if drain:
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=5)
                EventsWorker.drain_all(timeout=5)
        finally:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()


@contextmanager
def flow_runs(api: EmbeddedAPI | None) -> Iterator[None]:
    """The block's flow runs go to ``api`` (:meth:`EmbeddedAPI.runs`), or, when it is None
    (a server is configured), to the configured server as Prefect's settings say."""
    if api is None:
        yield
        return
    with api.runs():
        yield


def _serve(parent: int, uvicorn_args: list[str]) -> None:
    """The API process: arrange to be stopped when ``parent`` dies, then become uvicorn.

    ``stop`` ends the API when the round ends; this covers a round that is killed (SIGKILL, out
    of memory), which would otherwise leave the server running with nobody to stop it. Linux
    only (``prctl``); the signal request survives the ``exec``.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it died before the request was in place
            sys.exit(1)
    os.execv(sys.executable, [sys.executable, "-m", "uvicorn", *uvicorn_args])


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2:])
