"""Data-quality gates: one Prefect task per stage contract, each a Great Expectations suite.

A gate reads the stage's output, validates it (in the Great Expectations helper process of
:mod:`cartoflow.quality.worker`), records the result in the catalog and, on failure, publishes
a table artifact of the failed expectations and raises ``DataQualityError`` naming each
expectation, its unexpected count and up to 20 example ids. Gates only read: nothing written
before a gate is changed by it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as pads
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger

from cartoflow.catalog import Catalog
from cartoflow.quality import failure_rows, raise_for_failures
from cartoflow.quality.worker import build_data_docs, run_suite, start
from cartoflow.versions import read_candidate, read_registered
from cartoflow.workspace import Workspace
from tasks.common import artifact_key, clear_stop, content_key, request_stop, stopwatch


class GateRuns:
    """A round's gate results in stage order, some still running beside the next stage.

    A gate only reads the stage output it checks, and the stages after it up to the next
    barrier only write new files into the round folder, so the gate can validate while they
    run (on the Great Expectations helper's core) instead of before them::

        with gates.beside(gate_metrics.submit(data, before, **checks)):
            pools = select_sample_pools(data, before, ...)
        ...
        gates.settled()  # the barrier, before the round hands anything on

    A failed gate still stops the round with its own error: at the barrier, or at once when a
    stage beside it fails (bad rows that the gate names usually are why). What the round hands
    on (the batch people see, a registered version, a promotion, the report) waits for
    :meth:`settled`.
    """

    def __init__(self, round_id: str) -> None:
        self._runs: list[dict[str, Any] | PrefectFuture[dict[str, Any]]] = []
        self._round_id = round_id
        clear_stop(round_id)  # a failed gate asks the round's trainings to stop (in _gate)

    def append(self, gate: dict[str, Any] | PrefectFuture[dict[str, Any]]) -> None:
        """A gate that ran before the next stage (its result), or one still running (its
        submitted task), settled at the next barrier."""
        self._runs.append(gate)

    @contextmanager
    def beside(self, gate: PrefectFuture[dict[str, Any]]) -> Iterator[None]:
        """Run the block while ``gate`` (a submitted gate task) validates.

        Raises:
            DataQualityError: the block failed and so did this gate or an earlier one (the
                first in stage order); the block's error is kept as its context.
        """
        self._runs.append(gate)
        try:
            yield
        except Exception:
            self.settled()  # a failed gate's error names the rows the stage choked on
            raise

    @contextmanager
    def training_beside(self, training: PrefectFuture[Any]) -> Iterator[None]:
        """Run the block (a barrier, a registration) while ``training`` (a submitted training of
        this round) runs.

        A gate that fails asks the round's trainings to stop at their next batch; so does a
        block that fails. Either way the training is waited for and the block's error raised,
        seconds after the failure instead of after the whole training.
        """
        try:
            yield
        except BaseException:
            request_stop(self._round_id, "the round failed beside it")
            training.wait()
            raise

    def settled(self) -> list[dict[str, Any]]:
        """Every gate's result in stage order, after waiting for those still running.

        Raises:
            DataQualityError: the first failed gate, in stage order.
        """
        results = [r if isinstance(r, dict) else r.result() for r in self._runs]
        self._runs = [*results]
        return results


def warm_up_quality() -> None:
    """Launch the gates' Great Expectations process (:mod:`cartoflow.quality.worker`) now: it
    imports Great Expectations while the first stages run."""
    start()


def docs_dir(workspace: str, round_id: str) -> Path:
    return Workspace.resolve(workspace).run_dir(round_id) / "data_docs"


def _gate(
    suite: str,
    frame: Any,
    *,
    round_id: str,
    workspace: str,
    raise_on_failure: bool = True,
    enabled: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """Run one suite, record it, publish failures, and raise when an error check failed."""
    if not enabled:
        get_run_logger().warning("Gate %s is switched off (quality_gates=False).", suite)
        return {"gate": suite, "success": True, "skipped": True, "seconds": 0.0}
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        result = run_suite(
            suite,
            frame,
            data_docs_dir=docs_dir(workspace, round_id),
            render_docs=False,
            **params,
        )
    failures = failure_rows(result)
    summary = {
        "gate": suite,
        "success": bool(result["success"]),
        "failed": [f["expectation"] for f in failures if f["severity"] == "error"],
        "warnings": [f["expectation"] for f in failures if f["severity"] == "warning"],
        "statistics": result["statistics"],
        "seconds": t["seconds"],
    }
    Catalog(ws.catalog_path).record_gate(
        round_id, suite, success=summary["success"], summary=summary
    )
    logger = get_run_logger()
    if failures:
        create_table_artifact(
            table=failures,
            key=artifact_key("round", round_id, "gate", suite),
            description=f"Failed expectations of the {suite} gate",
        )
    if not result["success"]:
        if raise_on_failure:  # a training beside this gate stops at its next batch
            request_stop(round_id, f"the {suite} gate failed")
        build_data_docs(docs_dir(workspace, round_id))
        if raise_on_failure:
            raise_for_failures(result)
    elif summary["warnings"]:
        logger.warning("Gate %s passed with warnings: %s", suite, summary["warnings"])
    else:
        logger.info("Gate %s passed (%d checks)", suite, result["statistics"]["evaluated"])
    return summary


def _before_the_pause(*inputs: str) -> dict[str, Any]:
    """Task options for a gate that runs before the human pause: cached by content.

    Its inputs are content-addressed results (hashes, configs) of cached stages, so a suspended
    round that Prefect re-runs from the top gets the gate's result back instead of validating,
    and recording the result in the catalog, a second time. A failed gate is not cached.
    """
    names = (*inputs, "round_id", "workspace", "enabled")
    return {"cache_key_fn": content_key(*names), "persist_result": True}


def _version_frame(data: dict[str, Any], content_hash: str, workspace: str) -> pd.DataFrame:
    return read_registered(Workspace.resolve(workspace), data["dataset"], content_hash)


@task(name="gate-dataset", **_before_the_pause("data", "min_class_share"))
def gate_dataset(
    data: dict[str, Any],
    *,
    min_class_share: float,
    round_id: str,
    workspace: str,
    enabled: bool = True,
) -> dict[str, Any]:
    """The training version: columns, unique ids, non-empty text, known labels, class shares."""
    frame = _version_frame(data, data["train"]["hash"], workspace)
    return _gate(
        "dataset",
        frame,
        labels=data["label_names"],
        min_class_share=min_class_share,
        round_id=round_id,
        workspace=workspace,
        enabled=enabled,
    )


@task(name="gate-dynamics", **_before_the_pause("trained"))
def gate_dynamics(
    trained: dict[str, Any], *, round_id: str, workspace: str, enabled: bool = True
) -> dict[str, Any]:
    """Recorded dynamics: one row per sample and epoch, probabilities valid, margins finite."""
    ws = Workspace.resolve(workspace)
    table = pads.dataset(
        ws.root / trained["dynamics"], format="parquet", partitioning="hive"
    ).to_table()
    return _gate(
        "dynamics",
        table,
        num_samples=int(trained["rows"]),
        num_epochs=int(trained["epochs"]),
        round_id=round_id,
        workspace=workspace,
        enabled=enabled,
    )


@task(name="gate-metrics", **_before_the_pause("data", "metrics"))
def gate_metrics(
    data: dict[str, Any],
    metrics: dict[str, Any],
    *,
    round_id: str,
    workspace: str,
    enabled: bool = True,
) -> dict[str, Any]:
    """Metrics: one row per sample, every score in its range, never_learnt iff correctness 0."""
    ws = Workspace.resolve(workspace)
    frame = pd.read_parquet(ws.root / metrics["metrics"])
    return _gate(
        "metrics",
        frame,
        num_epochs=int(metrics["epochs"]),
        num_samples=len(frame),
        labels=range(len(data["label_names"])),
        round_id=round_id,
        workspace=workspace,
        enabled=enabled,
    )


@task(name="gate-pools", **_before_the_pause("data", "pools", "budgets"))
def gate_pools(
    data: dict[str, Any],
    pools: dict[str, Any],
    *,
    budgets: dict[str, int | None],
    round_id: str,
    workspace: str,
    enabled: bool = True,
) -> dict[str, Any]:
    """Pools: ids and groups unique across pools, a subset of training, within budgets."""
    ws = Workspace.resolve(workspace)
    frame = pd.read_parquet(ws.root / pools["pools"])
    training = _version_frame(data, data["train"]["hash"], workspace)
    return _gate(
        "pools",
        frame,
        training_ids=training["id"],
        labels=range(len(data["label_names"])),
        budgets=budgets,
        round_id=round_id,
        workspace=workspace,
        enabled=enabled,
    )


@task(name="gate-annotations")
def gate_annotations(
    data: dict[str, Any],
    batch: dict[str, Any],
    *,
    filled_path: str | None,
    inline_labels: dict[str, str],
    round_id: str,
    workspace: str,
    enabled: bool = True,
) -> dict[str, Any]:
    """What people returned, read raw: ids from the batch, once each, labels valid; coverage."""
    if inline_labels:
        raw = pd.DataFrame(
            {"id": list(inline_labels), "new_label": list(inline_labels.values())}, dtype="string"
        )
    else:
        path = Path(filled_path or batch["csv"])
        raw = (
            pd.read_parquet(path).astype("string")
            if path.suffix == ".parquet"
            else pd.read_csv(path, dtype=str, keep_default_na=False)
        )
    batch_ids = pd.read_parquet(batch["parquet"], columns=["id"])["id"]
    return _gate(
        "annotations",
        raw,
        batch_ids=batch_ids,
        labels=data["label_names"],
        round_id=round_id,
        workspace=workspace,
        enabled=enabled,
    )


@task(name="gate-new-version")
def gate_new_version(
    data: dict[str, Any],
    candidate: dict[str, Any],
    *,
    round_id: str,
    workspace: str,
    enabled: bool = True,
) -> dict[str, Any]:
    """The candidate version: parent - removed + added rows, unchanged rows identical."""
    ws = Workspace.resolve(workspace)
    return _gate(
        "new_version",
        read_candidate(ws.root / candidate["candidate"], candidate["hash"]),
        parent=_version_frame(data, data["train"]["hash"], workspace),
        decisions=pd.read_parquet(ws.root / candidate["decisions"]),
        labels=data["label_names"],
        round_id=round_id,
        workspace=workspace,
        enabled=enabled,
    )


@task(name="gate-model")
def gate_model(
    baseline: dict[str, Any],
    retrained: dict[str, Any],
    *,
    tolerance: float,
    round_id: str,
    workspace: str,
    enabled: bool = True,
) -> dict[str, Any]:
    """Promote only if the retrained macro-F1 >= baseline - tolerance. Never raises: a model
    that got worse leaves the new version unpromoted and the report says why."""
    summary = _gate(
        "model",
        None,
        baseline_macro_f1=float(baseline["eval"]["macro_f1"]),
        retrained_macro_f1=float(retrained["eval"]["macro_f1"]),
        baseline_accuracy=float(baseline["eval"]["accuracy"]),
        retrained_accuracy=float(retrained["eval"]["accuracy"]),
        tolerance=tolerance,
        raise_on_failure=False,
        round_id=round_id,
        workspace=workspace,
        enabled=enabled,
    )
    if not summary["success"]:  # a switched-off gate reports success
        summary["reason"] = (
            f"retrained macro-F1 {retrained['eval']['macro_f1']:.4f} is below baseline "
            f"{baseline['eval']['macro_f1']:.4f} - tolerance {tolerance}"
        )
    return summary


@task(name="data-docs")
def render_data_docs(*, round_id: str, workspace: str) -> str:
    """Render the Great Expectations Data Docs pages of the gates run since the last render."""
    ws = Workspace.resolve(workspace)
    return str(build_data_docs(docs_dir(workspace, round_id)).relative_to(ws.root))
