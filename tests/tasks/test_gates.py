"""``GateRuns``: gates that validate beside the next stage still stop the round with their error."""

from __future__ import annotations

from typing import Any

import pytest

from cartoflow.errors import DataQualityError
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
    gates = GateRuns()
    gates.append({"gate": "dataset", "success": True, "seconds": 0.2})
    with gates.beside(Finished("dynamics")):  # type: ignore[arg-type]
        pass
    gates.append({"gate": "new_version", "success": True, "seconds": 0.3})
    assert [g["gate"] for g in gates.settled()] == ["dataset", "dynamics", "new_version"]
    assert [g["gate"] for g in gates.settled()] == ["dataset", "dynamics", "new_version"]


def test_a_failed_gate_stops_the_round_at_the_barrier() -> None:
    gates = GateRuns()
    with gates.beside(failed("metrics")):  # type: ignore[arg-type]
        done = "the stage beside it ran"
    assert done
    with gates.beside(failed("pools")):  # type: ignore[arg-type]
        pass
    with pytest.raises(DataQualityError, match="`metrics`"):  # the first in stage order
        gates.settled()


def test_a_stage_that_fails_beside_a_failed_gate_raises_the_gates_error() -> None:
    gates = GateRuns()
    with (
        pytest.raises(DataQualityError, match="`metrics`") as raised,
        gates.beside(failed("metrics")),  # type: ignore[arg-type]
    ):
        raise KeyError("confidence")  # what the bad rows did to the stage
    assert isinstance(raised.value.__context__, KeyError)


def test_an_earlier_failed_gate_comes_before_a_later_stage_error() -> None:
    gates = GateRuns()
    with gates.beside(failed("metrics")):  # type: ignore[arg-type]
        pass
    later = Finished("pools")
    with (
        pytest.raises(DataQualityError, match="`metrics`"),
        gates.beside(later),  # type: ignore[arg-type]
    ):
        raise ValueError("expansion choked")


def test_a_stage_error_beside_passing_gates_is_its_own() -> None:
    gates = GateRuns()
    gate = Finished("pools")
    with pytest.raises(ValueError, match="choked"), gates.beside(gate):  # type: ignore[arg-type]
        raise ValueError("expansion choked")
    assert gate.asked == 1  # it was waited for before the stage's error went on
