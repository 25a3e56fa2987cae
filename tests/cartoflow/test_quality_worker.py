"""cartoflow.quality.worker: the gates' validations in a helper process, same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from cartoflow.quality import runner, worker

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["neg", "pos"]


def frame() -> pd.DataFrame:
    """A training version with a duplicated id (b) and an unknown label (x)."""
    return pd.DataFrame(
        {
            "id": ["a", "b", "b", "d"],
            "text": ["good film", "bad plot", "fine", "dull"],
            "label": ["pos", "neg", "x", "neg"],
        }
    )


def _comparable(result: dict[str, Any]) -> dict[str, Any]:
    return {
        **result,
        "statistics": {**result["statistics"], "seconds": None},
        "data_docs": None,
        "data_docs_page": None,
    }


def test_the_worker_reports_what_this_process_reports(tmp_path: Path) -> None:
    there = worker.run_suite(
        "dataset", frame(), labels=LABELS, data_docs_dir=tmp_path / "w", render_docs=False
    )
    assert worker._HELPER._process is not None and worker._HELPER._process.poll() is None
    here = runner.run_suite(
        "dataset", frame(), labels=LABELS, data_docs_dir=tmp_path / "h", render_docs=False
    )
    assert _comparable(there) == _comparable(here)
    failed = {r["expectation"]: r["examples"] for r in there["results"] if not r["success"]}
    assert failed == {"id_unique": ["b"], "label_in_set": ["b"]}
    # The worker renders the pages of the results it stored.
    index = worker.build_data_docs(tmp_path / "w")
    assert index == (tmp_path / "w").resolve() / "index.html"
    assert "dataset" in index.read_text()
    # Below the round's priority: the stages the round waits for take the cores first.
    assert os.getpriority(os.PRIO_PROCESS, worker._HELPER._process.pid) == min(os.nice(0) + 5, 19)


SCRIPT = """
import json, sys
import pandas as pd
from cartoflow.quality import worker
worker.start()
frame = pd.DataFrame({"id": ["a", "a"], "text": ["x", "y"], "label": ["pos", "neg"]})
result = worker.run_suite("dataset", frame, labels=["neg", "pos"])
print(json.dumps({
    "gx_here": "great_expectations" in sys.modules,
    "failed": [r["expectation"] for r in result["results"] if not r["success"]],
}))
"""


def test_great_expectations_is_imported_by_the_worker_not_by_the_caller() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    assert reply == {"gx_here": False, "failed": ["id_unique"]}
