"""``GateRuns``: gates that validate beside the next stage still stop the round with their error."""

from __future__ import annotations

from typing import Any

import pytest

from cartoflow.errors import DataQualityError
from tasks.common import request_stop, stop_requested
from tasks.gates import GateRuns


class Finished:
    """A submitted gate's future, already done: its result, or its error raised."""

    def __init__(self, suite: str, error: Exception | None = None) -> None:
        self.suite, self.error, self.asked = suite, error, 0

    def result(self) -> dict[str, Any]:
        self.asked += 1
        if self.error is not None:
            raise self.error
        return {"gate": self.suite, "success": True, "seconds": 0.1}


def failed(suite: str) -> Finished:
    return Finished(suite, DataQualityError(f"Data-quality gate `{suite}` failed 1 error check"))


def test_settled_gives_every_result_in_stage_order() -> None:
    gates = GateRuns("r1")
    gates.append({"gate": "dataset", "success": True, "seconds": 0.2})
    with gates.beside(Finished("dynamics")):  # type: ignore[arg-type]
        pass
    gates.append({"gate": "new_version", "success": True, "seconds": 0.3})
    assert [g["gate"] for g in gates.settled()] == ["dataset", "dynamics", "new_version"]
    assert [g["gate"] for g in gates.settled()] == ["dataset", "dynamics", "new_version"]


def test_a_failed_gate_stops_the_round_at_the_barrier() -> None:
    gates = GateRuns("r1")
    with gates.beside(failed("metrics")):  # type: ignore[arg-type]
        done = "the stage beside it ran"
    assert done
    with gates.beside(failed("pools")):  # type: ignore[arg-type]
        pass
    with pytest.raises(DataQualityError, match="`metrics`"):  # the first in stage order
        gates.settled()


def test_a_stage_that_fails_beside_a_failed_gate_raises_the_gates_error() -> None:
    gates = GateRuns("r1")
    with (
        pytest.raises(DataQualityError, match="`metrics`") as raised,
        gates.beside(failed("metrics")),  # type: ignore[arg-type]
    ):
        raise KeyError("confidence")  # what the bad rows did to the stage
    assert isinstance(raised.value.__context__, KeyError)


def test_an_earlier_failed_gate_comes_before_a_later_stage_error() -> None:
    gates = GateRuns("r1")
    with gates.beside(failed("metrics")):  # type: ignore[arg-type]
        pass
    later = Finished("pools")
    with (
        pytest.raises(DataQualityError, match="`metrics`"),
        gates.beside(later),  # type: ignore[arg-type]
    ):
        raise ValueError("expansion choked")


def test_a_stage_error_beside_passing_gates_is_its_own() -> None:
    gates = GateRuns("r1")
    gate = Finished("pools")
    with pytest.raises(ValueError, match="choked"), gates.beside(gate):  # type: ignore[arg-type]
        raise ValueError("expansion choked")
    assert gate.asked == 1  # it was waited for before the stage's error went on


class Training:
    """A submitted training's future: ``wait`` records that the round waited for it."""

    def __init__(self) -> None:
        self.waited = False

    def wait(self) -> None:
        self.waited = True


def test_a_round_starts_without_an_earlier_runs_stop_request() -> None:
    request_stop("r1", "the dataset gate failed")  # a run of r1 before a suspension
    GateRuns("r1")
    assert stop_requested("r1") is None


def test_a_block_that_fails_beside_a_training_stops_it_and_waits() -> None:
    gates = GateRuns("r1")
    training = Training()
    with (
        pytest.raises(DataQualityError, match="`new_version`"),
        gates.training_beside(training),  # type: ignore[arg-type]
    ):
        gates.append(failed("new_version"))  # type: ignore[arg-type]
        gates.settled()
    assert training.waited
    assert stop_requested("r1") == "the round failed beside it"


def test_a_block_that_passes_beside_a_training_leaves_it_running() -> None:
    gates = GateRuns("r1")
    training = Training()
    with gates.training_beside(training):  # type: ignore[arg-type]
        gates.append(Finished("new_version"))  # type: ignore[arg-type]
        gates.settled()
    assert not training.waited and stop_requested("r1") is None
