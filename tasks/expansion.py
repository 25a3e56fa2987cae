"""Expansion candidates from the unlabeled pool, and the near-duplicate ``conflict`` pool.

``select_expansion_candidates`` embeds the training set and the unlabeled pool with the round's
baseline model, leaves out unlabeled texts that are near-duplicates of a training text or of an
earlier unlabeled text (:func:`cartoflow.neardup.dedup_batch`), takes the hard and very-hard
pools as seeds and picks their nearest remaining neighbours with a budget per pool
(:func:`cartoflow.expansion.select_expansion`); see :class:`~cartoflow.expansion.ExpansionConfig`.
``select_conflict_pool`` finds near-duplicate training texts with different labels
(:func:`cartoflow.neardup.conflict_pool`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from cartoflow.catalog import Catalog
from cartoflow.expansion import (
    CANDIDATE_POOL_PREFIX,
    EXPANSION_COLUMNS,
    ExpansionConfig,
    select_expansion,
)
from cartoflow.neardup import conflict_pool, dedup_batch
from cartoflow.train import load_model
from cartoflow.versions import read_version
from cartoflow.workspace import Workspace, write_frame
from tasks.common import artifact_key, content_key, publish_markdown, stopwatch

CANDIDATE_COLUMNS = (*EXPANSION_COLUMNS, "pool", "text", "group")
"""Columns of ``expansion.parquet`` (``group`` only when the unlabeled pool has groups)."""


def _version(ws: Workspace, dataset: str, content_hash: str) -> pd.DataFrame:
    record = Catalog(ws.catalog_path).find_version(dataset, content_hash)
    if record is None:
        raise KeyError(f"Dataset version {dataset} {content_hash[:12]} is not registered.")
    return read_version(record, workspace=ws)


def _empty_candidates(with_group: bool) -> pd.DataFrame:
    columns = [c for c in CANDIDATE_COLUMNS if with_group or c != "group"]
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})


def _markdown(round_id: str, counts: dict[str, int], seeds: dict[str, int], dropped: int) -> str:
    lines = [
        f"# Expansion candidates for `{round_id}`",
        "",
        "| seed pool | seeds | candidates |",
        "|---|---:|---:|",
        *[f"| {pool} | {seeds[pool]} | {counts.get(pool, 0)} |" for pool in seeds],
        "",
        f"{dropped} unlabeled texts left out as near-duplicates of a training text or of an "
        "earlier unlabeled text.",
    ]
    return "\n".join(lines) + "\n"


@task(
    name="expansion",
    cache_key_fn=content_key("trained", "pools", "config", "round_id"),
    persist_result=True,
)
def select_expansion_candidates(
    data: dict[str, Any],
    trained: dict[str, Any],
    pools: dict[str, Any],
    config: ExpansionConfig,
    *,
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Pick unlabeled samples similar to the seed pools; write ``runs/<round>/expansion.parquet``.

    Args:
        data: ``load_data``'s result (the ``unlabeled`` split is optional: without it the file
            is written empty).
        trained: ``train_model``'s result for the model whose embeddings are used (its
            ``train_hash`` names the version the pools were picked from).
        pools: ``select_sample_pools``' result.
        config: seed pools, budgets, neighbours per seed, de-duplication thresholds.

    Returns:
        ``expansion`` (workspace-relative path), ``rows``, ``counts`` (candidates per seed
        pool), ``seeds`` (seeds per pool), ``near_duplicates_left_out`` (unlabeled texts not
        eligible) and ``seconds``. The file
        has :data:`CANDIDATE_COLUMNS`: the expansion columns, ``pool`` (``expand:<seed pool>``,
        the batch's pool name), ``text`` and ``group`` of each candidate, in pick order.
    """
    logger = get_run_logger()
    ws = Workspace.resolve(workspace)
    out_path = ws.run_dir(round_id) / "expansion.parquet"
    with stopwatch() as t:
        train = _version(ws, data["dataset"], trained["train_hash"])
        selected = pd.read_parquet(ws.root / pools["pools"])
        seeds = {name: selected[selected["pool"] == name] for name in config.seed_pools}
        seed_counts = {name: len(rows) for name, rows in seeds.items()}
        unlabeled = (
            _version(ws, f"{data['dataset']}.unlabeled", data["unlabeled"]["hash"])
            if "unlabeled" in data
            else None
        )
        dropped = 0
        if unlabeled is None or len(unlabeled) == 0:
            logger.warning("No unlabeled pool: no expansion candidates.")
            picked = _empty_candidates(with_group=False)
        else:
            texts = unlabeled["text"].astype("str").to_numpy(dtype=object)
            eligible = np.arange(len(unlabeled))
            if config.text_dedup_threshold is not None:
                # Training texts first: an unlabeled text stays eligible only if it is the first
                # of its near-duplicate group, i.e. like no training text and no earlier one.
                keep = dedup_batch(
                    [*train["text"].astype("str"), *texts], threshold=config.text_dedup_threshold
                )[len(train) :]
                eligible = np.flatnonzero(keep)
                dropped = len(unlabeled) - eligible.size
            model: Any = load_model(ws.root / trained["model"])
            train_emb = model.embed(train["text"].astype("str").tolist())
            pool_emb = model.embed(texts[eligible].tolist())
            position = pd.Index(train["id"].astype("str")).get_indexer(
                pd.Index(selected["id"].astype("str"))
            )
            if (position < 0).any():
                raise KeyError(
                    "The pools name ids that are not in the version the model was trained on; "
                    "pass the pools and model of the same round."
                )
            rows = {name: position[(selected["pool"] == name).to_numpy()] for name in seeds}
            picked = select_expansion(
                {name: train_emb[rows[name]] for name in seeds},
                pool_emb,
                unlabeled_ids=unlabeled["id"].astype("str").to_numpy(dtype=object)[eligible],
                budget_per_pool=config.budgets,
                train_embeddings=train_emb if config.dedup_threshold is not None else None,
                seed_samples={name: seeds[name]["id"].astype("str").to_numpy() for name in seeds},
                k_per_seed=config.k_per_seed,
                dedup_threshold=config.dedup_threshold,
                seed=config.seed,
                chunk_size=config.chunk_size,
            )
            # Row numbers of the whole unlabeled version, not of the eligible subset.
            picked["unlabeled_index"] = eligible[picked["unlabeled_index"].to_numpy(np.int64)]
            source = unlabeled.iloc[picked["unlabeled_index"].to_numpy(np.int64)]
            picked["pool"] = CANDIDATE_POOL_PREFIX + picked["seed_pool"].astype("str")
            picked["text"] = source["text"].astype("str").to_numpy()
            if "group" in unlabeled.columns:
                picked["group"] = source["group"].to_numpy()
        path = write_frame(picked, out_path)
    counts = {str(k): int(v) for k, v in picked["seed_pool"].value_counts().items()}
    publish_markdown(
        _markdown(round_id, counts, seed_counts, dropped),
        key=artifact_key("round", round_id, "expansion"),
        description="Unlabeled samples picked for annotation, per seed pool",
    )
    logger.info(
        "Expansion candidates %s from seeds %s (%d near-duplicate unlabeled texts left out)",
        counts,
        seed_counts,
        dropped,
    )
    return {
        "expansion": str(path.relative_to(ws.root)),
        "rows": len(picked),
        "counts": counts,
        "seeds": seed_counts,
        "near_duplicates_left_out": dropped,
        "seconds": t["seconds"],
    }


@task(
    name="conflict-pool",
    cache_key_fn=content_key("train_hash", "threshold", "round_id"),
    persist_result=True,
)
def select_conflict_pool(
    data: dict[str, Any],
    *,
    train_hash: str,
    threshold: float = 0.8,
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Near-duplicate training texts with different labels; write ``conflict_pool.parquet``.

    Args:
        data: ``load_data``'s result.
        train_hash: the training version to scan.
        threshold: MinHash Jaccard at or above which two texts are near-duplicates.

    Returns:
        ``conflict_pool`` (workspace-relative path), ``rows`` (samples), ``groups`` (conflicting
        near-duplicate groups) and ``seconds``. The file has the columns of
        :func:`cartoflow.neardup.conflict_pool`: ``sample``, ``id``, ``label``, ``pool``
        (``conflict``), ``rule``, ``group`` (the near-duplicate group, not the dataset's).
    """
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        frame = _version(ws, data["dataset"], train_hash)
        pool = conflict_pool(
            frame["text"].astype("str").tolist(),
            frame["label"].astype("str").to_numpy(dtype=object),
            frame["id"].astype("str").to_numpy(dtype=object),
            threshold=threshold,
        )
        path = write_frame(pool, ws.run_dir(round_id) / "conflict_pool.parquet")
    groups = int(pool["group"].nunique())
    get_run_logger().info(
        "Conflict pool: %d samples in %d near-duplicate groups with different labels",
        len(pool),
        groups,
    )
    return {
        "conflict_pool": str(path.relative_to(ws.root)),
        "rows": len(pool),
        "groups": groups,
        "seconds": t["seconds"],
    }
