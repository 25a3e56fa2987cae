"""Tests of cartoflow.expansion: chunked nearest neighbours and the expansion picker."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartoflow import expansion
from cartoflow.errors import DataValidationError
from cartoflow.expansion import (
    EXPANSION_COLUMNS,
    nearest_neighbours,
    random_expansion,
    select_expansion,
)


def small_tiles(rows: int) -> mock._patch[int]:
    """Matrix-product tiles of ``rows`` corpus rows, so tiny corpora span many tiles and chunks."""
    return mock.patch.object(expansion, "_TILE", rows)


# ---------------------------------------------------------------------------------------------
# Slow, obviously-correct twins


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def brute_force(
    queries: np.ndarray, corpus: np.ndarray, k: int, *, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Full similarity matrix, then each row sorted by (score desc, index asc)."""
    q = _unit(queries) if normalize else np.asarray(queries, dtype=np.float64)
    c = _unit(corpus) if normalize else np.asarray(corpus, dtype=np.float64)
    sims = q @ c.T
    index = np.array([np.lexsort((np.arange(c.shape[0]), -row))[:k] for row in sims])
    index = index.reshape(q.shape[0], k).astype(np.int64)
    return index, np.take_along_axis(sims, index, axis=1)


def reference_expansion(
    seeds: dict[str, np.ndarray],
    unlabeled: np.ndarray,
    ids: list[str],
    budgets: dict[str, int],
    train: np.ndarray | None,
    k: int,
    threshold: float | None,
    seed: int,
) -> list[tuple[str, int, str, int, int]]:
    """The documented algorithm with plain loops: (id, index, pool, seed position, round)."""
    pools = list(seeds)
    rows = [(p, i, _unit(seeds[p])[i]) for p in pools for i in range(len(seeds[p]))]
    u = _unit(unlabeled)
    t = _unit(train) if train is not None else None
    k = min(k, len(u))
    neighbours = []
    for _, _, vec in rows:
        sims = u @ vec
        neighbours.append(sorted(range(len(u)), key=lambda j: (-sims[j], j))[:k])
    owner: dict[int, tuple[float, int]] = {}
    for s, (_, _, vec) in enumerate(rows):
        for j in neighbours[s]:
            key = (-float(u[j] @ vec), s)
            if j not in owner or key < owner[j]:
                owner[j] = key
    queues = [[j for j in neighbours[s] if owner[j][1] == s] for s in range(len(rows))]
    rng = np.random.default_rng(seed)
    order: list[int] = []
    start = 0
    for p in pools:
        order += [start + int(i) for i in rng.permutation(len(seeds[p]))]
        start += len(seeds[p])
    left = dict(budgets)
    pointer = [0] * len(rows)
    accepted: list[int] = []
    out = []

    def can_offer(s: int) -> bool:
        return pointer[s] < len(queues[s]) and left[rows[s][0]] > 0

    active = [s for s in order if can_offer(s)]
    round_no = 0
    while active:
        pending = list(active)
        while pending:
            retry = []
            for s in pending:
                j = queues[s][pointer[s]]
                pointer[s] += 1
                pool = rows[s][0]
                ok = left[pool] > 0
                if ok and threshold is not None:
                    if t is not None and len(t) and max(t @ u[j]) >= threshold:
                        ok = False
                    if any(u[a] @ u[j] >= threshold for a in accepted):
                        ok = False
                if ok:
                    accepted.append(j)
                    left[pool] -= 1
                    out.append((ids[j], j, pool, rows[s][1], round_no))
                elif can_offer(s):
                    retry.append(s)
            pending = retry
        active = [s for s in active if can_offer(s)]
        round_no += 1
    return out


# ---------------------------------------------------------------------------------------------
# nearest_neighbours


@settings(max_examples=60, deadline=None)
@given(
    num_queries=st.integers(1, 6),
    num_corpus=st.integers(1, 40),
    dim=st.integers(1, 4),
    data_seed=st.integers(0, 2**31),
    k_frac=st.floats(0, 1),
    tile=st.integers(1, 6),
    chunk_size=st.integers(1, 50),
)
def test_nearest_neighbours_matches_brute_force_with_ties(
    num_queries: int,
    num_corpus: int,
    dim: int,
    data_seed: int,
    k_frac: float,
    tile: int,
    chunk_size: int,
) -> None:
    # Small integers make dot products exact, with many ties: indices must match exactly.
    rng = np.random.default_rng(data_seed)
    queries = rng.integers(-2, 3, size=(num_queries, dim)).astype(np.float32)
    corpus = rng.integers(-2, 3, size=(num_corpus, dim)).astype(np.float32)
    k = 1 + int(k_frac * (num_corpus - 1))
    with small_tiles(tile):
        index, scores = nearest_neighbours(
            queries, corpus, k=k, chunk_size=chunk_size, normalize=False
        )
    ref_index, ref_scores = brute_force(queries, corpus, k, normalize=False)
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


@pytest.mark.parametrize("data_seed", range(5))
def test_nearest_neighbours_cosine_matches_brute_force(data_seed: int) -> None:
    rng = np.random.default_rng(data_seed)
    queries = rng.standard_normal((7, 5)).astype(np.float32) * 3
    corpus = rng.standard_normal((53, 5)).astype(np.float32)
    with small_tiles(4):
        index, scores = nearest_neighbours(queries, corpus, k=6, chunk_size=8)
    ref_index, ref_scores = brute_force(queries, corpus, 6)
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    assert index.dtype == np.int64 and scores.dtype == np.float32


@pytest.mark.parametrize("tile", [1, 3, 2048])
def test_chunk_size_does_not_change_results(tile: int) -> None:
    # Parallel integer vectors have equal cosines up to rounding: near-ties everywhere.
    rng = np.random.default_rng(3)
    queries = rng.integers(-3, 4, size=(9, 3)).astype(np.float32)
    corpus = rng.integers(-3, 4, size=(31, 3)).astype(np.float32)
    with small_tiles(tile):
        results = [
            nearest_neighbours(queries, corpus, k=7, chunk_size=c)
            for c in (1, 2, 5, 6, 30, 31, 10_000)
        ]
    for index, scores in results[1:]:
        np.testing.assert_array_equal(index, results[0][0])
        np.testing.assert_array_equal(scores, results[0][1])


def test_ties_go_to_the_lower_index_with_cosine() -> None:
    # Rows 1, 3, 4 all point along x (cosine exactly 1 to the query); 0 and 2 do not.
    corpus = np.array([[0, 1], [2, 0], [1, 1], [5, 0], [0.5, 0]], dtype=np.float32)
    for tile, chunk in [(1, 1), (1, 2), (2, 2), (2, 5), (2048, 5)]:
        with small_tiles(tile):
            index, scores = nearest_neighbours(
                np.array([[3.0, 0.0]]), corpus, k=3, chunk_size=chunk
            )
        np.testing.assert_array_equal(index, [[1, 3, 4]])
        np.testing.assert_array_equal(scores, [[1, 1, 1]])


def test_zero_vectors_score_zero() -> None:
    corpus = np.array([[1, 0], [0, 0], [-1, 0]], dtype=np.float32)
    index, scores = nearest_neighbours(np.zeros((1, 2)), corpus, k=3)
    np.testing.assert_array_equal(index, [[0, 1, 2]])
    np.testing.assert_array_equal(scores, [[0, 0, 0]])
    index, scores = nearest_neighbours(np.array([[2.0, 0.0]]), corpus, k=3)
    np.testing.assert_array_equal(index, [[0, 1, 2]])
    np.testing.assert_array_equal(scores, [[1, 0, -1]])


def test_other_dtypes_and_no_queries() -> None:
    corpus = np.eye(3, dtype=np.int64)
    index, scores = nearest_neighbours(np.array([[0.0, 2.0, 1.0]]), corpus, k=1)
    assert index.tolist() == [[1]]
    index, scores = nearest_neighbours(np.empty((0, 3)), corpus, k=2)
    assert index.shape == (0, 2) and scores.shape == (0, 2)


@pytest.mark.parametrize(
    ("queries", "corpus", "kwargs", "message"),
    [
        (np.ones(3), np.ones((4, 3)), {"k": 1}, r"`queries` to be a 2-D .* got shape \(3,\)"),
        (
            np.ones((2, 3)),
            np.ones((4, 2)),
            {"k": 1},
            r"`corpus` .* embedding dim 3 .*\(4, 2\)",
        ),
        (np.ones((2, 3)), np.ones((4, 3)), {"k": 5}, r"`k` to be an int in \[1, 4\].* got 5"),
        (np.ones((2, 3)), np.ones((4, 3)), {"k": 0}, r"`k` to be an int in \[1, 4\].* got 0"),
        (np.ones((2, 3)), np.ones((4, 3)), {"k": 1, "chunk_size": 0}, r"`chunk_size`.* got 0"),
        (np.array([["a"]]), np.ones((4, 1)), {"k": 1}, r"`queries` to hold numbers"),
    ],
)
def test_nearest_neighbours_bad_input(
    queries: np.ndarray, corpus: np.ndarray, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        nearest_neighbours(queries, corpus, **kwargs)


def test_nearest_neighbours_names_rows_with_nan() -> None:
    corpus = np.ones((6, 2), dtype=np.float32)
    corpus[4, 1] = np.nan
    with small_tiles(2), pytest.raises(ValueError, match=r"`corpus` .* finite .* row 4 hold"):
        nearest_neighbours(np.ones((1, 2)), corpus, k=1, chunk_size=2)


# ---------------------------------------------------------------------------------------------
# select_expansion


def _angles(*degrees: float) -> np.ndarray:
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def test_round_robin_every_seed_before_any_twice() -> None:
    # Three seeds far apart, each with three unlabeled neighbours of its own.
    seeds = {"hard": _angles(0, 120, 240)}
    unlabeled = _angles(1, 2, 3, 121, 122, 123, 241, 242, 243)
    ids = [f"u{i}" for i in range(9)]
    out = select_expansion(
        seeds,
        unlabeled,
        unlabeled_ids=ids,
        budget_per_pool={"hard": 5},
        k_per_seed=3,
        dedup_threshold=None,
    )
    assert list(out.columns) == list(EXPANSION_COLUMNS)
    assert out["round"].tolist() == [0, 0, 0, 1, 1]
    assert sorted(out["seed_sample"].iloc[:3]) == [0, 1, 2]
    # Round 0 takes each seed's closest neighbour.
    assert set(out["id"].iloc[:3]) == {"u0", "u3", "u6"}
    assert set(out["seed_pool"]) == {"hard"}
    assert out["unlabeled_index"].dtype == np.int64


def test_budget_smaller_than_seeds_is_deterministic_per_seed() -> None:
    seeds = {"hard": _angles(0, 90, 180, 270)}
    unlabeled = _angles(1, 91, 181, 271)
    kwargs = {
        "unlabeled_ids": ["a", "b", "c", "d"],
        "budget_per_pool": {"hard": 2},
        "k_per_seed": 1,
    }
    first = select_expansion(seeds, unlabeled, seed=0, **kwargs)  # type: ignore[arg-type]
    again = select_expansion(seeds, unlabeled, seed=0, **kwargs)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == 2
    picks = {
        tuple(select_expansion(seeds, unlabeled, seed=s, **kwargs)["id"])  # type: ignore[arg-type]
        for s in range(20)
    }
    assert len(picks) > 1  # the seed order is random, not "first rows first"


def test_train_dedup_drops_copies_of_training_samples() -> None:
    seeds = {"hard": _angles(0)}
    unlabeled = _angles(1, 5, 10)
    train = _angles(1.2, 200)  # near-copy of u0 (cosine > 0.9997)
    out = select_expansion(
        seeds,
        unlabeled,
        unlabeled_ids=["u0", "u1", "u2"],
        train_embeddings=train,
        budget_per_pool={"hard": 3},
        k_per_seed=3,
        dedup_threshold=0.999,
    )
    assert out["id"].tolist() == ["u1", "u2"]
    assert out["rule"].iloc[0].endswith("cosine < 0.999 to train and picks")
    # The rejected candidate does not cost the seed its turn: u1 still comes in round 0.
    assert out["round"].tolist() == [0, 1]


def test_candidate_dedup_keeps_the_closer_of_two_near_copies() -> None:
    seeds = {"hard": _angles(0)}
    unlabeled = _angles(20, 2, 2.1, 40)  # u1 and u2 are near-copies; u1 is closer to the seed
    out = select_expansion(
        seeds,
        unlabeled,
        unlabeled_ids=["u0", "u1", "u2", "u3"],
        budget_per_pool={"hard": 10},
        k_per_seed=4,
        dedup_threshold=0.9999,
    )
    assert out["id"].tolist() == ["u1", "u0", "u3"]
    no_dedup = select_expansion(
        seeds,
        unlabeled,
        unlabeled_ids=["u0", "u1", "u2", "u3"],
        budget_per_pool={"hard": 10},
        k_per_seed=4,
        dedup_threshold=None,
    )
    assert no_dedup["id"].tolist() == ["u1", "u2", "u0", "u3"]


def test_dedup_applies_across_pools() -> None:
    seeds = {"hard": _angles(0), "very_hard": _angles(90)}
    unlabeled = _angles(44.99, 45.01)  # near-copies of each other, each closer to another seed
    out = select_expansion(
        seeds,
        unlabeled,
        unlabeled_ids=["x", "y"],
        budget_per_pool={"hard": 1, "very_hard": 1},
        k_per_seed=2,
        dedup_threshold=0.99,
    )
    assert out["id"].tolist() == ["x"]
    assert out["seed_pool"].tolist() == ["hard"]


def test_pool_exclusivity_goes_to_the_most_similar_seed() -> None:
    seeds = {"hard": _angles(0), "very_hard": _angles(30)}
    unlabeled = _angles(5, 25, 14, 16)
    out = select_expansion(
        seeds,
        unlabeled,
        unlabeled_ids=["a", "b", "c", "d"],
        budget_per_pool={"hard": 10, "very_hard": 10},
        k_per_seed=4,
        dedup_threshold=None,
        seed_samples={"hard": ["s-hard"], "very_hard": ["s-vh"]},
    )
    assert out["id"].is_unique
    pool_of = dict(zip(out["id"], out["seed_pool"], strict=True))
    assert pool_of == {"a": "hard", "c": "hard", "b": "very_hard", "d": "very_hard"}
    assert set(out["seed_sample"]) == {"s-hard", "s-vh"}
    expected = np.cos(np.deg2rad([5, 5, 14, 14]))
    got = out.set_index("id").loc[["a", "b", "c", "d"], "similarity"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_budgets_per_pool() -> None:
    seeds = {"hard": _angles(0, 180), "very_hard": _angles(90)}
    unlabeled = _angles(*range(-40, 41, 10), *range(140, 221, 10), *range(50, 131, 10))
    ids = [f"u{i}" for i in range(len(unlabeled))]
    out = select_expansion(
        seeds,
        unlabeled,
        unlabeled_ids=ids,
        budget_per_pool={"hard": 5, "very_hard": 0},
        k_per_seed=6,
    )
    assert out["seed_pool"].value_counts().to_dict() == {"hard": 5}
    # Round-robin over the two hard seeds: 3 + 2.
    assert sorted(out["seed_sample"].value_counts().tolist()) == [2, 3]
    assert select_expansion(
        seeds, unlabeled, unlabeled_ids=ids, budget_per_pool={"hard": 0, "very_hard": 0}
    ).empty


@settings(max_examples=40, deadline=None)
@given(
    data_seed=st.integers(0, 2**31),
    sizes=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    num_unlabeled=st.integers(1, 25),
    num_train=st.integers(0, 6),
    budgets=st.tuples(st.integers(0, 12), st.integers(0, 12)),
    k=st.integers(1, 8),
    threshold=st.sampled_from([None, 0.5, 0.9, 0.99]),
    seed=st.integers(0, 3),
)
def test_select_expansion_matches_reference(
    data_seed: int,
    sizes: tuple[int, int],
    num_unlabeled: int,
    num_train: int,
    budgets: tuple[int, int],
    k: int,
    threshold: float | None,
    seed: int,
) -> None:
    rng = np.random.default_rng(data_seed)
    dim = 3
    seeds = {
        "hard": rng.standard_normal((sizes[0], dim)).astype(np.float32),
        "very_hard": rng.standard_normal((sizes[1], dim)).astype(np.float32),
    }
    unlabeled = rng.standard_normal((num_unlabeled, dim)).astype(np.float32)
    train = rng.standard_normal((num_train, dim)).astype(np.float32) if num_train else None
    ids = [f"u{i}" for i in range(num_unlabeled)]
    budget = {"hard": budgets[0], "very_hard": budgets[1]}
    out = select_expansion(
        seeds,
        unlabeled,
        unlabeled_ids=ids,
        budget_per_pool=budget,
        train_embeddings=train,
        k_per_seed=k,
        dedup_threshold=threshold,
        seed=seed,
        chunk_size=4,
    )
    with small_tiles(2):
        out_small = select_expansion(
            seeds,
            unlabeled,
            unlabeled_ids=ids,
            budget_per_pool=budget,
            train_embeddings=train,
            k_per_seed=k,
            dedup_threshold=threshold,
            seed=seed,
            chunk_size=4,
        )
    pd.testing.assert_frame_equal(out, out_small)
    expected = reference_expansion(seeds, unlabeled, ids, budget, train, k, threshold, seed)
    got = list(
        zip(
            out["id"],
            out["unlabeled_index"],
            out["seed_pool"],
            out["seed_sample"],
            out["round"],
            strict=True,
        )
    )
    assert got == expected
    assert out["id"].is_unique
    for pool, n in budget.items():
        assert (out["seed_pool"] == pool).sum() <= n


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"budget_per_pool": {"hard": 1}},
            ValueError,
            r"per seed pool \(hard, very_hard\)",
        ),
        (
            {"budget_per_pool": {"hard": -1, "very_hard": 1}},
            ValueError,
            r"budget of pool 'hard' to be an int >= 0, but got -1",
        ),
        ({"unlabeled_ids": ["a", "b"]}, ValueError, r"hold 3 ids .* got shape \(2,\)"),
        (
            {"unlabeled_ids": ["a", "b", "a"]},
            DataValidationError,
            r"row 2 repeat .* \(a\)",
        ),
        (
            {"train_embeddings": np.ones((2, 3))},
            ValueError,
            r"`train_embeddings` .* dim 2",
        ),
        ({"k_per_seed": 0}, ValueError, r"`k_per_seed` to be an int >= 1, but got 0"),
        ({"dedup_threshold": 1.5}, ValueError, r"`dedup_threshold` .* got 1.5"),
        ({"seed_samples": {"hard": [1]}}, ValueError, r"entry for pool 'very_hard'"),
        (
            {"seed_samples": {"hard": [1, 2], "very_hard": [3]}},
            ValueError,
            r"`seed_samples\['hard'\]` to hold 1 entries .* got shape \(2,\)",
        ),
    ],
)
def test_select_expansion_bad_input(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {
        "unlabeled_ids": ["a", "b", "c"],
        "budget_per_pool": {"hard": 1, "very_hard": 1},
    }
    arguments.update(kwargs)
    seeds = {"hard": np.ones((1, 2)), "very_hard": np.ones((1, 2))}
    with pytest.raises(error, match=message):
        select_expansion(seeds, np.ones((3, 2)), **arguments)  # type: ignore[arg-type]


def test_select_expansion_seed_dim_mismatch() -> None:
    with pytest.raises(ValueError, match=r"`seed_embeddings\['hard'\]` to have embedding dim 2"):
        select_expansion(
            {"hard": np.ones((1, 3))},
            np.ones((3, 2)),
            unlabeled_ids=["a", "b", "c"],
            budget_per_pool={"hard": 1},
        )


def test_select_expansion_names_non_finite_rows() -> None:
    train = np.ones((5, 2))
    train[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"`train_embeddings` .* finite .* row 3 hold NaN or inf"):
        select_expansion(
            {"hard": np.ones((1, 2))},
            np.ones((3, 2)),
            unlabeled_ids=["a", "b", "c"],
            train_embeddings=train,
            budget_per_pool={"hard": 1},
        )
    unlabeled = np.ones((3, 2))
    unlabeled[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"`unlabeled_embeddings` .* finite .* row 1 hold"):
        select_expansion(
            {"hard": np.ones((1, 2))},
            unlabeled,
            unlabeled_ids=["a", "b", "c"],
            budget_per_pool={"hard": 1},
        )


def test_select_expansion_empty_inputs() -> None:
    out = select_expansion(
        {"hard": np.empty((0, 2))},
        np.ones((3, 2)),
        unlabeled_ids=["a", "b", "c"],
        budget_per_pool={"hard": 2},
    )
    assert out.empty and list(out.columns) == list(EXPANSION_COLUMNS)


# ---------------------------------------------------------------------------------------------
# random_expansion


def test_random_expansion_excludes_and_is_seeded() -> None:
    ids = [f"u{i}" for i in range(20)]
    out = random_expansion(ids, n=5, exclude=["u0", "u1", "zzz"], seed=1)
    assert list(out.columns) == list(EXPANSION_COLUMNS)
    assert len(out) == 5 and not {"u0", "u1"} & set(out["id"])
    assert out["seed_pool"].eq("random").all() and out["similarity"].isna().all()
    assert out["id"].tolist() == [ids[i] for i in out["unlabeled_index"]]
    pd.testing.assert_frame_equal(out, random_expansion(ids, n=5, exclude=["u0", "u1"], seed=1))
    assert random_expansion(ids, n=18, exclude=["u0", "u1"])["id"].nunique() == 18


def test_random_expansion_bad_input() -> None:
    with pytest.raises(ValueError, match=r"`n` to be an int in \[0, 2\] .* got 3"):
        random_expansion(["a", "b", "c"], n=3, exclude=["a"])
    with pytest.raises(DataValidationError, match=r"row 1 repeat earlier ids"):
        random_expansion(["a", "a"], n=1)
