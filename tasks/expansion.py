"""Expansion candidates from the unlabeled pool, and the near-duplicate ``conflict`` pool.

``select_expansion_candidates`` embeds the training set and the unlabeled pool with the round's
baseline model, leaves out unlabeled texts that are near-duplicates of a training text or of an
earlier unlabeled text (:func:`cartoflow.neardup.dedup_batch`), takes the hard and very-hard
pools as seeds and picks their nearest remaining neighbours with a budget per pool
(:func:`cartoflow.expansion.select_expansion`); see :class:`~cartoflow.expansion.ExpansionConfig`.
``select_conflict_pool`` finds near-duplicate training texts with different labels
(:func:`cartoflow.neardup.conflict_pool`). ``find_expansion_eligible`` does the expansion's
near-duplicate scan ahead of time: both scans need only the texts, so the round runs them on
the second core while the baseline model trains (training uses one thread).
``embed_for_expansion`` embeds ahead of time too, beside the metrics and pools stages, in the
embedding helper process of :mod:`cartoflow.embedder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from cartoflow import embedder
from cartoflow.expansion import (
    CANDIDATE_POOL_PREFIX,
    EXPANSION_COLUMNS,
    ExpansionConfig,
    select_expansion,
)
from cartoflow.neardup import conflict_pool, dedup_batch
from cartoflow.versions import read_registered
from cartoflow.workspace import Workspace, write_atomic, write_frame
from tasks.common import artifact_key, content_key, publish_markdown, stopwatch

CANDIDATE_COLUMNS = (*EXPANSION_COLUMNS, "pool", "text", "group")
"""Columns of ``expansion.parquet`` (``group`` only when the unlabeled pool has groups)."""


def _scanned(
    ws: Workspace, eligible: dict[str, Any], train_hash: str, unlabeled_hash: str
) -> np.ndarray:
    """The eligibility mask ``find_expansion_eligible`` wrote, checked to be for these versions."""
    if (eligible["train_hash"], eligible["unlabeled_hash"]) != (train_hash, unlabeled_hash):
        raise ValueError(
            "The near-duplicate scan was made for other dataset versions "
            f"({eligible['train_hash'][:12]}, {eligible['unlabeled_hash'][:12]}) than the "
            f"expansion's ({train_hash[:12]}, {unlabeled_hash[:12]}); pass the scan of the same "
            "round."
        )
    return pd.read_parquet(ws.root / eligible["eligible"])["eligible"].to_numpy(dtype=bool)


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


def _eligible_rows(
    train: pd.DataFrame, unlabeled: pd.DataFrame, threshold: float | None
) -> np.ndarray:
    """(M,) bool: unlabeled rows like no training text and no earlier unlabeled text."""
    if threshold is None or len(unlabeled) == 0:
        return np.ones(len(unlabeled), dtype=bool)
    # Training texts first: an unlabeled text stays eligible only if it is the first of its
    # near-duplicate group, i.e. like no training text and no earlier one.
    texts = [*train["text"].astype("str"), *unlabeled["text"].astype("str")]
    return dedup_batch(texts, threshold=threshold)[len(train) :]


@task(
    name="expansion-dedup",
    cache_key_fn=content_key("train_hash", "unlabeled_hash", "threshold", "round_id"),
    persist_result=True,
)
def find_expansion_eligible(
    data: dict[str, Any],
    *,
    train_hash: str,
    unlabeled_hash: str,
    threshold: float | None,
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Mark the unlabeled texts expansion may pick; write ``expansion_eligible.parquet``.

    An unlabeled text is eligible when it is not a near-duplicate (MinHash Jaccard >=
    ``threshold``) of a training text or of an earlier unlabeled text. Needs only the texts, so
    the round runs it while the baseline trains.

    Returns:
        ``eligible`` (workspace-relative path of a one-column ``eligible`` bool file, one row
        per unlabeled row in version order), ``train_hash``, ``unlabeled_hash``,
        ``near_duplicates_left_out`` and ``seconds``.
    """
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        train = read_registered(ws, data["dataset"], train_hash)
        unlabeled = read_registered(ws, f"{data['dataset']}.unlabeled", unlabeled_hash)
        keep = _eligible_rows(train, unlabeled, threshold)
        path = write_frame(
            pd.DataFrame({"eligible": keep}), ws.run_dir(round_id) / "expansion_eligible.parquet"
        )
    dropped = int((~keep).sum())
    get_run_logger().info(
        "Expansion: %d of %d unlabeled texts are near-duplicates of a training text or of an "
        "earlier unlabeled text, and are left out",
        dropped,
        len(keep),
    )
    return {
        "eligible": str(path.relative_to(ws.root)),
        "train_hash": train_hash,
        "unlabeled_hash": unlabeled_hash,
        "near_duplicates_left_out": dropped,
        "seconds": t["seconds"],
    }


def _save_embeddings(path: Path, train: np.ndarray, unlabeled: np.ndarray) -> Path:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a file object: np.savez would append ".npz" to a name
            np.savez(handle, train=train, unlabeled=unlabeled)

    return write_atomic(path, write)


def _embed(
    ws: Workspace, trained: dict[str, Any], train: pd.DataFrame, unlabeled_texts: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) training and (M, D) unlabeled embeddings from ``trained``'s model, made in the
    embedding helper process (:mod:`cartoflow.embedder`)."""
    train_emb, unlabeled_emb = embedder.embed(
        ws.root / trained["model"], train["text"].astype("str").tolist(), unlabeled_texts
    )
    return train_emb, unlabeled_emb


def warm_up_expansion() -> None:
    """Launch the embedding helper now: it imports torch while the baseline trains."""
    embedder.start()


def _stored_embeddings(
    ws: Workspace, embeddings: dict[str, Any], trained: dict[str, Any], unlabeled_hash: str
) -> tuple[np.ndarray, np.ndarray]:
    """The (N, D) training and (M, D) unlabeled embeddings ``embed_for_expansion`` wrote."""
    made_for = (embeddings["model"], embeddings["train_hash"], embeddings["unlabeled_hash"])
    if made_for != (trained["model"], trained["train_hash"], unlabeled_hash):
        raise ValueError(
            f"The embeddings in {embeddings['embeddings']} were made with {made_for[0]} for "
            f"versions ({made_for[1][:12]}, {made_for[2][:12]}), not with {trained['model']} "
            f"for ({trained['train_hash'][:12]}, {unlabeled_hash[:12]}); pass the embeddings "
            "of the same round."
        )
    with np.load(ws.root / embeddings["embeddings"]) as stored:
        return stored["train"], stored["unlabeled"]


@task(
    name="expansion-embed",
    cache_key_fn=content_key("trained", "unlabeled_hash", "round_id"),
    persist_result=True,
)
def embed_for_expansion(
    data: dict[str, Any],
    trained: dict[str, Any],
    *,
    unlabeled_hash: str,
    round_id: str,
    workspace: str,
) -> dict[str, Any]:
    """Embed the training set and the unlabeled pool with ``trained``'s model.

    Needs the model but no pool, so the round runs it beside the metrics and pools stages;
    ``select_expansion_candidates`` then only searches. Writes
    ``runs/<round>/expansion_embeddings.npz``: ``train`` (N, D) and ``unlabeled`` (M, D)
    float32, rows in version order.

    Returns:
        ``embeddings`` (workspace-relative path), ``model``, ``train_hash``,
        ``unlabeled_hash`` and ``seconds``.
    """
    ws = Workspace.resolve(workspace)
    with stopwatch() as t:
        train = read_registered(ws, data["dataset"], trained["train_hash"])
        unlabeled = read_registered(ws, f"{data['dataset']}.unlabeled", unlabeled_hash)
        path = _save_embeddings(
            ws.run_dir(round_id) / "expansion_embeddings.npz",
            *_embed(ws, trained, train, unlabeled["text"].astype("str").tolist()),
        )
    return {
        "embeddings": str(path.relative_to(ws.root)),
        "model": trained["model"],
        "train_hash": trained["train_hash"],
        "unlabeled_hash": unlabeled_hash,
        "seconds": t["seconds"],
    }


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
    eligible: dict[str, Any] | None = None,
    embeddings: dict[str, Any] | None = None,
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
        eligible: ``find_expansion_eligible``'s result for the same training and unlabeled
            versions; None scans for near-duplicates here.
        embeddings: ``embed_for_expansion``'s result for the same model and versions; None
            embeds here.

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
        train = read_registered(ws, data["dataset"], trained["train_hash"])
        selected = pd.read_parquet(ws.root / pools["pools"])
        seeds = {name: selected[selected["pool"] == name] for name in config.seed_pools}
        seed_counts = {name: len(rows) for name, rows in seeds.items()}
        unlabeled = (
            read_registered(ws, f"{data['dataset']}.unlabeled", data["unlabeled"]["hash"])
            if "unlabeled" in data
            else None
        )
        dropped = 0
        if unlabeled is None or len(unlabeled) == 0:
            logger.warning("No unlabeled pool: no expansion candidates.")
            picked = _empty_candidates(with_group=False)
        else:
            texts = unlabeled["text"].astype("str").to_numpy(dtype=object)
            keep = (
                _scanned(ws, eligible, trained["train_hash"], data["unlabeled"]["hash"])
                if eligible is not None
                else _eligible_rows(train, unlabeled, config.text_dedup_threshold)
            )
            eligible_rows = np.flatnonzero(keep)
            dropped = len(unlabeled) - eligible_rows.size
            if embeddings is not None:
                train_emb, pool_emb = _stored_embeddings(
                    ws, embeddings, trained, data["unlabeled"]["hash"]
                )
                pool_emb = pool_emb[eligible_rows]
            else:
                train_emb, pool_emb = _embed(ws, trained, train, texts[eligible_rows].tolist())
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
                unlabeled_ids=unlabeled["id"].astype("str").to_numpy(dtype=object)[eligible_rows],
                budget_per_pool=config.budgets,
                train_embeddings=train_emb if config.dedup_threshold is not None else None,
                seed_samples={name: seeds[name]["id"].astype("str").to_numpy() for name in seeds},
                k_per_seed=config.k_per_seed,
                dedup_threshold=config.dedup_threshold,
                seed=config.seed,
                chunk_size=config.chunk_size,
            )
            # Row numbers of the whole unlabeled version, not of the eligible subset.
            picked["unlabeled_index"] = eligible_rows[picked["unlabeled_index"].to_numpy(np.int64)]
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
        frame = read_registered(ws, data["dataset"], train_hash)
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
