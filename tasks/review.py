"""Stage 6: wait for people (or let the simulated annotator answer).

``wait_for_review`` runs in the flow itself, not as a task: Prefect can only pause or suspend a
flow run from the flow's own context.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from pydantic import Field

from cartoflow.annotate import SimulatedAnnotator
from cartoflow.catalog import Catalog
from cartoflow.config import RoundConfig
from cartoflow.versions import read_version
from cartoflow.workspace import Workspace, write_frame
from tasks.common import artifact_key

if TYPE_CHECKING:
    from prefect.futures import PrefectFuture


class ApprovalInput(RunInput):
    """The form a reviewer fills in the Prefect UI to approve (or reject) a relabelling batch."""

    approve: bool = Field(False, description="Apply the filled batch as a new dataset version.")
    batch_path: str = Field("", description="The filled batch file (CSV or Parquet).")
    strategy: Literal["fix", "remove"] = Field(
        "fix", description="For disputed relabel-pool labels: fix them, or remove the samples."
    )
    reviewer: str = Field("", description="Who reviewed the batch.")
    notes: str = Field("", description="Anything the next reader of this round should know.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description='Small batches: labels entered inline, {"sample id": "label"}.',
    )


def wait_for_review(
    config: RoundConfig,
    data: dict[str, Any],
    batch: dict[str, Any],
    *,
    published: PrefectFuture[dict[str, Any]] | None,
    round_id: str,
    workspace: str,
) -> ApprovalInput:
    """Return the reviewers' answer: from people through the Prefect UI, or simulated.

    ``published`` is the batch's artifacts being sent (``publish_batch``): people are asked
    only once they are there. None for a simulated review, which does not read them.
    """
    if batch["rows"] == 0:  # nobody needs to be asked about an empty batch
        return ApprovalInput(approve=False, reviewer="cartoflow", notes="nothing to review")
    column = config.simulated_column
    if column is not None:
        return _simulate(config, data, batch, column=column, round_id=round_id, workspace=workspace)
    if published is None:
        raise ValueError(
            f"A review by people needs the batch's published summary ({batch['csv']}): pass "
            "publish_batch's future as `published`."
        )
    summary_file = published.result()["summary"]  # raises if they could not be published
    summary = (Workspace.resolve(workspace).root / summary_file).read_text(encoding="utf-8")
    form = ApprovalInput.with_initial_data(
        description=summary, batch_path=batch["csv"], strategy=_strategy(config)
    )
    timeout = int(config.timeout_days * 86400)
    key = artifact_key("approve", round_id)  # one key per round: a reused key returns old input
    if config.wait == "suspend":
        answer = suspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
    else:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, key=key)
    assert answer is not None
    return answer


def _strategy(config: RoundConfig) -> Literal["fix", "remove"]:
    return config.strategies.get("relabel", "fix")


def _simulate(
    config: RoundConfig,
    data: dict[str, Any],
    batch: dict[str, Any],
    *,
    column: str,
    round_id: str,
    workspace: str,
) -> ApprovalInput:
    """Fill the batch from a hidden column (demos, tests, experiments) and approve it."""
    ws = Workspace.resolve(workspace)
    catalog = Catalog(ws.catalog_path)
    truth_frames = []
    for split in ("train", "unlabeled"):
        if split in data:
            name = data["dataset"] if split == "train" else f"{data['dataset']}.{split}"
            record = catalog.find_version(name, data[split]["hash"])
            assert record is not None
            frame = read_version(record, workspace=ws)
            if column not in frame.columns:
                raise KeyError(
                    f"The simulated annotator answers from column {column!r}, but "
                    f"{ws.root / record.file} has only {list(frame.columns)}."
                )
            truth_frames.append(frame[["id", column]])
    # samples added in an earlier round are in both the training and the unlabeled version
    truth = pd.concat(truth_frames).drop_duplicates("id").set_index("id")[column]
    annotator = SimulatedAnnotator(
        column=column,
        error_rate=config.annotator_error_rate,
        seed=config.seed,
        label_names=list(data["label_names"]),
    )
    filled = annotator.annotate(pd.read_parquet(batch["parquet"]), truth)
    path = write_frame(filled, ws.run_dir(round_id) / "batch_filled.parquet")
    return ApprovalInput(
        approve=True,
        batch_path=str(Path(path)),
        strategy=_strategy(config),
        reviewer=config.annotator,
        notes=f"simulated from column {column!r}, error rate {config.annotator_error_rate}",
    )
