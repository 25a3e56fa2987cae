"""Near-duplicate texts: MinHash + LSH candidates, verified by exact Jaccard, grouped by union-find.

Question titles come back with small edits: a "请问" (may I ask) prefix, other punctuation, an extra
space. Such copies hurt twice: with different labels they are label noise the model cannot learn
(the reference report's inconsistently labelled "如何评价..." titles, REFERENCE.md), and in one
annotation batch they cost the annotators twice for one decision. This module finds them:

1. **Normalise** each text: Unicode NFKC, case-folded, punctuation, symbols and whitespace removed
   (a text that is only punctuation keeps it, minus whitespace). Texts shorter than the shingle
   size are padded, so every non-empty text has at least one shingle.
2. **Shingle**: the set of character n-grams (``shingle=3`` by default; characters rather than
   words because Chinese has no spaces). Similarity is the Jaccard index of two shingle sets,
   ``|A & B| / |A | B|``.
3. **MinHash** (Broder, 1997): ``num_perm`` universal hash functions ``h(x) = (a*x + b) mod p``
   with ``p = 2**31 - 1`` over 31-bit shingle hashes; a text's signature is the minimum of each
   function over its shingles. Two signatures agree at one position with probability = Jaccard.
4. **LSH banding**: the signature is cut into ``bands`` bands of ``rows`` values; texts that agree
   on a whole band become a candidate pair. A pair of Jaccard ``s`` is a candidate with
   probability ``1 - (1 - s**rows)**bands``. :func:`lsh_bands` picks the largest ``rows`` (fewest
   false candidates) that still catches a pair exactly at the threshold with probability >= 99%;
   for the defaults (threshold 0.8, 64 permutations) that is 12 bands x 5 rows: 99.2% at 0.8,
   32% at 0.5, 3% at 0.3.
5. **Verify** every candidate pair by its exact Jaccard on the shingle sets, so there are no
   false positives; keep pairs with Jaccard >= ``threshold``.
6. **Group** with union-find: near-duplicate is made transitive, a group is a connected component.
   Texts identical after normalisation are grouped directly, before hashing, so large clusters of
   exact copies never reach the (quadratic per bucket) pair stage.

Everything is vectorised numpy over a flat array of all shingles (``np.minimum.reduceat`` for the
signatures, sorting for buckets and set intersections); 100k short titles take a few seconds
(``benchmarks/bench_retrieval.py``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cartoflow.errors import describe_items, describe_rows

__all__ = [
    "conflict_groups",
    "conflict_pool",
    "dedup_batch",
    "lsh_bands",
    "near_duplicate_groups",
    "near_duplicate_pairs",
    "normalize_text",
    "shingle_sets",
]

MERSENNE_31 = (1 << 31) - 1
"""The prime modulus of the MinHash permutations."""

_U64 = np.uint64
_NON_WORD = re.compile(r"[\W_]+")
_SPACE = re.compile(r"\s+")
# Bits per code point when up to three of them are packed into one exact 64-bit shingle id.
_CODE_POINT_BITS = 21
# Elements per vectorised block (MinHash values, pair intersections): bounds the temporaries.
_BLOCK_ELEMENTS = 1 << 23


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wraps modulo 2**64): a fast, well-mixed hash."""
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def normalize_text(text: str) -> str:
    """The form texts are compared in: NFKC, case-folded, without punctuation and whitespace.

    Args:
        text: any text.

    Returns:
        ``"请问，如何评价 X？"`` -> ``"请问如何评价x"``. A text made only of punctuation keeps its
        punctuation (minus whitespace), so ``"???"`` and ``"!!!"`` stay different.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    stripped = _NON_WORD.sub("", folded)
    return stripped if stripped else _SPACE.sub("", folded)


def _check_texts(texts: Sequence[Any]) -> list[str]:
    values = list(texts)
    bad = [i for i, t in enumerate(values) if not isinstance(t, str)]
    if bad:
        kinds = describe_items(sorted({type(values[i]).__name__ for i in bad}))
        raise ValueError(
            f"Expected `texts` to hold strings, but {describe_rows(bad)} hold {kinds}."
        )
    return values


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"Expected `{name}` to be an int >= 1, but got {value!r}.")
    return int(value)


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number):
        raise ValueError(
            f"Expected `threshold` to be a Jaccard similarity in (0, 1], but got {threshold!r}."
        )
    if not 0 < float(threshold) <= 1:
        raise ValueError(
            f"Expected `threshold` to be a Jaccard similarity in (0, 1], but got {threshold!r}."
        )
    return float(threshold)


def _forms(values: list[str], normalize: bool) -> list[str]:
    return [normalize_text(t) for t in values] if normalize else values


def shingle_sets(
    texts: Sequence[str], *, shingle: int = 3, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The set of character ``shingle``-grams of every text, as a flat CSR array.

    Args:
        texts: (N,) strings.
        shingle: characters per shingle.
        normalize: compare :func:`normalize_text` forms (True) or the raw texts.

    Returns:
        ``(values, offsets)``: values (P,) int64 shingle ids, sorted and unique within each text,
        dense over the distinct shingles of these texts (equal id <=> equal shingle; exact for
        ``shingle <= 3``, up to 64-bit hash collisions beyond); offsets
        (N + 1,) int64, text i owns ``values[offsets[i]:offsets[i + 1]]``. An empty text has
        no shingles.
    """
    values = _check_texts(texts)
    dense, offsets, _ = _shingles(
        _forms(values, normalize), _check_positive_int("shingle", shingle)
    )
    return dense, offsets


def _shingles(forms: list[str], shingle: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`shingle_sets` of texts already in their compared form, plus shingle hashes.

    Returns:
        ``(values, offsets, shingle_ids)``: the two arrays of :func:`shingle_sets` and (P,)
        uint64 ids of the same shingles that, unlike the dense ids, do not depend on the other
        texts: up to three code points packed exactly (21 bits each), longer shingles hashed.
    """
    # Padding gives a text shorter than the shingle one shingle; NUL never survives normalising.
    forms = [f + "\0" * (shingle - len(f)) if 0 < len(f) < shingle else f for f in forms]
    lengths = np.fromiter((len(f) for f in forms), dtype=np.int64, count=len(forms))
    code_points = np.frombuffer("".join(forms).encode("utf-32-le"), dtype="<u4").astype(_U64)
    counts = np.maximum(lengths - shingle + 1, 0)
    starts = np.r_[0, np.cumsum(lengths)[:-1]] if lengths.size else lengths
    first = np.r_[0, np.cumsum(counts)[:-1]] if counts.size else counts
    total = int(counts.sum())
    text_of = np.repeat(np.arange(len(forms), dtype=np.int64), counts)
    position = np.repeat(starts - first, counts) + np.arange(total, dtype=np.int64)
    ids = np.zeros(total, dtype=_U64)
    exact = shingle * _CODE_POINT_BITS <= 64
    for j in range(shingle):
        point = code_points[position + j]
        if exact:
            # Up to three code points (< 2**21 each) pack into 64 bits: an exact shingle id.
            ids = (ids << _U64(_CODE_POINT_BITS)) | point
        else:
            ids = _splitmix64(ids ^ point) + _U64(j + 1)
    # Dense ids (rank among the distinct shingles), then one sort of (text, id) keys gives every
    # text's set sorted and unique. Explicit sorts: faster here than np.unique's hash path.
    order = np.argsort(ids)
    sorted_ids = ids[order]
    dense = np.empty(total, dtype=np.int64)
    dense[order] = np.cumsum(np.r_[False, sorted_ids[1:] != sorted_ids[:-1]])
    num_distinct = int(dense.max()) + 1 if total else 1
    keys = text_of * num_distinct + dense
    keys.sort()
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if total else keys
    offsets = np.searchsorted(keys // num_distinct, np.arange(len(forms) + 1), side="left")
    dense_values = keys % num_distinct
    distinct_ids = sorted_ids[np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]] if total else ids
    return dense_values, offsets.astype(np.int64), distinct_ids[dense_values]


def lsh_bands(threshold: float, num_perm: int, *, max_miss: float = 0.01) -> tuple[int, int]:
    """LSH ``(bands, rows)`` for a Jaccard ``threshold`` with ``num_perm`` permutations.

    A pair of Jaccard ``s`` shares a band, and so becomes a candidate, with probability
    ``1 - (1 - s**rows)**bands``. More rows cut false candidates (verified and dropped later, so
    they cost only time); too many rows miss true pairs. Picks the largest ``rows`` whose miss
    probability at ``threshold`` is at most ``max_miss``, with ``bands = num_perm // rows``.

    Args:
        threshold: Jaccard similarity in (0, 1].
        num_perm: MinHash permutations available.
        max_miss: highest accepted probability of missing a pair exactly at ``threshold``.

    Returns:
        ``(bands, rows)`` with ``bands * rows <= num_perm``; ``(12, 5)`` for 0.8 and 64.
    """
    threshold = _check_threshold(threshold)
    num_perm = _check_positive_int("num_perm", num_perm)
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if (1 - threshold**rows) ** bands <= max_miss:
            best = (bands, rows)
    return best


def _minhash(
    shingle_ids: np.ndarray, offsets: np.ndarray, *, num_perm: int, seed: int
) -> np.ndarray:
    """MinHash signatures from the (P,) uint64 shingle hashes of texts laid out by ``offsets``.

    Returns:
        (N', num_perm) uint32, one row per text that has shingles (N' of them), in order; entry
        j is ``min((a_j * x + b_j) mod p)`` over the text's 31-bit shingle hashes ``x``.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, MERSENNE_31, size=num_perm, dtype=np.int64).astype(_U64)
    b = rng.integers(0, MERSENNE_31, size=num_perm, dtype=np.int64).astype(_U64)
    # 31-bit x keeps a*x + b below 2**62, so uint64 arithmetic is exact (no wrap-around).
    x = _splitmix64(shingle_ids ^ _U64(0x5851F42D4C957F2D)) >> _U64(33)
    lengths = np.diff(offsets)
    starts = offsets[:-1][lengths > 0]
    signature = np.empty((starts.size, num_perm), dtype=np.uint32)
    if starts.size == 0:
        return signature
    step = max(1, min(num_perm, _BLOCK_ELEMENTS // max(1, x.size)))
    buffer = np.empty((step, x.size), dtype=_U64)
    for lo in range(0, num_perm, step):
        hi = min(lo + step, num_perm)
        hashed = buffer[: hi - lo]
        # In place: the temporaries of the plain expression cost more than the arithmetic.
        np.multiply(a[lo:hi, None], x[None, :], out=hashed)
        hashed += b[lo:hi, None]
        np.remainder(hashed, _U64(MERSENNE_31), out=hashed)
        signature[:, lo:hi] = np.minimum.reduceat(hashed, starts, axis=1).T
    return signature


def _ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorised."""
    total = int(lengths.sum())
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(total, dtype=np.int64)


def _bucket_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) of rows with equal ``keys`` (N,): two (P,) int64 arrays."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    run_start = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    run_len = np.diff(np.r_[run_start, keys.size])
    in_run = np.repeat(run_len > 1, run_len)
    position = np.arange(keys.size, dtype=np.int64)[in_run]
    run_end = np.repeat(run_start + run_len, run_len)[in_run]
    partners = run_end - position - 1
    left = np.repeat(position, partners)
    right = _ragged_arange(position + 1, partners)
    a, b = order[left], order[right]
    return np.minimum(a, b), np.maximum(a, b)


def _jaccard(
    values: np.ndarray, offsets: np.ndarray, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """(P,) float64 exact Jaccard of the shingle sets of texts ``left[i]`` and ``right[i]``."""
    lengths = np.diff(offsets)
    out = np.empty(left.size, dtype=np.float64)
    span = int(values.max()) + 1 if values.size else 1
    sizes = lengths[left] + lengths[right]
    bounds = np.searchsorted(np.cumsum(sizes), np.arange(0, int(sizes.sum()), _BLOCK_ELEMENTS))
    bounds = np.unique(np.r_[0, bounds, left.size])
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        pair = np.arange(hi - lo, dtype=np.int64)
        parts = []
        for side in (left[lo:hi], right[lo:hi]):
            n = lengths[side]
            members = values[_ragged_arange(offsets[side], n)]
            parts.append(np.repeat(pair, n) * span + members)
        # Sets are unique within a text, so a key occurs twice exactly when both texts hold it.
        keys = np.sort(np.concatenate(parts))
        twice = keys[1:][keys[1:] == keys[:-1]]
        shared = np.bincount(twice // span, minlength=hi - lo)
        union = lengths[left[lo:hi]] + lengths[right[lo:hi]] - shared
        out[lo:hi] = shared / union
    return out


def _representatives(forms: list[str]) -> np.ndarray:
    """(N,) int64: index of the first text with the same compared form (-1 for empty forms)."""
    first: dict[str, int] = {}
    rep = np.empty(len(forms), dtype=np.int64)
    for i, form in enumerate(forms):
        rep[i] = first.setdefault(form, i) if form else -1
    return rep


def _unique_pairs(
    texts: Sequence[str],
    *,
    threshold: float,
    shingle: int,
    num_perm: int,
    seed: int,
    normalize: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs -> (rep, unique_rows, left, right, jaccard); pairs index unique_rows."""
    values = _check_texts(texts)
    threshold = _check_threshold(threshold)
    shingle = _check_positive_int("shingle", shingle)
    num_perm = _check_positive_int("num_perm", num_perm)
    forms = _forms(values, normalize)
    rep = _representatives(forms)
    unique_rows = np.flatnonzero(rep == np.arange(len(forms)))
    left, right, jaccard = _verified_pairs(
        [forms[i] for i in unique_rows.tolist()],
        threshold=threshold,
        shingle=shingle,
        num_perm=num_perm,
        seed=seed,
    )
    return rep, unique_rows, left, right, jaccard


def near_duplicate_pairs(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    shingle: int = 3,
    num_perm: int = 64,
    seed: int = 0,
    normalize: bool = True,
) -> pd.DataFrame:
    """Pairs of texts whose shingle sets have Jaccard >= ``threshold`` (see the module docs).

    Texts identical after normalisation are *not* listed pairwise (that would be quadratic in
    the number of copies); :func:`near_duplicate_groups` groups them directly.

    Args:
        texts: (N,) strings.
        threshold: Jaccard similarity in (0, 1] at or above which two texts are near-duplicates.
        shingle: characters per shingle.
        num_perm: MinHash permutations (64: 12 bands x 5 rows at threshold 0.8).
        seed: random seed of the hash functions; LSH may miss ~1% of the pairs exactly at the
            threshold, and which ones depends on it.
        normalize: compare :func:`normalize_text` forms (True) or the raw texts.

    Returns:
        Columns ``left``, ``right`` (int64 text indices, left < right, both the first of their
        exact-copy class) and ``jaccard`` (float64, high = similar), sorted by (left, right).
    """
    _, unique_rows, left, right, jaccard = _unique_pairs(
        texts,
        threshold=threshold,
        shingle=shingle,
        num_perm=num_perm,
        seed=seed,
        normalize=normalize,
    )
    return pd.DataFrame(
        {"left": unique_rows[left], "right": unique_rows[right], "jaccard": jaccard}
    )


def _verified_pairs(
    forms: list[str], *, threshold: float, shingle: int, num_perm: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LSH candidate pairs of ``forms`` with exact Jaccard >= threshold, sorted by (left, right)."""
    empty = np.empty(0, dtype=np.int64)
    values, offsets, shingle_ids = _shingles(forms, shingle)
    has_shingles = np.flatnonzero(np.diff(offsets) > 0)
    if has_shingles.size < 2:
        return empty, empty, np.empty(0, dtype=np.float64)
    bands, rows = lsh_bands(threshold, num_perm)
    # Only the permutations the bands use are computed.
    signature = _minhash(shingle_ids, offsets, num_perm=bands * rows, seed=seed)
    n = has_shingles.size
    candidates = []
    for band in range(bands):
        key = np.full(n, band + 1, dtype=_U64)
        for col in range(band * rows, (band + 1) * rows):
            key = _splitmix64(key ^ signature[:, col].astype(_U64))
        lo, hi = _bucket_pairs(key)
        candidates.append(lo * n + hi)
    flat = np.unique(np.concatenate(candidates))
    left, right = has_shingles[flat // n], has_shingles[flat % n]
    jaccard = _jaccard(values, offsets, left, right)
    keep = jaccard >= threshold
    return left[keep], right[keep], jaccard[keep]


def _components(num_nodes: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """(num_nodes,) int64 root of each node: the smallest node index of its component.

    Vectorised union-find: hook the larger root of every edge under the smaller one, compress
    paths fully by pointer jumping, repeat until every edge joins equal roots. Parents only ever
    decrease, so there are no cycles and the root is the component's smallest index.
    """
    parent = np.arange(num_nodes, dtype=np.int64)
    while True:
        a, b = parent[left], parent[right]
        split = a != b
        if not split.any():
            return parent
        np.minimum.at(parent, np.maximum(a, b)[split], np.minimum(a, b)[split])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def near_duplicate_groups(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    shingle: int = 3,
    num_perm: int = 64,
    seed: int = 0,
    normalize: bool = True,
) -> np.ndarray:
    """Group near-duplicate texts (MinHash + LSH, exact Jaccard check, union-find).

    Two texts are near-duplicates when the Jaccard index of their character-shingle sets is
    >= ``threshold``; groups are the connected components of that relation (so it is made
    transitive). Parameters and method: see the module docs.

    Args:
        texts: (N,) strings, e.g. question titles.
        threshold: Jaccard similarity in (0, 1]; 0.8 joins a title and the same title with
            "请问" in front or different punctuation, and little else.
        shingle: characters per shingle (3: character trigrams).
        num_perm: MinHash permutations.
        seed: random seed of the hash functions (LSH misses ~1% of the pairs exactly at the
            threshold, fewer above it).
        normalize: compare :func:`normalize_text` forms (True) or the raw texts.

    Returns:
        (N,) int64 group index per text, numbered 0, 1, ... in order of each group's first text;
        a text without near-duplicates (or empty) is a group of its own.

    Raises:
        ValueError: a non-string text (naming the rows), or a parameter out of range.
    """
    rep, unique_rows, left, right, _ = _unique_pairs(
        texts,
        threshold=threshold,
        shingle=shingle,
        num_perm=num_perm,
        seed=seed,
        normalize=normalize,
    )
    num_texts = rep.size
    if num_texts == 0:
        return np.empty(0, dtype=np.int64)
    root = np.arange(num_texts, dtype=np.int64)
    root[unique_rows] = unique_rows[_components(unique_rows.size, left, right)]
    copies = rep >= 0
    root[copies] = root[rep[copies]]
    _, groups = np.unique(root, return_inverse=True)
    return groups.astype(np.int64)


def _check_aligned(groups: np.ndarray, name: str, other: Any) -> np.ndarray:
    array = np.asarray(other)
    if array.ndim != 1 or array.shape[0] != groups.shape[0]:
        raise ValueError(
            f"Expected `{name}` to hold {groups.shape[0]} values (one per entry of `groups`), "
            f"but got shape {array.shape}."
        )
    return array


def _as_groups(groups: Any) -> np.ndarray:
    array = np.asarray(groups)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"Expected `groups` to be a 1-D integer array, but got shape {array.shape} "
            f"and dtype {array.dtype}."
        )
    return array.astype(np.int64)


def conflict_groups(groups: np.ndarray, labels: Sequence[Any] | np.ndarray) -> pd.DataFrame:
    """Near-duplicate groups whose members carry more than one distinct label.

    Near-duplicates with different labels are label noise the model cannot fit; whichever label
    is right, at least one of them is wrong, so the whole group goes to the annotators.

    Args:
        groups: (N,) int64 group per sample (:func:`near_duplicate_groups`).
        labels: (N,) label per sample (indices or names).

    Returns:
        One row per conflicting group, sorted by group: ``group`` (int64), ``size`` (int64),
        ``num_labels`` (int64 distinct labels, >= 2), ``samples`` (list of sample indices,
        ascending) and ``labels`` (list of their labels, aligned with ``samples``).
    """
    group = _as_groups(groups)
    label = _check_aligned(group, "labels", labels)
    codes, _ = pd.factorize(pd.Series(label, dtype=object), use_na_sentinel=False)
    frame = pd.DataFrame({"group": group, "code": codes, "sample": np.arange(group.size)})
    distinct = frame.groupby("group")["code"].nunique()
    conflicted = distinct.index[distinct.to_numpy() > 1]
    members = frame[frame["group"].isin(conflicted)].sort_values(["group", "sample"])
    samples = members.groupby("group")["sample"].agg(list)
    return pd.DataFrame(
        {
            "group": conflicted.to_numpy(dtype=np.int64),
            "size": samples.map(len).to_numpy(dtype=np.int64),
            "num_labels": distinct.loc[conflicted].to_numpy(dtype=np.int64),
            "samples": samples.to_list(),
            "labels": [[label[i] for i in s] for s in samples.to_list()],
        }
    )


def conflict_pool(
    texts: Sequence[str],
    labels: Sequence[Any] | np.ndarray,
    ids: Sequence[Any] | np.ndarray,
    *,
    threshold: float = 0.8,
    shingle: int = 3,
    num_perm: int = 64,
    seed: int = 0,
    normalize: bool = True,
    groups: np.ndarray | None = None,
) -> pd.DataFrame:
    """The ``conflict`` pool: every sample of a near-duplicate group with conflicting labels.

    It goes ahead of ``relabel`` in pool priority: a conflict is certain evidence of a wrong
    label, where the training-dynamics rules only make it likely.

    Args:
        texts: (N,) training texts.
        labels: (N,) their labels.
        ids: (N,) their ids.
        threshold: Jaccard threshold of :func:`near_duplicate_groups`.
        shingle: characters per shingle.
        num_perm: MinHash permutations.
        seed: random seed of the hash functions.
        normalize: compare :func:`normalize_text` forms (True) or the raw texts.
        groups: (N,) precomputed groups; when given, the texts are not hashed again.

    Returns:
        One row per sample in a conflicting group, sorted by (group, sample): ``sample`` (int64
        row), ``id``, ``label``, ``pool`` (``"conflict"``), ``rule`` and ``group`` (int64
        near-duplicate group).

    Raises:
        ValueError: inputs of different lengths, non-string texts, parameters out of range.
    """
    values = _check_texts(texts)
    given_groups = groups is not None
    if groups is None:
        groups = near_duplicate_groups(
            values,
            threshold=threshold,
            shingle=shingle,
            num_perm=num_perm,
            seed=seed,
            normalize=normalize,
        )
    group = _as_groups(groups)
    if group.shape[0] != len(values):
        raise ValueError(
            f"Expected `groups` to hold {len(values)} values (one per text), "
            f"but got shape {group.shape}."
        )
    label = _check_aligned(group, "labels", labels)
    ident = _check_aligned(group, "ids", np.asarray(ids, dtype=object))
    conflicts = conflict_groups(group, label)
    samples = np.array([s for members in conflicts["samples"] for s in members], dtype=np.int64)
    if given_groups:
        rule = "conflict: near-duplicate group (given) with different labels"
    else:
        rule = (
            f"conflict: near-duplicate texts (Jaccard >= {threshold:g}, {shingle}-char shingles)"
            " with different labels"
        )
    return pd.DataFrame(
        {
            "sample": samples,
            "id": ident[samples],
            "label": label[samples],
            "pool": np.full(samples.size, "conflict", dtype=object),
            "rule": np.full(samples.size, rule, dtype=object),
            "group": group[samples],
        }
    )


def dedup_batch(
    batch_texts: Sequence[str],
    *,
    threshold: float = 0.8,
    shingle: int = 3,
    num_perm: int = 64,
    seed: int = 0,
    normalize: bool = True,
) -> np.ndarray:
    """Mask that keeps one text per near-duplicate group, so a batch never asks twice.

    Args:
        batch_texts: (N,) texts of an annotation batch, in priority order (the first text of a
            group is the one kept, so put higher-priority pools first).
        threshold: Jaccard threshold of :func:`near_duplicate_groups`.
        shingle: characters per shingle.
        num_perm: MinHash permutations.
        seed: random seed of the hash functions.
        normalize: compare :func:`normalize_text` forms (True) or the raw texts.

    Returns:
        (N,) bool, True for the first text of each group. Groups are transitive, so a text that
        is only a near-duplicate of a dropped text is dropped too: the kept texts are pairwise
        not near-duplicates, and the batch holds each cluster once.
    """
    groups = near_duplicate_groups(
        batch_texts,
        threshold=threshold,
        shingle=shingle,
        num_perm=num_perm,
        seed=seed,
        normalize=normalize,
    )
    keep = np.zeros(groups.size, dtype=bool)
    keep[np.unique(groups, return_index=True)[1]] = True
    return keep
