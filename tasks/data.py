"""Stage 1: load, validate and register the dataset versions a round starts from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from cartoflow.catalog import Catalog
from cartoflow.config import RoundConfig
from cartoflow.datasets import Dataset, LabelMap, load_dataset, stratified_split
from cartoflow.demo import GENERATOR_VERSION, demo_sizes, write_demo
from cartoflow.versions import read_version, register_version
from cartoflow.workspace import Workspace, write_json
from tasks.common import stopwatch


def demo_files(workspace: Workspace, size: str, seed: int) -> dict[str, Path]:
    """Generate the bundled demo data into the workspace once; later rounds reuse the files."""
    # the generator's version is in the path: a newer generator never reuses older files
    out = workspace.root / "demo-data" / f"{size}-seed{seed}-g{GENERATOR_VERSION}"
    paths = {split: out / f"{split}.parquet" for split in ("train", "eval", "unlabeled")}
    if not all(p.exists() for p in paths.values()):
        sizes = demo_sizes(size)
        write_demo(
            out,
            n_train=sizes["n_train"],
            n_eval=sizes["n_eval"],
            n_unlabeled=sizes["n_unlabeled"],
            seed=seed,
        )
    return paths


def _label_map(workspace: Workspace, dataset: str, loaded: Dataset) -> LabelMap:
    """The dataset's stored label map, created from the first version it sees."""
    path = workspace.dataset_dir(dataset) / "labels.json"
    if path.exists():
        return LabelMap.from_json(path.read_text(encoding="utf-8"))
    write_json(path, json.loads(loaded.label_map.to_json()))
    return loaded.label_map


@task(name="load-and-validate", retries=0)
def load_data(config: RoundConfig, *, workspace: str, round_id: str) -> dict[str, Any]:
    """Load the training (and eval, unlabeled) data, validate it, and register versions.

    Returns plain data: dataset name, version numbers, content hashes, file paths relative to
    the workspace, label names and the seconds it took.
    """
    logger = get_run_logger()
    ws = Workspace.resolve(workspace).ensure()
    catalog = Catalog(ws.catalog_path)
    with stopwatch() as t:
        paths: dict[str, Path | None] = {
            "train": Path(config.train_path) if config.train_path else None,
            "eval": Path(config.eval_path) if config.eval_path else None,
            "unlabeled": Path(config.unlabeled_path) if config.unlabeled_path else None,
        }
        if config.start_version is not None:
            record = catalog.get_version(config.dataset, config.start_version)
            frame = read_version(record, workspace=ws)
            label_map = LabelMap.from_json(
                (ws.dataset_dir(config.dataset) / "labels.json").read_text(encoding="utf-8")
            )
            train = Dataset(frame=frame, label_map=label_map, source=ws.root / record.file)
            paths["eval"] = paths["eval"] or _stored_path(ws, catalog, config.dataset, "eval")
            paths["unlabeled"] = paths["unlabeled"] or _stored_path(
                ws, catalog, config.dataset, "unlabeled"
            )
        else:
            if paths["train"] is None:
                demo = demo_files(ws, config.demo_size, config.seed)
                paths = {k: paths[k] or demo[k] for k in paths}
                logger.info("No training file given: using the bundled demo data %s", demo)
            assert paths["train"] is not None
            train = load_dataset(paths["train"], columns=config.columns)
        label_map = _label_map(ws, config.dataset, train)
        if config.start_version is None and label_map != train.label_map:
            # Read again against the dataset's stored map (classes of earlier versions).
            train = load_dataset(paths["train"], columns=config.columns, label_map=label_map)

        if paths["eval"] is not None:
            eval_set = load_dataset(paths["eval"], columns=config.columns, label_map=label_map)
        else:
            train, eval_set = stratified_split(
                train, eval_fraction=config.eval_fraction, seed=config.seed
            )
        versions = {
            "train": register_version(
                train.frame,
                workspace=ws,
                catalog=catalog,
                dataset=config.dataset,
                round_id=round_id,
                note=f"loaded from {train.source}",
                promoted=True,
            ),
            "eval": register_version(
                eval_set.frame,
                workspace=ws,
                catalog=catalog,
                dataset=f"{config.dataset}.eval",
                round_id=round_id,
                note=f"eval set of {config.dataset}",
            ),
        }
        if paths["unlabeled"] is not None:
            unlabeled = load_dataset(
                paths["unlabeled"], columns=config.columns.model_copy(update={"label": None})
            )
            versions["unlabeled"] = register_version(
                unlabeled.frame,
                workspace=ws,
                catalog=catalog,
                dataset=f"{config.dataset}.unlabeled",
                round_id=round_id,
                note="unlabeled pool",
            )
    info = {
        "dataset": config.dataset,
        "label_names": list(label_map.names),
        **{
            split: {"version": rec.version, "hash": rec.hash, "file": rec.file, "rows": rec.rows}
            for split, rec in versions.items()
        },
        "seconds": t["seconds"],
    }
    logger.info(
        "Dataset %s v%d: %d training rows, %d eval rows, classes %s",
        config.dataset,
        info["train"]["version"],
        info["train"]["rows"],
        info["eval"]["rows"],
        info["label_names"],
    )
    return info


def _stored_path(ws: Workspace, catalog: Catalog, dataset: str, split: str) -> Path | None:
    latest = catalog.latest_version(f"{dataset}.{split}")
    return None if latest is None else ws.root / latest.file
