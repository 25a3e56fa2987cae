"""A real Prefect server on a free loopback port, and ``deployments/serve.py`` serving against it.

Both are package-scoped: started once for ``tests/deployments/`` and stopped after it, so the
session's test harness (``tests/flows/``) never sees this server.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deployments.support import TIMEZONE, Process, free_port, prefect_env, served


@dataclass(frozen=True)
class Server:
    url: str  # the UI, e.g. http://127.0.0.1:43127
    api_url: str  # its API, url + "/api"
    process: Process


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``prefect server start`` on 127.0.0.1, SQLite under a temporary PREFECT_HOME."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = prefect_env(home=home, PREFECT_UI_API_URL=f"{url}/api")  # the UI calls this API
    process = Process(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env,
        log=home / "server.log",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            process.check_alive()
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no Prefect server after 180 s\n{process.tail()}")
            time.sleep(1)
        with temporary_settings(updates={PREFECT_API_URL: f"{url}/api"}):
            yield Server(url=url, api_url=f"{url}/api", process=process)
    finally:
        process.stop()


@pytest.fixture(scope="package")
def serving(prefect_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """Every cartoflow deployment, served by one ``deployments/serve.py`` process."""
    home = tmp_path_factory.mktemp("serve")
    with served(
        api_url=prefect_server.api_url,
        home=home,
        log=home / "serve.log",
        CARTOFLOW_TIMEZONE=TIMEZONE,
        CARTOFLOW_WORKSPACE=str(home / "default-workspace"),
    ) as process:
        yield process


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where the browser test leaves its screenshots (git-ignored)."""
    path = Path(__file__).parent / "artifacts"
    path.mkdir(exist_ok=True)
    return path
