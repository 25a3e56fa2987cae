"""Tests of cartoflow.neardup: MinHash/LSH near-duplicate groups, conflict pool, batch dedup."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartoflow.neardup import (
    _components,
    conflict_groups,
    conflict_pool,
    dedup_batch,
    lsh_bands,
    near_duplicate_groups,
    near_duplicate_pairs,
    normalize_text,
    shingle_sets,
)

# ---------------------------------------------------------------------------------------------
# Slow, obviously-correct twins


def shingles_of(text: str, n: int = 3, *, normalize: bool = True) -> set[str]:
    form = normalize_text(text) if normalize else text
    if 0 < len(form) < n:
        form = form + "\0" * (n - len(form))
    return {form[i : i + n] for i in range(len(form) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def groups_from_pairs(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    """Union-find with plain lists; groups numbered in order of their first member."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    numbering: dict[int, int] = {}
    return [numbering.setdefault(find(i), len(numbering)) for i in range(n)]


def same_partition(a: list[int] | np.ndarray, b: list[int] | np.ndarray) -> bool:
    return list(a) == list(b)


def refines(fine: list[int] | np.ndarray, coarse: list[int] | np.ndarray) -> bool:
    """Every group of ``fine`` lies inside one group of ``coarse``."""
    inside: dict[int, int] = {}
    return all(inside.setdefault(int(f), int(c)) == c for f, c in zip(fine, coarse, strict=True))


# ---------------------------------------------------------------------------------------------
# Examples

TITLES = [
    "如何评价电影《流浪地球2》的特效？",  # 0
    "请问如何评价电影《流浪地球2》的特效",  # 1  prefix, punctuation dropped
    "如何评价电影 流浪地球2 的特效!!",  # 2  spaces, half-width punctuation
    "今天北京的天气怎么样",  # 3
    "明天上海会下雨吗？",  # 4
    "如何评价电影《满江红》的剧情？",  # 5  same template, different film
    "今天北京的天气怎么样？？",  # 6  copy of 3
    "Python 列表推导式怎么写",  # 7
    "python列表推导式怎么写？",  # 8  case and spacing
]


def test_normalize_text() -> None:
    assert normalize_text("请问，如何评价 X？") == "请问如何评价x"
    assert normalize_text("ＡＢＣ　１２３") == "abc123"  # full-width folded by NFKC
    assert normalize_text("? ? ?") == "???"  # only punctuation: kept, minus whitespace
    assert normalize_text("   ") == ""


def test_obvious_near_duplicates_grouped_and_unrelated_kept_apart() -> None:
    groups = near_duplicate_groups(TITLES)
    assert groups.dtype == np.int64
    assert groups[0] == groups[1] == groups[2]
    assert groups[3] == groups[6]
    assert groups[7] == groups[8]
    # Same template "如何评价电影《X》的..." but a different film is not a duplicate.
    assert groups[5] != groups[0]
    assert len({groups[i] for i in (0, 3, 4, 5, 7)}) == 5
    # Numbered in order of first appearance.
    assert groups.tolist() == [0, 0, 0, 1, 2, 3, 1, 4, 4]


def test_threshold_controls_grouping() -> None:
    texts = ["如何评价电影流浪地球", "请问如何评价电影流浪地球"]  # Jaccard 8 / 10 = 0.8
    assert near_duplicate_groups(texts, threshold=0.8).tolist() == [0, 0]
    assert near_duplicate_groups(texts, threshold=0.85).tolist() == [0, 1]


def test_pairs_report_exact_jaccard() -> None:
    pairs = near_duplicate_pairs(TITLES, threshold=0.5)
    assert list(pairs.columns) == ["left", "right", "jaccard"]
    for left, right, value in pairs.itertuples(index=False):
        assert left < right
        assert value == pytest.approx(
            jaccard(shingles_of(TITLES[left]), shingles_of(TITLES[right]))
        )
        assert value >= 0.5


def test_short_empty_and_raw_texts() -> None:
    groups = near_duplicate_groups(["a", "A", "", " ", "ab", "ab!"])
    # "a" and "A" normalise to the same padded shingle; empty texts stay singletons.
    assert groups.tolist() == [0, 0, 1, 2, 3, 3]
    raw = near_duplicate_groups(["a", "A", "ab", "ab!"], normalize=False)
    assert raw.tolist() == [0, 1, 2, 3]
    assert near_duplicate_groups([]).tolist() == []


def test_shingle_sets_match_python_sets() -> None:
    values, offsets = shingle_sets(TITLES)
    assert offsets.tolist()[0] == 0 and offsets[-1] == values.size
    for i, text in enumerate(TITLES):
        ids = values[offsets[i] : offsets[i + 1]].tolist()
        assert ids == sorted(set(ids)) and len(ids) == len(shingles_of(text))
    # Equal id <=> equal shingle across texts.
    all_shingles = [shingles_of(t) for t in TITLES]
    for a, b in itertools.combinations(range(len(TITLES)), 2):
        ids_a = set(values[offsets[a] : offsets[a + 1]].tolist())
        ids_b = set(values[offsets[b] : offsets[b + 1]].tolist())
        assert len(ids_a & ids_b) == len(all_shingles[a] & all_shingles[b])


@pytest.mark.parametrize("shingle", [1, 2, 4, 5])
def test_other_shingle_sizes(shingle: int) -> None:
    values, offsets = shingle_sets(TITLES, shingle=shingle)
    for a, b in itertools.combinations(range(len(TITLES)), 2):
        ids_a = set(values[offsets[a] : offsets[a + 1]].tolist())
        ids_b = set(values[offsets[b] : offsets[b + 1]].tolist())
        sa, sb = shingles_of(TITLES[a], shingle), shingles_of(TITLES[b], shingle)
        assert (len(ids_a), len(ids_a & ids_b)) == (len(sa), len(sa & sb))
    groups = near_duplicate_groups(TITLES, shingle=shingle, threshold=0.9)
    assert groups[3] == groups[6]


def test_lsh_bands() -> None:
    assert lsh_bands(0.8, 64) == (12, 5)
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        bands, rows = lsh_bands(threshold, 64)
        assert bands * rows <= 64
        assert (1 - threshold**rows) ** bands <= 0.01
        more = rows + 1
        assert (1 - threshold**more) ** (64 // more) > 0.01  # the largest such rows


_ALPHABET = "如何评价电影天气请问吗，？ ab"


@settings(max_examples=60, deadline=None)
@given(
    bases=st.lists(st.text(_ALPHABET, min_size=0, max_size=14), min_size=1, max_size=6),
    picks=st.lists(st.tuples(st.integers(0, 5), st.text(_ALPHABET, max_size=2)), max_size=20),
    threshold=st.sampled_from([0.5, 0.7, 0.8, 0.9]),
    shingle=st.integers(1, 4),
)
def test_groups_against_all_pairs_twin(
    bases: list[str], picks: list[tuple[int, str]], threshold: float, shingle: int
) -> None:
    # Near-variants of a few base texts: a base plus a short prefix.
    texts = bases + [prefix + bases[i % len(bases)] for i, prefix in picks]
    sets = [shingles_of(t, shingle) for t in texts]
    n = len(texts)
    similar = {
        (a, b): jaccard(sets[a], sets[b])
        for a, b in itertools.combinations(range(n), 2)
        if sets[a] and sets[b]
    }
    exact = [(a, b) for (a, b), j in similar.items() if j >= threshold]
    sure = [(a, b) for (a, b), j in similar.items() if j >= 0.97 or j >= threshold == 1]
    groups = near_duplicate_groups(texts, threshold=threshold, shingle=shingle)
    # No false positives; no pair far above the threshold missed (LSH only risks ~1% at it).
    assert refines(groups, groups_from_pairs(n, exact))
    assert refines(groups_from_pairs(n, sure), groups)
    pairs = near_duplicate_pairs(texts, threshold=threshold, shingle=shingle)
    for left, right, value in pairs.itertuples(index=False):
        assert value == pytest.approx(similar[(left, right)])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 30),
    edges=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=40),
)
def test_components_against_python_union_find(n: int, edges: list[tuple[int, int]]) -> None:
    edges = [(a, b) for a, b in edges if a < n and b < n]
    left = np.array([a for a, _ in edges], dtype=np.int64)
    right = np.array([b for _, b in edges], dtype=np.int64)
    root = _components(n, left, right)
    _, ours = np.unique(root, return_inverse=True)
    assert same_partition(ours, groups_from_pairs(n, edges))
    assert all(root[i] <= i for i in range(n))


# ---------------------------------------------------------------------------------------------
# Conflicts and batches


def test_conflict_groups() -> None:
    groups = np.array([0, 0, 1, 1, 2, 3, 3, 3])
    labels = ["a", "b", "c", "c", "d", "e", "e", "f"]
    out = conflict_groups(groups, labels)
    assert out["group"].tolist() == [0, 3]
    assert out["size"].tolist() == [2, 3]
    assert out["num_labels"].tolist() == [2, 2]
    assert out["samples"].tolist() == [[0, 1], [5, 6, 7]]
    assert out["labels"].tolist() == [["a", "b"], ["e", "e", "f"]]
    none = conflict_groups(np.array([0, 1]), [1, 1])
    assert none.empty and list(none.columns) == list(out.columns)


def test_conflict_pool() -> None:
    labels = np.array([0, 1, 0, 2, 2, 2, 1, 0, 0])
    ids = [f"q{i}" for i in range(len(TITLES))]
    pool = conflict_pool(TITLES, labels, ids)
    assert list(pool.columns) == ["sample", "id", "label", "pool", "rule", "group"]
    # Titles 0-2 disagree (0, 1, 0); 3 and 6 disagree (2, 1); 7 and 8 agree (0, 0).
    assert pool["sample"].tolist() == [0, 1, 2, 3, 6]
    assert pool["id"].tolist() == ["q0", "q1", "q2", "q3", "q6"]
    assert pool["label"].tolist() == [0, 1, 0, 2, 1]
    assert pool["group"].tolist() == [0, 0, 0, 1, 1]
    assert (pool["pool"] == "conflict").all()
    assert pool["rule"].iloc[0].startswith("conflict: near-duplicate texts (Jaccard >= 0.8")
    again = conflict_pool(TITLES, labels, ids, groups=near_duplicate_groups(TITLES))
    assert again.drop(columns="rule").equals(pool.drop(columns="rule"))
    assert again["rule"].iloc[0] == "conflict: near-duplicate group (given) with different labels"


def test_dedup_batch_keeps_first_of_each_group() -> None:
    keep = dedup_batch(TITLES)
    assert keep.tolist() == [True, False, False, True, True, True, False, True, False]
    kept = [t for t, k in zip(TITLES, keep, strict=True) if k]
    assert np.unique(near_duplicate_groups(kept)).size == len(kept)


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0}, r"`threshold` to be a Jaccard similarity in \(0, 1\], but got 0"),
        ({"threshold": 1.5}, r"`threshold` .* got 1.5"),
        ({"threshold": "high"}, r"`threshold` .* got 'high'"),
        ({"shingle": 0}, r"`shingle` to be an int >= 1, but got 0"),
        ({"num_perm": 2.5}, r"`num_perm` to be an int >= 1, but got 2.5"),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        near_duplicate_groups(["a", "b"], **kwargs)  # type: ignore[arg-type]


def test_non_string_texts_named_by_row() -> None:
    with pytest.raises(ValueError, match=r"`texts` to hold strings, but rows 1, 3 hold float, int"):
        near_duplicate_groups(["a", float("nan"), "b", 3])


def test_misaligned_groups_labels_ids() -> None:
    with pytest.raises(ValueError, match=r"`labels` to hold 2 values .* got shape \(3,\)"):
        conflict_groups(np.array([0, 1]), [0, 1, 2])
    with pytest.raises(ValueError, match=r"`groups` to be a 1-D integer array"):
        conflict_groups(np.array([0.5, 1.0]), [0, 1])
    with pytest.raises(ValueError, match=r"`ids` to hold 2 values .* got shape \(1,\)"):
        conflict_pool(["a", "b"], [0, 1], ["x"])
    with pytest.raises(ValueError, match=r"`groups` to hold 2 values \(one per text\)"):
        conflict_pool(["a", "b"], [0, 1], ["x", "y"], groups=np.array([0]))
