"""The embedded Prefect API that ``cartoflow round`` starts ahead of its imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.embedded_api import NOTICE, EmbeddedAPI

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys, urllib.request
from flows.embedded_api import EmbeddedAPI
from prefect.settings import get_current_settings
api = EmbeddedAPI.start()
try:
    api.wait_ready(timeout=float(sys.argv[1]), notice_after=float(sys.argv[2]))
except RuntimeError as error:
    print(json.dumps({"error": str(error), "exited": api.process.poll() is not None}))
    sys.exit(0)
with urllib.request.urlopen(api.url + "/health") as response:
    healthy = response.status == 200
settings_url = get_current_settings().api.url
nice_below = os.getpriority(os.PRIO_PROCESS, api.process.pid) - os.getpriority(os.PRIO_PROCESS, 0)
heartbeats = get_current_settings().flows.heartbeat_frequency
with api.runs():
    heartbeats_in_runs = get_current_settings().flows.heartbeat_frequency
api.stop()
print(json.dumps({
    "url": api.url, "healthy": healthy, "settings_url": settings_url,
    "env_url": os.environ["PREFECT_API_URL"], "exited": api.process.poll() is not None,
    "heartbeats": heartbeats, "heartbeats_in_runs": heartbeats_in_runs, "nice_below": nice_below,
}))
"""


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PREFECT_HOME for the module: its database is created (migrated) once."""
    return tmp_path_factory.mktemp("prefect")


def fresh_env(home: Path, **env: str) -> dict[str, str]:
    """This environment without a configured API, with its own PREFECT_HOME."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return clean | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **env}


def run_script(
    home: Path, timeout: float, notice_after: float = 600, **env: str
) -> dict[str, object]:
    """SCRIPT's findings, and its ``stderr``."""
    clean = fresh_env(home, **env)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(timeout), str(notice_after)],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1])) | {"stderr": done.stderr}


def test_a_configured_server_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert EmbeddedAPI.start() is None


def test_the_api_starts_points_prefect_at_itself_and_stops(prefect_home: Path) -> None:
    # notice_after=0: said after the first health check that fails (the server is importing)
    result = run_script(prefect_home, timeout=120, notice_after=0)
    assert result["healthy"] is True
    assert str(result["stderr"]).count(NOTICE) == 1  # said once, however long the wait
    assert result["settings_url"] == result["env_url"] == result["url"]
    assert result["exited"] is True
    assert (prefect_home / "prefect.db").exists()  # this PREFECT_HOME's database
    # Flow runs against it send no heartbeats; Prefect's setting is untouched outside runs().
    assert result["heartbeats"] is not None
    assert result["heartbeats_in_runs"] is None
    assert result["nice_below"] == 5  # once up, below the round's priority


def test_an_api_that_cannot_start_names_the_url_and_the_way_around(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the database folder should be")
    result = run_script(
        tmp_path / "prefect",
        timeout=8,  # its startup fails, but uvicorn does not always exit after that
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{blocked}/prefect.db",
    )
    assert "error" in result, result
    message = str(result["error"])
    assert "http://127.0.0.1:" in message
    assert "exited with code" in message or "did not answer within 8 s" in message
    assert "prefect server start" in message and "PREFECT_API_URL" in message
    assert result["exited"] is True
    assert NOTICE not in str(result["stderr"])  # a wait shorter than notice_after is not told


KILLED_SCRIPT = """
import os, pathlib, signal, sys
from flows.embedded_api import EmbeddedAPI
api = EmbeddedAPI.start()
api.wait_ready(timeout=120)
pathlib.Path(sys.argv[1]).write_text(str(api.process.pid))
os.kill(os.getpid(), signal.SIGKILL)  # no finally, no exit hooks: as the OOM killer would
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_the_api_stops_when_the_round_is_killed(tmp_path: Path, prefect_home: Path) -> None:
    env = fresh_env(prefect_home)
    pid_file = tmp_path / "server.pid"
    done = subprocess.run(  # no pipes: a server left running would hold them open
        [sys.executable, "-c", KILLED_SCRIPT, str(pid_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=300,
    )
    assert done.returncode == -9
    server = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(server):
        time.sleep(0.2)
    assert not _alive(server), f"the API process {server} outlived the killed round"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))
