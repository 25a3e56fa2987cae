"""The README's library example runs as written, and the library stays free of Prefect."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(markdown: str, heading: str) -> list[str]:
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_library_example_runs(tmp_path: Path) -> None:
    (block,) = _python_blocks((ROOT / "README.md").read_text(), "## Use the library")
    assert len(block.strip().splitlines()) <= 30
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs/example/data_map.png").stat().st_size > 10_000
    assert "pool" in result.stdout


def test_library_never_imports_prefect() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "cartoflow").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+prefect\b", path.read_text(), flags=re.M)
    ]
    assert offenders == []
    modules = sorted(
        "cartoflow." + ".".join(p.relative_to(ROOT / "cartoflow").with_suffix("").parts)
        for p in (ROOT / "cartoflow").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "heavy = ('prefect', 'great_expectations')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
