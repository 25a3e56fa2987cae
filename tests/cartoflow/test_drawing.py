"""cartoflow.drawing: figures drawn in helper processes are the files drawn in-process."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cartoflow import drawing
from cartoflow.datamap import plot_before_after, plot_data_map
from cartoflow.errors import DataValidationError


def _metrics(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    epochs = 5
    correctness = rng.integers(0, epochs + 1, n)
    return pd.DataFrame(
        {
            "confidence": rng.uniform(0, 1, n),
            "variability": rng.uniform(0, 0.4, n),
            "correctness": correctness,
            "corr_frac": correctness / epochs,
        }
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    before, after = tmp_path / "before.parquet", tmp_path / "after.parquet"
    _metrics(400, 0).to_parquet(before)
    _metrics(380, 1).to_parquet(after)
    return {"before": before, "after": after}


@pytest.fixture(autouse=True)
def _fresh_helpers() -> Iterator[None]:
    drawing.stop()
    yield
    drawing.stop()


def test_a_helper_draws_the_same_file_as_this_process(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_here(*args: str) -> str:
        raise AssertionError("drawn in the test process, not in a helper")

    drawing.start()
    for name in list(drawing.FIGURES):  # the helpers keep their own table
        monkeypatch.setitem(drawing.FIGURES, name, not_here)
    helper = tmp_path / "helper.png"
    assert drawing.draw("data_map", files["before"], helper, "map") == helper
    here = plot_data_map(pd.read_parquet(files["before"]), tmp_path / "here.png", title="map")
    assert helper.read_bytes() == here.read_bytes()
    pair = drawing.draw("before_after", files["before"], files["after"], tmp_path / "ba.png")
    local = plot_before_after(
        pd.read_parquet(files["before"]), pd.read_parquet(files["after"]), tmp_path / "ba2.png"
    )
    assert pair.read_bytes() == local.read_bytes()


def test_two_figures_at_once_use_both_helpers(files: dict[str, Path], tmp_path: Path) -> None:
    drawing.start()
    used: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda i=i: used.append(
                drawing.draw("data_map", files["before"], tmp_path / f"{i}.png", str(i))
            )
        )
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.name for p in used) == ["0.png", "1.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in used)


def test_an_error_in_the_helper_is_raised_here_with_its_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"confidence": [0.5]}).to_parquet(bad)
    with pytest.raises(DataValidationError, match="variability"):
        drawing.draw("data_map", bad, tmp_path / "x.png", "bad")
    assert not (tmp_path / "x.png").exists()


def test_without_a_helper_the_figure_is_drawn_here(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_processes(*args: object, **kwargs: object) -> None:
        raise OSError("no processes here")

    monkeypatch.setattr(subprocess, "Popen", no_processes)
    out = drawing.draw("data_map", files["before"], tmp_path / "m.png", "map")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_a_helper_that_died_is_started_again(files: dict[str, Path], tmp_path: Path) -> None:
    drawing.start()
    for helper in drawing._HELPERS:
        assert helper._process is not None
        helper._process.kill()
        helper._process.wait()
    # A dead helper is noticed and started again before the request.
    out = drawing.draw("data_map", files["before"], tmp_path / "m.png", "map")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_an_unknown_figure_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="data_map, before_after"):
        drawing.draw("pie", tmp_path / "x.png")
