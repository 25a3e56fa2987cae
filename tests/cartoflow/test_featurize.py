"""HashedNgrams: the vectorised hasher against a slow pure-Python twin, stability, layout."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartoflow import featurize
from cartoflow.featurize import HashedNgrams

MASK = (1 << 64) - 1


# ----------------------------------------------------------------------- slow reference twin


def fnv1a(code_points: list[int], seed: int) -> int:
    """FNV-1a, 64-bit, over code points, from the seed-dependent basis: one step per point."""
    h = featurize.FNV_OFFSET ^ (splitmix(seed) if seed else 0)
    for cp in code_points:
        h = ((h ^ cp) * featurize.FNV_PRIME) & MASK
    return h


def splitmix(z: int) -> int:
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def is_word_char(ch: str) -> bool:
    return ord(ch) < 0x2E80 and (ch.isalnum() or ch == "_")


def reference_bag(text: str, f: HashedNgrams) -> list[int]:
    """The ids of one text, n-gram by n-gram, in the documented order."""
    text = text.lower() if f.lowercase else text
    cps = [ord(c) for c in text]
    lo, hi = f.ngram_range
    # word starts: a word character at the text start or after a non-word character
    words: list[tuple[int, str]] = []
    i = 0
    while i < len(text):
        if is_word_char(text[i]):
            j = i
            while j < len(text) and is_word_char(text[j]):
                j += 1
            words.append((i, text[i:j]))
            i = j
        else:
            i += 1
    word_hash = [fnv1a([ord(c) for c in w], f.seed) for _, w in words]
    unigram_at = {start: k for k, (start, _) in enumerate(words)}
    out: list[int] = []
    for pos in range(len(cps)):
        for n in range(lo, hi + 1):
            if pos + n <= len(cps):
                tag = (featurize.CHAR_TAG * n) & MASK
                out.append(splitmix(fnv1a(cps[pos : pos + n], f.seed) ^ tag) % f.buckets)
        if f.word_ngrams and pos in unigram_at:
            k = unigram_at[pos]
            out.append(splitmix(word_hash[k] ^ featurize.WORD_TAG) % f.buckets)
            if f.word_ngrams == 2 and k > 0:
                mixed = (((word_hash[k - 1] * featurize.FNV_PRIME) & MASK) ^ word_hash[k]) & MASK
                mixed = (mixed * featurize.FNV_PRIME) & MASK
                tag = (featurize.WORD_TAG * 2) & MASK
                out.append(splitmix(mixed ^ tag) % f.buckets)
    return out


def reference(texts: list[str], f: HashedNgrams) -> tuple[np.ndarray, np.ndarray]:
    bags = [reference_bag(t, f) for t in texts]
    offsets = np.cumsum([0] + [len(b) for b in bags[:-1]]) if bags else np.zeros(0)
    flat = [i for b in bags for i in b]
    return np.asarray(flat, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


# ------------------------------------------------------------------------------------- tests

TEXT = st.text(
    alphabet=st.sampled_from(list("abcXYZ_ 019.,?!-如何学习看待年大促年ÄéİßΣ🙂\u0301\t")),
    max_size=24,
)


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(TEXT, max_size=8),
    buckets=st.sampled_from([1, 7, 1000, 2**10, 2**18]),
    lo=st.integers(1, 3),
    width=st.integers(0, 2),
    word_ngrams=st.integers(0, 2),
    lowercase=st.booleans(),
    seed=st.sampled_from([0, 1, 12345]),
)
def test_matches_slow_reference(
    texts: list[str],
    buckets: int,
    lo: int,
    width: int,
    word_ngrams: int,
    lowercase: bool,
    seed: int,
) -> None:
    f = HashedNgrams(
        buckets=buckets,
        ngram_range=(lo, lo + width),
        word_ngrams=word_ngrams,
        lowercase=lowercase,
        seed=seed,
    )
    ids, offsets = f.transform(texts)
    want_ids, want_offsets = reference(texts, f)
    assert ids.dtype == np.int64 and offsets.dtype == np.int64
    np.testing.assert_array_equal(offsets, want_offsets)
    np.testing.assert_array_equal(ids, want_ids)


def test_fnv_matches_the_published_test_vector() -> None:
    # FNV-1a 64 of b"a" is 0xaf63dc4c8601ec8c (Fowler/Noll/Vo test vectors); for ASCII a code
    # point is its byte, so the unigram "a" hashes from exactly that value.
    assert fnv1a([ord("a")], 0) == 0xAF63DC4C8601EC8C
    f = HashedNgrams(buckets=2**20, ngram_range=(1, 1))
    ids, _ = f.transform(["a"])
    tag = featurize.CHAR_TAG & MASK
    assert ids.tolist() == [splitmix(0xAF63DC4C8601EC8C ^ tag) % 2**20]


def test_same_ids_in_another_process_with_another_hash_seed() -> None:
    texts = ["如何看待 2021 年 618 大促？", "How to learn Python"]
    f = HashedNgrams(buckets=2**18, word_ngrams=2)
    here = f.transform(texts)[0].tolist()
    code = (
        "from cartoflow.featurize import HashedNgrams;"
        f"print(HashedNgrams(buckets=2**18, word_ngrams=2).transform({texts!r})[0].tolist())"
    )
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == str(here)
    assert here == reference(texts, f)[0].tolist()


def test_layout_for_embedding_bag() -> None:
    f = HashedNgrams(buckets=97)
    ids, offsets = f.transform(["ab", "", "abcd", "x"])
    # "ab": 2 + 1 + 0; "": 0; "abcd": 4 + 3 + 2; "x": 1
    assert offsets.tolist() == [0, 3, 3, 12]
    assert len(ids) == 13
    assert ids.min() >= 0 and ids.max() < 97
    # same n-gram, same id wherever it occurs
    assert ids[0] == ids[3]  # "a"
    assert ids[12] != ids[0]


def test_empty_input() -> None:
    ids, offsets = HashedNgrams().transform([])
    assert ids.shape == (0,) and offsets.shape == (0,)


def test_lowercase_and_seed_change_ids() -> None:
    upper, lower = "PYTHON", "python"
    assert np.array_equal(
        HashedNgrams().transform([upper])[0], HashedNgrams().transform([lower])[0]
    )
    cased = HashedNgrams(lowercase=False)
    assert not np.array_equal(cased.transform([upper])[0], cased.transform([lower])[0])
    assert not np.array_equal(
        HashedNgrams(seed=1).transform([lower])[0], HashedNgrams().transform([lower])[0]
    )


def test_chunks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"问题 {i} question{i % 7}" for i in range(50)]
    f = HashedNgrams(buckets=1000, word_ngrams=2)
    whole = f.transform(texts)
    monkeypatch.setattr(featurize, "_CHUNK_TEXTS", 7)
    chunked = f.transform(texts)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])


def test_accepts_any_iterable_of_str() -> None:
    f = HashedNgrams(buckets=101)
    a = f.transform(["ab", "cd"])
    b = f.transform(np.array(["ab", "cd"]))
    c = f.transform(iter(("ab", "cd")))
    for other in (b, c):
        np.testing.assert_array_equal(a[0], other[0])


def test_non_string_text_names_its_position() -> None:
    with pytest.raises(TypeError, match=r"positions \[1, 3\] hold NoneType, int"):
        HashedNgrams().transform(["ok", None, "fine", 7])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"buckets": 0}, "buckets"),
        ({"ngram_range": (0, 2)}, "ngram_range"),
        ({"ngram_range": (3, 2)}, "ngram_range"),
        ({"word_ngrams": 3}, "word_ngrams"),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HashedNgrams(**kwargs)  # type: ignore[arg-type]


def test_params_round_trip() -> None:
    f = HashedNgrams(buckets=123, ngram_range=(2, 4), word_ngrams=1, lowercase=False, seed=9)
    assert HashedNgrams.from_params(f.params()) == f
