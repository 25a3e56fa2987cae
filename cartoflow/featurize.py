"""Hashed n-gram features for text, ready for ``torch.nn.EmbeddingBag`` (numpy only, no torch).

Character n-grams need no tokenizer and no download, so the same featurizer works for Chinese,
where a character is already close to a word, and for English, where character n-grams cover
morphology and typos; optional word n-grams add whole English words and word pairs.

The hash is fixed and unsalted (unlike Python's ``hash()``), so an n-gram maps to the same bucket
in every process, on every machine and in every version of this module with the same ``seed``:

    h = FNV-1a over the n-gram's Unicode code points, 64-bit, starting from a seed-dependent basis
    bucket = splitmix64(h XOR kind_tag) mod buckets

where ``kind_tag`` separates character n-grams of each length from word n-grams. All of it runs as
vectorised uint64 numpy arithmetic over the code points of a whole chunk of texts at once; there
is no per-n-gram Python loop. A reference implementation in pure Python lives in the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["HashedNgrams"]

_MASK64 = (1 << 64) - 1
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
# Tags keep n-grams of different kinds apart even when their code points coincide.
CHAR_TAG = 0x9E3779B97F4A7C15  # tag for char n-gram of length n: CHAR_TAG * n
WORD_TAG = 0xD1B54A32D192ED03  # tag for word n-gram of n words: WORD_TAG * n
# Code points from here on (CJK radicals, ideographs, kana, hangul, ...) are covered by the
# character n-grams and are never part of a "word"; a whole unsegmented Chinese title as one
# word would give every title a private feature and make mislabelled titles easy to memorise.
_WORD_TABLE_SIZE = 0x2E80
# Texts per vectorised chunk: bounds the temporary uint64 arrays (about 40 bytes per character).
_CHUNK_TEXTS = 32768

_U64 = np.uint64


def _splitmix64_int(value: int) -> int:
    """splitmix64 finaliser on a Python int (reference twin of :func:`_splitmix64`)."""
    z = value & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array; uint64 array arithmetic wraps modulo 2**64."""
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def seed_basis(seed: int) -> int:
    """The FNV starting value for ``seed`` (seed 0 keeps the standard FNV-1a offset basis)."""
    return FNV_OFFSET ^ (_splitmix64_int(seed) if seed else 0)


@lru_cache(maxsize=1)
def _word_char_table() -> np.ndarray:
    """(0x2E80,) bool: which code points below the CJK block count as word characters."""
    return np.array([chr(cp).isalnum() or cp == 0x5F for cp in range(_WORD_TABLE_SIZE)], dtype=bool)


def is_word_char(code_points: np.ndarray) -> np.ndarray:
    """(T,) bool: letters, digits and ``_`` below U+2E80 (Latin, Greek, Cyrillic, ...)."""
    table = _word_char_table()
    inside = code_points < _WORD_TABLE_SIZE
    out = np.zeros(code_points.shape, dtype=bool)
    out[inside] = table[code_points[inside]]
    return out


@dataclass(frozen=True)
class HashedNgrams:
    """Hash character (and optionally word) n-grams of each text into ``buckets`` ids.

    Args:
        buckets: Number of hash buckets, the ``num_embeddings`` of the ``EmbeddingBag``.
            Collisions share one embedding row; 2**18 is plenty for ~1M short titles.
        ngram_range: Inclusive (min, max) character n-gram lengths; (1, 3) gives characters,
            character pairs and triples.
        word_ngrams: 0 for none, 1 for word unigrams, 2 for unigrams and bigrams. A word is a run
            of letters, digits or ``_`` below U+2E80, so Chinese characters never form words.
        lowercase: Lower-case every text first (``str.lower``).
        seed: Changes every bucket assignment; keep it fixed for a trained model.

    Example:
        >>> ids, offsets = HashedNgrams(buckets=1000).transform(["如何学习 Python", "ok"])
        >>> offsets.tolist()  # where each text's ids start in ``ids``
        [0, 30]
    """

    buckets: int = 2**18
    ngram_range: tuple[int, int] = (1, 3)
    word_ngrams: int = 0
    lowercase: bool = True
    seed: int = 0
    _orders: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.buckets, int | np.integer) or not 1 <= self.buckets <= 2**62:
            raise ValueError(f"Expected `buckets` in [1, 2**62], but got {self.buckets!r}.")
        lo, hi = self.ngram_range
        if not 1 <= lo <= hi or hi > 16:
            raise ValueError(
                "Expected `ngram_range` = (min, max) with 1 <= min <= max <= 16, "
                f"but got {self.ngram_range!r}."
            )
        if self.word_ngrams not in (0, 1, 2):
            raise ValueError(
                f"Expected `word_ngrams` in {{0, 1, 2}}, but got {self.word_ngrams!r}."
            )
        object.__setattr__(self, "ngram_range", (int(lo), int(hi)))
        object.__setattr__(self, "_orders", tuple(range(int(lo), int(hi) + 1)))

    def params(self) -> dict[str, Any]:
        """JSON-ready constructor arguments (saved beside a model so it can be rebuilt)."""
        return {
            "buckets": int(self.buckets),
            "ngram_range": list(self.ngram_range),
            "word_ngrams": self.word_ngrams,
            "lowercase": self.lowercase,
            "seed": self.seed,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> HashedNgrams:
        """Inverse of :meth:`params`."""
        values = dict(params)
        if "ngram_range" in values:
            values["ngram_range"] = tuple(values["ngram_range"])
        return cls(**values)

    def transform(self, texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Hash every text into a bag of bucket ids.

        Args:
            texts: N strings (any iterable: list, tuple, pandas Series, numpy array of str).

        Returns:
            ``(ids, offsets)``: ``ids`` (T,) int64 in ``[0, buckets)``, all bags concatenated in
            text order; ``offsets`` (N,) int64, where bag i starts in ``ids`` (the ``offsets``
            argument of ``EmbeddingBag``; bag i ends where bag i + 1 starts). A text of length L
            yields ``max(L - n + 1, 0)`` ids for each n in ``ngram_range``, then its word n-grams.
            Within a bag, ids are ordered by position, so the order is stable but carries no
            meaning for a mean-pooled bag.

        Raises:
            TypeError: An item is not a ``str``; the message names its position.
        """
        items = texts if isinstance(texts, list) else list(texts)
        id_parts: list[np.ndarray] = []
        count_parts: list[np.ndarray] = []
        for start in range(0, len(items), _CHUNK_TEXTS):
            ids, counts = self._transform_chunk(items[start : start + _CHUNK_TEXTS], start)
            id_parts.append(ids)
            count_parts.append(counts)
        if not id_parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        ids = np.concatenate(id_parts)
        counts = np.concatenate(count_parts)
        offsets = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        return ids, offsets

    def _transform_chunk(self, texts: Sequence[Any], first: int) -> tuple[np.ndarray, np.ndarray]:
        """Bags of one chunk: ((T,) int64 ids, (n,) int64 bag sizes)."""
        try:
            prepared = [t.lower() for t in texts] if self.lowercase else list(texts)
            joined = "".join(prepared)
        except (AttributeError, TypeError):
            bad = [first + i for i, t in enumerate(texts) if not isinstance(t, str)]
            kinds = sorted({type(texts[i - first]).__name__ for i in bad})
            raise TypeError(
                f"Expected every text to be a str, but positions {bad[:5]}"
                f"{' (and more)' if len(bad) > 5 else ''} hold {', '.join(kinds)}."
            ) from None
        lengths = np.fromiter(map(len, prepared), dtype=np.int64, count=len(prepared))
        cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        total = len(cps)
        ends = np.cumsum(lengths)
        # For each character: end (exclusive) of the text it belongs to, so that n-grams never
        # cross from one text into the next.
        text_end = np.repeat(ends, lengths)
        pos = np.arange(total, dtype=np.int64)
        room = text_end - pos  # characters left in this text from here on, >= 1

        columns: list[np.ndarray] = []
        valid: list[np.ndarray] = []
        max_n = self.ngram_range[1]
        padded = np.zeros(total + max_n, dtype=np.uint64)
        padded[:total] = cps
        h = np.full(total, seed_basis(self.seed), dtype=np.uint64)
        prime = _U64(FNV_PRIME)
        for n in range(1, max_n + 1):
            h = (h ^ padded[n - 1 : n - 1 + total]) * prime
            if n in self._orders:
                columns.append(_splitmix64(h ^ _U64((CHAR_TAG * n) & _MASK64)))
                valid.append(room >= n)
        counts = np.zeros(len(prepared), dtype=np.int64)
        for n in self._orders:
            counts += np.maximum(lengths - n + 1, 0)

        if self.word_ngrams:
            word_cols, word_valid, word_counts = self._word_columns(cps, pos, text_end, lengths)
            columns += word_cols
            valid += word_valid
            counts += word_counts

        # Row-major selection over (position, kind) keeps every text's ids contiguous and in
        # text order, which is exactly the flat layout EmbeddingBag wants.
        hashes = np.stack(columns, axis=1)[np.stack(valid, axis=1)]
        if self.buckets & (self.buckets - 1) == 0:
            # Same result as the modulo for a power of two, several times faster on uint64.
            hashes &= _U64(self.buckets - 1)
        else:
            hashes %= _U64(self.buckets)
        return hashes.astype(np.int64), counts

    def _word_columns(
        self, cps: np.ndarray, pos: np.ndarray, text_end: np.ndarray, lengths: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Word n-gram hashes placed at each word's first character (and their validity)."""
        total = len(cps)
        word = is_word_char(cps)
        text_start = text_end - np.repeat(lengths, lengths)
        prev_word = np.zeros(total, dtype=bool)
        prev_word[1:] = word[:-1]
        starts = np.flatnonzero(word & ~(prev_word & (pos > text_start)))
        # Length of each word: scan forward to the first non-word char or the end of its text.
        next_break = np.flatnonzero(~word)
        stop = np.minimum(
            np.append(next_break, total)[np.searchsorted(next_break, starts)], text_end[starts]
        )
        word_len = stop - starts

        # FNV-1a over each word's characters, all words in lock-step: step k touches only the
        # words longer than k, so the total work is the number of word characters.
        hashes = np.full(len(starts), seed_basis(self.seed), dtype=np.uint64)
        order = np.argsort(-word_len, kind="stable")
        sorted_len = word_len[order]
        prime = _U64(FNV_PRIME)
        max_len = int(sorted_len[0]) if len(sorted_len) else 0
        for k in range(max_len):
            active = order[: int(np.searchsorted(-sorted_len, -k, side="left"))]
            hashes[active] = (hashes[active] ^ cps[starts[active] + k].astype(np.uint64)) * prime

        text_of_char = np.repeat(np.arange(len(lengths)), lengths)
        text_of_word = text_of_char[starts]
        word_counts = np.bincount(text_of_word, minlength=len(lengths)).astype(np.int64)

        cols: list[np.ndarray] = []
        valid: list[np.ndarray] = []
        col = np.zeros(total, dtype=np.uint64)
        col[starts] = _splitmix64(hashes ^ _U64(WORD_TAG))
        is_start = np.zeros(total, dtype=bool)
        is_start[starts] = True
        cols.append(col)
        valid.append(is_start)
        if self.word_ngrams >= 2:
            pair = text_of_word[1:] == text_of_word[:-1]
            second = starts[1:][pair]
            # Mix the first word's finished hash into the second's, FNV-style, then finalise.
            mixed = ((hashes[:-1][pair] * prime) ^ hashes[1:][pair]) * prime
            bigram = np.zeros(total, dtype=np.uint64)
            bigram[second] = _splitmix64(mixed ^ _U64((WORD_TAG * 2) & _MASK64))
            has_bigram = np.zeros(total, dtype=bool)
            has_bigram[second] = True
            cols.append(bigram)
            valid.append(has_bigram)
            word_counts += np.maximum(word_counts - 1, 0)
        return cols, valid, word_counts
