"""Expansion: the unlabeled samples most similar to the hard and very-hard seeds.

The reference report got its largest gain per added sample from new training samples that look
like its "very hard" seeds (REFERENCE.md: +6,248 samples similar to 2,040 very-hard seeds, accuracy
0.817 -> 0.8247). This module finds those samples: cosine nearest neighbours of every seed in the
unlabeled pool, attributed to one seed each, de-duplicated against the training set and against
each other, and picked round-robin over the seeds up to a budget per seed pool.

Retrieval is exact brute force, vectorised and chunked over the corpus: one float32 matrix product
per chunk, then only the scores that beat each query's current k-th best survive (a comparison and
``np.flatnonzero``, not a sort); a running top-k is merged from those few. Memory is
O(Q * chunk_size + Q * k) whatever the corpus size (about 80 MiB of work space for 2,000 seeds),
and 2,000 seeds over 1M 64-dim embeddings cost 8-14 CPU-seconds, the matrix products most of it
(``benchmarks/bench_retrieval.py``): within the 30 s budget on 2 cores, so an approximate index is
not needed at this scale.

Ties are broken the same way everywhere: higher similarity first, then the lower corpus index. Each
score comes from a matrix product over a fixed, aligned tile of 2,048 corpus rows (BLAS rounds a
dot product differently inside calls of different shapes), so results are bit-identical for every
``chunk_size``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cartoflow.errors import DataValidationError, describe_items, describe_rows

__all__ = [
    "CANDIDATE_POOL_PREFIX",
    "EXPANSION_COLUMNS",
    "ExpansionConfig",
    "nearest_neighbours",
    "random_expansion",
    "select_expansion",
]

EXPANSION_COLUMNS: tuple[str, ...] = (
    "id",
    "unlabeled_index",
    "seed_pool",
    "seed_sample",
    "similarity",
    "round",
    "rule",
)
"""Columns of the frames :func:`select_expansion` and :func:`random_expansion` return."""

DEFAULT_CHUNK_SIZE = 4096
"""Corpus rows scored per step: 2,000 queries x 4,096 rows is a 32 MiB float32 block.

Larger chunks are no faster over a large corpus (300k rows: the same time at 4,096 and 8,192)
and cost more when retrieval runs once: a round's search touches its work space for the first
time, and at 8,192 the page faults of that fresh memory were a third of a demo round's search
(2,799 seeds x 21,582 rows: 0.50 s at 8,192, 0.30 s at 4,096)."""

# Corpus rows per matrix product, aligned to absolute row numbers. BLAS rounds a dot product
# differently depending on the shape of the call it is part of, so a fixed tiling is what makes
# scores (and the ties among them) bit-identical whatever ``chunk_size`` is.
_TILE = 2048

# Candidates checked against each other per vectorised step of the greedy de-duplication.
_DEDUP_BLOCK = 1024


def _as_matrix(
    name: str, array: Any, *, dim: int | None = None, dim_of: str = "queries"
) -> np.ndarray:
    """``array`` as a 2-D float array (no copy when it already is one), or a ValueError."""
    matrix = np.asarray(array)
    if matrix.ndim != 2:
        raise ValueError(
            f"Expected `{name}` to be a 2-D (rows, dim) array, but got shape {matrix.shape}."
        )
    if not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
        raise ValueError(f"Expected `{name}` to hold numbers, but got dtype {matrix.dtype}.")
    if dim is not None and matrix.shape[1] != dim:
        raise ValueError(
            f"Expected `{name}` to have embedding dim {dim} (as `{dim_of}`), "
            f"but got shape {matrix.shape}."
        )
    return matrix


def _check_finite(name: str, block: np.ndarray, offset: int) -> None:
    """Raise naming the rows of ``block`` (numbered from ``offset``) that hold NaN or inf."""
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad) + offset
        raise ValueError(
            f"Expected `{name}` to hold finite numbers, but {describe_rows(rows.tolist())} "
            "hold NaN or inf."
        )


def _prepare(name: str, block: np.ndarray, offset: int, *, normalize: bool) -> np.ndarray:
    """A checked, C-contiguous float32 copy of ``block``, rows scaled to unit L2 norm if asked.

    A zero row stays zero, so its cosine similarity with everything is 0 rather than NaN.
    """
    out = np.array(block, dtype=np.float32, order="C", copy=True)
    if not normalize:
        _check_finite(name, out, offset)
        return out
    # Accumulated in float64: precise, the same for a row wherever it sits in a block, and
    # finite exactly when the row is (float32 squares cannot overflow a float64 sum).
    norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64))
    if not np.isfinite(norms).all():
        _check_finite(name, out, offset)
    norms[norms == 0] = 1
    out /= norms.astype(np.float32)[:, None]
    return out


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        raise ValueError(f"Expected `chunk_size` to be an int >= 1, but got {chunk_size!r}.")
    if chunk_size < 1:
        raise ValueError(f"Expected `chunk_size` to be an int >= 1, but got {chunk_size}.")


def _tiled_scores(queries: np.ndarray, block: np.ndarray, *, out: np.ndarray) -> np.ndarray:
    """``queries @ block.T`` into ``out`` (Q, n), one matrix product per ``_TILE`` block rows.

    ``block`` must start at a multiple of ``_TILE`` in the corpus, so each tile is the same
    BLAS call, with the same rounding, whatever the chunking around it.
    """
    for tile in range(0, block.shape[0], _TILE):
        # A column slice of the C-ordered output is still BLAS-compatible: written in place.
        np.matmul(queries, block[tile : tile + _TILE].T, out=out[:, tile : tile + _TILE])
    return out


def _merge_topk(
    top_scores: np.ndarray,
    top_index: np.ndarray,
    filled: int,
    rows: np.ndarray,
    scores: np.ndarray,
    index: np.ndarray,
    new_filled: int,
) -> None:
    """Merge candidate hits into the running top-k of the rows they belong to, in place.

    Args:
        top_scores: (Q, k) float32 running best scores, each row sorted best first; the first
            ``filled`` columns are valid.
        top_index: (Q, k) int64 corpus indices matching ``top_scores``.
        filled: valid columns before the merge.
        rows: (H,) int64 query row of each hit, ascending (as ``np.flatnonzero`` gives them).
        scores: (H,) float32 score of each hit.
        index: (H,) int64 corpus index of each hit.
        new_filled: valid columns after the merge, ``min(k, rows seen so far)``; every row in
            ``rows`` has at least this many entries among its running ones plus its hits.
    """
    if rows.size == 0:
        return
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    touched = rows[starts]
    old_rows = np.repeat(touched, filled)
    all_rows = np.concatenate([old_rows, rows])
    all_scores = np.concatenate([top_scores[touched, :filled].ravel(), scores])
    all_index = np.concatenate([top_index[touched, :filled].ravel(), index])
    # Primary key: row; then higher score; then lower corpus index (the documented tie-break).
    order = np.lexsort((all_index, -all_scores, all_rows))
    sorted_rows = all_rows[order]
    group_start = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    counts = np.diff(np.r_[group_start, sorted_rows.size])
    rank = np.arange(sorted_rows.size) - np.repeat(group_start, counts)
    keep = order[rank < new_filled]
    top_scores[touched, :new_filled] = all_scores[keep].reshape(touched.size, new_filled)
    top_index[touched, :new_filled] = all_index[keep].reshape(touched.size, new_filled)


def nearest_neighbours(
    queries: np.ndarray,
    corpus: np.ndarray,
    *,
    k: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` cosine nearest neighbours of every query in the corpus.

    Chunked over the corpus: each chunk costs one float32 matrix product; only scores above a
    query's current k-th best are kept and merged into its running top-k, so memory stays at
    O(Q * chunk_size + Q * k) for any corpus size. Ties go to the lower corpus index, and every
    score comes from a matrix product over the same fixed tile of the corpus, so results are
    bit-identical for any ``chunk_size``.

    Args:
        queries: (Q, D) embeddings (float32 preferred; other real dtypes are converted).
        corpus: (M, D) embeddings; converted to float32 one chunk at a time, so a float64 or
            memory-mapped corpus is never copied whole.
        k: neighbours per query, 1 <= k <= M.
        chunk_size: corpus rows scored per step (memory, not results), rounded up to a multiple
            of 2,048 rows, the fixed tile of each matrix product.
        normalize: scale rows to unit L2 norm first, so scores are cosine similarities (a zero
            row scores 0 against everything). False: plain inner products (for inputs that are
            already normalised).

    Returns:
        ``(indices, scores)``: (Q, k) int64 corpus row indices and (Q, k) float32 similarities,
        each row best first (high = similar).

    Raises:
        ValueError: non-2-D inputs, mismatched embedding dims, ``k`` outside [1, M], a bad
            ``chunk_size``, or NaN/inf values (naming the rows).
    """
    return _knn(queries, corpus, k=k, chunk_size=chunk_size, normalize=normalize)


def _knn(
    queries: np.ndarray,
    corpus: np.ndarray,
    *,
    k: int,
    chunk_size: int,
    normalize: bool,
    names: tuple[str, str] = ("queries", "corpus"),
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_neighbours`, with the argument names its errors use."""
    q_name, c_name = names
    q_raw = _as_matrix(q_name, queries)
    c_raw = _as_matrix(c_name, corpus, dim=q_raw.shape[1], dim_of=q_name)
    num_queries, num_corpus = q_raw.shape[0], c_raw.shape[0]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= num_corpus:
        raise ValueError(
            f"Expected `k` to be an int in [1, {num_corpus}] (`{c_name}` has {num_corpus} rows), "
            f"but got {k!r}."
        )
    _check_chunk_size(chunk_size)
    k = int(k)
    top_scores = np.full((num_queries, k), -np.inf, dtype=np.float32)
    top_index = np.full((num_queries, k), -1, dtype=np.int64)
    if num_queries == 0:
        return top_index, top_scores
    q = _prepare(q_name, q_raw, 0, normalize=normalize)
    chunk = -(-int(chunk_size) // _TILE) * _TILE
    # Reused buffers; a shorter last chunk uses a contiguous prefix of them.
    score_buf = np.empty(num_queries * min(chunk, num_corpus), dtype=np.float32)
    hit_buf = np.empty(score_buf.size, dtype=bool)
    filled = 0
    for start in range(0, num_corpus, chunk):
        block = _prepare(c_name, c_raw[start : start + chunk], start, normalize=normalize)
        width = block.shape[0]
        scores = score_buf[: num_queries * width].reshape(num_queries, width)
        hits = hit_buf[: num_queries * width].reshape(num_queries, width)
        _tiled_scores(q, block, out=scores)
        if filled < k:
            # Not k rows seen yet: everything at or above the chunk's own need-th best can still
            # make the top-k (>= keeps ties, which the merge then orders by index).
            need = min(k, width)
            kth = np.partition(scores, width - need, axis=1)[:, width - need]
            np.greater_equal(scores, kth[:, None], out=hits)
        else:
            # Strictly greater: a tie with the current k-th best loses to it, because every
            # index in this chunk is higher than every index already kept.
            np.greater(scores, top_scores[:, k - 1 : k], out=hits)
        flat = np.flatnonzero(hits)
        rows, cols = np.divmod(flat, width)
        new_filled = min(k, filled + width)
        _merge_topk(
            top_scores, top_index, filled, rows, scores.ravel()[flat], cols + start, new_filled
        )
        filled = new_filled
    return top_index, top_scores


def _max_similarity(
    queries: np.ndarray,
    corpus: np.ndarray,
    *,
    chunk_size: int,
    name: str,
    normalize: bool = True,
) -> np.ndarray:
    """(Q,) float32 best score of each unit-norm query row against ``corpus`` (-inf if empty).

    Chunked like :func:`nearest_neighbours`: memory O(Q * chunk_size) for any corpus size.
    """
    best = np.full(queries.shape[0], -np.inf, dtype=np.float32)
    if queries.shape[0] == 0:
        return best
    chunk = -(-chunk_size // _TILE) * _TILE
    for start in range(0, corpus.shape[0], chunk):
        block = corpus[start : start + chunk]
        if normalize:
            block = _prepare(name, block, start, normalize=True)
        scores = np.empty((queries.shape[0], block.shape[0]), dtype=np.float32)
        np.maximum(best, _tiled_scores(queries, block, out=scores).max(axis=1), out=best)
    return best


def _check_threshold(dedup_threshold: float | None) -> float | None:
    if dedup_threshold is None:
        return None
    if isinstance(dedup_threshold, bool) or not -1 <= float(dedup_threshold) <= 1:
        raise ValueError(
            "Expected `dedup_threshold` to be a cosine similarity in [-1, 1] or None (off), "
            f"but got {dedup_threshold!r}."
        )
    return float(dedup_threshold)


def _empty_expansion() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series([], dtype=object),
            "unlabeled_index": pd.Series([], dtype=np.int64),
            "seed_pool": pd.Series([], dtype=object),
            "seed_sample": pd.Series([], dtype=object),
            "similarity": pd.Series([], dtype=np.float32),
            "round": pd.Series([], dtype=np.int64),
            "rule": pd.Series([], dtype=object),
        }
    )


class _GreedyPicker:
    """Accepts candidates one after another unless their pool is full or they are too similar.

    "Too similar" means cosine >= threshold to a training sample or to a candidate accepted
    before (in any pool), so a batch built from the picks never holds two near-duplicates.
    """

    def __init__(
        self,
        *,
        budgets: np.ndarray,
        capacity: int,
        threshold: float | None,
        train: np.ndarray | None,
        dim: int,
        chunk_size: int,
    ) -> None:
        self.budgets = budgets.copy()
        self.threshold = threshold
        self.train = train
        self.chunk_size = chunk_size
        self.accepted = np.empty((capacity, dim), dtype=np.float32)
        self.num_accepted = 0

    def offer(self, embeddings: np.ndarray, pools: np.ndarray) -> np.ndarray:
        """(B,) bool: which of these unit-norm (B, D) candidates, taken in order, are accepted."""
        accepted = np.zeros(pools.shape[0], dtype=bool)
        alive = self.budgets[pools] > 0
        if self.threshold is not None and self.train is not None and alive.any():
            at = np.flatnonzero(alive)
            near_train = (
                _max_similarity(
                    embeddings[at], self.train, chunk_size=self.chunk_size, name="train_embeddings"
                )
                >= self.threshold
            )
            alive[at[near_train]] = False
        for start in range(0, pools.shape[0], _DEDUP_BLOCK):
            stop = min(start + _DEDUP_BLOCK, pools.shape[0])
            block = embeddings[start:stop]
            live = alive[start:stop]
            near = np.zeros((stop - start, stop - start), dtype=bool)
            if self.threshold is not None:
                if self.num_accepted:
                    seen = _max_similarity(
                        block,
                        self.accepted[: self.num_accepted],
                        chunk_size=self.chunk_size,
                        name="accepted",
                        normalize=False,
                    )
                    live &= seen < self.threshold
                near = (block @ block.T) >= self.threshold
            for i in np.flatnonzero(live).tolist():
                pool = pools[start + i]
                if not live[i] or self.budgets[pool] <= 0:
                    continue
                accepted[start + i] = True
                self.budgets[pool] -= 1
                self.accepted[self.num_accepted] = block[i]
                self.num_accepted += 1
                live[i + 1 :] &= ~near[i, i + 1 :]
        return accepted


def select_expansion(
    seed_embeddings: Mapping[str, np.ndarray],
    unlabeled_embeddings: np.ndarray,
    *,
    unlabeled_ids: Sequence[Any] | np.ndarray,
    budget_per_pool: Mapping[str, int],
    train_embeddings: np.ndarray | None = None,
    seed_samples: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
    k_per_seed: int = 10,
    dedup_threshold: float | None = 0.95,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> pd.DataFrame:
    """Pick unlabeled samples similar to the seed pools, a budget per pool, no near-duplicates.

    The steps, all deterministic for a given ``seed``:

    1. **Candidates**: the ``k_per_seed`` cosine nearest unlabeled neighbours of every seed.
    2. **Attribution**: an unlabeled sample found by several seeds belongs to the one it is most
       similar to (ties: the earlier pool in ``seed_embeddings`` order, then the earlier seed).
       Chosen over pool priority because the row then says which seed the sample resembles, and
       the ablation can credit the gain of each pool to samples that really resemble it; a sample
       is therefore in at most one pool.
    3. **Round-robin**: round r is a series of passes; in each pass every seed that has not yet
       contributed in round r offers its best candidate not offered before, so every seed
       contributes before any seed contributes twice. Seeds go in a fixed order: pools in
       ``seed_embeddings`` order, seeds within a pool in a random order drawn from ``seed`` (a
       budget smaller than the number of seeds then samples the seeds evenly instead of
       favouring the first rows of the pools table).
    4. **De-duplication and budget**: offers are judged one by one in that order. An offer is
       accepted unless its pool's budget is spent, its cosine to any training sample is
       >= ``dedup_threshold``, or its cosine to an already accepted candidate (of any pool) is
       >= ``dedup_threshold``. A seed whose offer was rejected offers its next candidate in the
       next pass of the same round: de-duplication does not cost it its turn, and its retry does
       not jump ahead of the other seeds' first offers.

    Args:
        seed_embeddings: pool name (e.g. ``"hard"``, ``"very_hard"``) -> (S_p, D) embeddings of
            that pool's seed samples, from the trained model.
        unlabeled_embeddings: (M, D) embeddings of the unlabeled pool, same model.
        unlabeled_ids: (M,) ids of the unlabeled samples, unique.
        budget_per_pool: pool name -> most samples to add for that pool (>= 0); one entry per
            pool in ``seed_embeddings``.
        train_embeddings: (T, D) embeddings of the training set to de-duplicate against, or None
            to skip that check.
        seed_samples: pool name -> (S_p,) identifiers of the seeds (sample index or id), copied to
            the ``seed_sample`` column; None: the seed's row position within its pool.
        k_per_seed: neighbours retrieved per seed (clipped to M); the most a seed can contribute.
        dedup_threshold: cosine at or above which two samples count as near-duplicates; None
            turns de-duplication off.
        seed: random seed of the seed order within a round.
        chunk_size: corpus rows scored per step (memory, not results).

    Returns:
        One row per picked sample, in the order picked, columns :data:`EXPANSION_COLUMNS`:
        ``id``, ``unlabeled_index`` (row in ``unlabeled_embeddings``), ``seed_pool``,
        ``seed_sample``, ``similarity`` (cosine to that seed, high = close), ``round``
        (0-based round-robin round), ``rule`` (how it was picked).

    Raises:
        ValueError: mismatched shapes or dims, duplicate ids, budgets that do not match the pools,
            a bad ``k_per_seed`` or ``dedup_threshold``.
    """
    unlabeled = _as_matrix("unlabeled_embeddings", unlabeled_embeddings)
    num_unlabeled, dim = unlabeled.shape
    ids = np.asarray(unlabeled_ids, dtype=object)
    if ids.shape != (num_unlabeled,):
        raise ValueError(
            f"Expected `unlabeled_ids` to hold {num_unlabeled} ids (one per row of "
            f"`unlabeled_embeddings`), but got shape {ids.shape}."
        )
    duplicated = pd.Index(ids).duplicated()
    if duplicated.any():
        rows = np.flatnonzero(duplicated)
        raise DataValidationError(
            f"Expected `unlabeled_ids` to be unique, but {describe_rows(rows.tolist())} repeat "
            f"earlier ids ({describe_items(ids[rows].tolist())})."
        )
    pool_names = list(seed_embeddings)
    if set(budget_per_pool) != set(pool_names):
        raise ValueError(
            f"Expected `budget_per_pool` to have one entry per seed pool "
            f"({describe_items(pool_names)}), but got keys "
            f"({describe_items(list(budget_per_pool))})."
        )
    budgets = np.empty(len(pool_names), dtype=np.int64)
    for p, name in enumerate(pool_names):
        value = budget_per_pool[name]
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(
                f"Expected the budget of pool {name!r} to be an int >= 0, but got {value!r}."
            )
        budgets[p] = value
    if isinstance(k_per_seed, bool) or not isinstance(k_per_seed, int | np.integer):
        raise ValueError(f"Expected `k_per_seed` to be an int >= 1, but got {k_per_seed!r}.")
    if k_per_seed < 1:
        raise ValueError(f"Expected `k_per_seed` to be an int >= 1, but got {k_per_seed}.")
    threshold = _check_threshold(dedup_threshold)
    _check_chunk_size(chunk_size)
    train = None
    if train_embeddings is not None:
        train = _as_matrix(
            "train_embeddings", train_embeddings, dim=dim, dim_of="unlabeled_embeddings"
        )

    seeds_per_pool: list[np.ndarray] = []
    labels_per_pool: list[np.ndarray] = []
    for name in pool_names:
        pool_seeds = _as_matrix(
            f"seed_embeddings[{name!r}]",
            seed_embeddings[name],
            dim=dim,
            dim_of="unlabeled_embeddings",
        )
        seeds_per_pool.append(pool_seeds)
        if seed_samples is None:
            labels_per_pool.append(np.arange(pool_seeds.shape[0], dtype=np.int64))
            continue
        if name not in seed_samples:
            raise ValueError(
                f"Expected `seed_samples` to have an entry for pool {name!r}, but its keys are "
                f"({describe_items(list(seed_samples))})."
            )
        pool_labels = np.asarray(seed_samples[name])
        if pool_labels.shape != (pool_seeds.shape[0],):
            raise ValueError(
                f"Expected `seed_samples[{name!r}]` to hold {pool_seeds.shape[0]} entries (one "
                f"per seed), but got shape {pool_labels.shape}."
            )
        labels_per_pool.append(pool_labels)
    sizes = np.array([s.shape[0] for s in seeds_per_pool], dtype=np.int64)
    if num_unlabeled == 0 or sizes.sum() == 0 or budgets.sum() == 0:
        return _empty_expansion()

    seed_pool = np.repeat(np.arange(len(pool_names)), sizes)
    k = min(int(k_per_seed), num_unlabeled)
    neighbours, similarity = _knn(
        np.concatenate(seeds_per_pool, axis=0),
        unlabeled,
        k=k,
        chunk_size=chunk_size,
        normalize=True,
        names=("seed_embeddings", "unlabeled_embeddings"),
    )

    # Attribution: keep each unlabeled sample only under its most similar seed. Seeds are
    # concatenated in pool order, so the seed row number is the documented tie-break.
    num_seeds = int(sizes.sum())
    flat_cand = neighbours.ravel()
    flat_seed = np.repeat(np.arange(num_seeds), k)
    order = np.lexsort((flat_seed, -similarity.ravel(), flat_cand))
    first = np.r_[True, flat_cand[order][1:] != flat_cand[order][:-1]]
    owned_flat = np.zeros(flat_cand.size, dtype=bool)
    owned_flat[order[first]] = True
    owned = owned_flat.reshape(num_seeds, k)
    # Each seed's queue: its owned candidates, still best first (a stable sort keeps the order).
    queue_pos = np.argsort(~owned, axis=1, kind="stable")
    queue_cand = np.take_along_axis(neighbours, queue_pos, axis=1)
    queue_sim = np.take_along_axis(similarity, queue_pos, axis=1)
    queue_len = owned.sum(axis=1)

    rng = np.random.default_rng(seed)
    offsets = np.r_[0, np.cumsum(sizes)]
    seed_order = np.concatenate(
        [offsets[p] + rng.permutation(int(sizes[p])) for p in range(len(pool_names))]
    )
    picker = _GreedyPicker(
        budgets=budgets,
        capacity=int(min(budgets.sum(), queue_len.sum())),
        threshold=threshold,
        train=train,
        dim=dim,
        chunk_size=int(chunk_size),
    )
    pointer = np.zeros(num_seeds, dtype=np.int64)
    picked_seed: list[np.ndarray] = []
    picked_slot: list[np.ndarray] = []
    picked_round: list[np.ndarray] = []

    def can_offer(seeds: np.ndarray) -> np.ndarray:
        return (pointer[seeds] < queue_len[seeds]) & (picker.budgets[seed_pool[seeds]] > 0)

    active = seed_order[can_offer(seed_order)]
    round_no = 0
    while active.size:
        pending = active
        while pending.size:
            slot = pointer[pending]
            pointer[pending] += 1
            cand = queue_cand[pending, slot]
            emb = _prepare("unlabeled_embeddings", unlabeled[cand], 0, normalize=True)
            took = picker.offer(emb, seed_pool[pending])
            picked_seed.append(pending[took])
            picked_slot.append(slot[took])
            picked_round.append(np.full(int(took.sum()), round_no, dtype=np.int64))
            rest = pending[~took]
            pending = rest[can_offer(rest)]
        active = active[can_offer(active)]
        round_no += 1
    if not picked_seed:
        return _empty_expansion()
    seeds_taken = np.concatenate(picked_seed)
    slots = np.concatenate(picked_slot)
    chosen = queue_cand[seeds_taken, slots]
    pools_taken = seed_pool[seeds_taken]
    seed_labels = np.concatenate([np.asarray(x, dtype=object) for x in labels_per_pool])
    dedup = "no dedup"
    if threshold is not None:
        against = "train and picks" if train is not None else "picks"
        dedup = f"cosine < {threshold:g} to {against}"
    rules = np.array(
        [f"expand:{name} {k}-NN cosine, round-robin, {dedup}" for name in pool_names],
        dtype=object,
    )
    frame = pd.DataFrame(
        {
            "id": ids[chosen],
            "unlabeled_index": chosen.astype(np.int64),
            "seed_pool": np.array(pool_names, dtype=object)[pools_taken],
            "seed_sample": seed_labels[seeds_taken],
            "similarity": queue_sim[seeds_taken, slots].astype(np.float32),
            "round": np.concatenate(picked_round),
            "rule": rules[pools_taken],
        }
    )
    if seed_samples is None or all(np.issubdtype(x.dtype, np.integer) for x in labels_per_pool):
        frame["seed_sample"] = frame["seed_sample"].astype(np.int64)
    return frame.reset_index(drop=True)


def random_expansion(
    unlabeled_ids: Sequence[Any] | np.ndarray,
    *,
    n: int,
    exclude: Sequence[Any] | np.ndarray = (),
    seed: int = 0,
) -> pd.DataFrame:
    """Draw ``n`` unlabeled samples uniformly at random: the control arm of the expansion ablation.

    It answers "does *targeted* expansion help, or would any new samples do?": the ablation adds
    as many random samples as the targeted variant added.

    Args:
        unlabeled_ids: (M,) unique ids of the unlabeled pool.
        n: samples to draw, 0 <= n <= number of ids not excluded.
        exclude: ids never to draw (e.g. those already picked by :func:`select_expansion`);
            ids not in the pool are ignored.
        seed: random seed.

    Returns:
        ``n`` rows, in pool order, with the :data:`EXPANSION_COLUMNS`: ``seed_pool`` is
        ``"random"``, ``seed_sample`` is None, ``similarity`` NaN, ``round`` 0.

    Raises:
        ValueError: ``n`` out of range, or duplicate ids.
    """
    ids = np.asarray(unlabeled_ids, dtype=object)
    if ids.ndim != 1:
        raise ValueError(f"Expected `unlabeled_ids` to be 1-D, but got shape {ids.shape}.")
    index = pd.Index(ids)
    if index.duplicated().any():
        rows = np.flatnonzero(index.duplicated())
        raise DataValidationError(
            f"Expected `unlabeled_ids` to be unique, but {describe_rows(rows.tolist())} repeat "
            f"earlier ids ({describe_items(ids[rows].tolist())})."
        )
    available = np.flatnonzero(~index.isin(list(np.asarray(exclude, dtype=object))))
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 <= n <= available.size:
        raise ValueError(
            f"Expected `n` to be an int in [0, {available.size}] (unlabeled ids not excluded), "
            f"but got {n!r}."
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(available, size=int(n), replace=False)).astype(np.int64)
    return pd.DataFrame(
        {
            "id": ids[chosen],
            "unlabeled_index": chosen,
            "seed_pool": np.full(chosen.size, "random", dtype=object),
            "seed_sample": np.full(chosen.size, None, dtype=object),
            "similarity": np.full(chosen.size, np.nan, dtype=np.float32),
            "round": np.zeros(chosen.size, dtype=np.int64),
            "rule": np.full(chosen.size, f"uniform random draw (seed={seed})", dtype=object),
        }
    )


CANDIDATE_POOL_PREFIX = "expand:"
"""``pool`` of an expansion candidate in an annotation batch: ``expand:hard``, ``expand:random``."""


class ExpansionConfig(BaseModel):
    """How a round (or the ablation) picks expansion candidates; a pydantic form for the UI.

    The seeds are the training samples of ``seed_pools``. Unlabeled texts that are
    near-duplicates (MinHash Jaccard >= ``text_dedup_threshold``,
    :func:`cartoflow.neardup.dedup_batch`) of a training text are left out, and of each
    near-duplicate cluster within the unlabeled pool only the first text is eligible; the seeds'
    nearest eligible neighbours on the trained model's embeddings are then picked by
    :func:`select_expansion` with a budget per pool. So the candidates hold no near-duplicate of
    the training set or of each other, and the budgets still fill.

    Near-duplicates are found on the text, not by an embedding cosine: on the default model's
    mean-pooled n-gram embeddings nearly every title has a training neighbour above cosine 0.99
    (on the 20k demo, ``dedup_threshold=0.95`` filled 8 of a 4,000 budget and 0.99 filled 193),
    so an embedding threshold there rejects paraphrases and new questions alike.
    ``dedup_threshold`` stays available for embeddings where cosine separates them (e.g. MiniLM).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed_pools: list[str] = Field(
        default_factory=lambda: ["hard", "very_hard"],
        description="Pools whose samples are the seeds, in attribution-tie order.",
    )
    budgets: dict[str, int] = Field(
        default_factory=lambda: {"hard": 1500, "very_hard": 1500},
        description="Seed pool -> most unlabeled samples to add for it.",
    )
    k_per_seed: int = Field(
        default=10, ge=1, description="Neighbours retrieved per seed: the most one seed adds."
    )
    dedup_threshold: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Embedding cosine at or above which a pick duplicates a training sample or "
        "an earlier pick (None: off; texts are de-duplicated by text_dedup_threshold).",
    )
    text_dedup_threshold: float | None = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="MinHash Jaccard at or above which two texts are near-duplicates (None: off).",
    )
    seed: int = Field(default=0, description="Seeds the order in which seeds take turns.")
    chunk_size: int = Field(
        default=DEFAULT_CHUNK_SIZE, ge=1, description="Unlabeled rows scored per step (memory)."
    )

    @model_validator(mode="after")
    def _budget_per_seed_pool(self) -> ExpansionConfig:
        if len(set(self.seed_pools)) != len(self.seed_pools):
            raise ValueError(f"Expected each seed pool once, but got {self.seed_pools}.")
        if set(self.budgets) != set(self.seed_pools):
            raise ValueError(
                f"Expected one budget per seed pool {self.seed_pools}, but got budgets for "
                f"{sorted(self.budgets)}."
            )
        negative = {k: v for k, v in self.budgets.items() if v < 0}
        if negative:
            raise ValueError(f"Expected budgets >= 0, but got {negative}.")
        return self
