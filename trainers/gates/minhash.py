"""Near-duplicate search: word shingles, MinHash signatures and LSH banding (no dependency).

>>> from rowgym.trainers.gates.minhash import NearDupIndex, jaccard, shingles
>>> a = shingles("Switch the bedroom light off.")
>>> round(jaccard(a, shingles("Please switch the bedroom light off.")), 2)
0.75
>>> jaccard(a, shingles("Switch the office light off."))
0.0
>>> idx = NearDupIndex(threshold=0.6)
>>> idx.add("q1", "Switch the bedroom light off.")
>>> [(k, round(s, 2)) for k, s in idx.query("Please switch the bedroom light off.")]
[('q1', 0.75)]

A text becomes the set of its word 3-grams after normalisation (lower case, punctuation
dropped, digits kept, so ids and numbers count as words). Candidates come from MinHash +
LSH (``bands`` x ``rows`` = ``num_perm``, the classic S-curve around the threshold);
every candidate is then confirmed with the *exact* Jaccard similarity of the shingle
sets, so the reported similarity is never an estimate. A text of fewer than ``n``
words is one shingle of all its words.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable

import numpy as np

VERSION = "1"
_PRIME = (1 << 31) - 1
_WORD = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    """Lower case, punctuation and markup dropped, runs of whitespace collapsed."""
    return " ".join(_WORD.findall(text.lower()))


def shingles(text: str, n: int = 3) -> frozenset[str]:
    words = normalize(text).split()
    if len(words) < n:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _h32(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "big") % _PRIME


class MinHasher:
    """``num_perm`` universal hash functions ``(a*x + b) mod p`` over 31-bit shingle hashes (seeded)."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = rng.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, _PRIME, size=num_perm, dtype=np.uint64)

    def signature(self, sh: Iterable[str]) -> np.ndarray:
        xs = np.fromiter((_h32(s) for s in sh), dtype=np.uint64)
        if xs.size == 0:
            return np.full(self.num_perm, _PRIME, dtype=np.uint64)
        return ((np.outer(xs, self.a) + self.b) % _PRIME).min(axis=0)  # (num_perm,)


class ContainmentIndex:
    """Texts indexed by key; :meth:`query` returns the keys whose shingles are at least ``threshold``
    *contained* in a query text (``|A & B| / |A|`` for an indexed text A): padding around a copied text
    does not dilute it, as it does a Jaccard similarity.

    Exact, with a prefix filter: a text whose shingles must be ``need = ceil(threshold * |A|)`` contained
    is indexed by its ``|A| - need + 1`` rarest shingles (one of them is in any text that contains enough),
    and every candidate is confirmed by counting. Texts of fewer than ``min_shingles`` shingles are not
    indexed (a short call or phrase is contained in too many honest texts).
    """

    def __init__(self, threshold: float, *, n: int = 3, min_shingles: int = 4):
        self.threshold, self.n, self.min_shingles = threshold, n, min_shingles
        self._sets: dict[str, frozenset[str]] = {}
        self._index: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def build(self, texts: Iterable[tuple[str, str]]) -> ContainmentIndex:
        sets = {k: sh for k, t in texts if len(sh := shingles(t, self.n)) >= self.min_shingles}
        df: dict[str, int] = {}
        for sh in sets.values():
            for s in sh:
                df[s] = df.get(s, 0) + 1
        for k, sh in sets.items():
            need = max(1, math.ceil(self.threshold * len(sh) - 1e-9))
            for s in sorted(sh, key=lambda s: (df[s], s))[: len(sh) - need + 1]:
                self._index.setdefault(s, []).append(k)
        self._sets.update(sets)
        return self

    def query(self, text: str) -> list[tuple[str, float]]:
        """``(key, containment)`` of indexed texts contained at or above the threshold, most contained first."""
        sh = shingles(text, self.n)
        cands = {k for s in sh for k in self._index.get(s, ())}
        hits = [(k, len(self._sets[k] & sh) / len(self._sets[k])) for k in cands]
        return sorted(((k, c) for k, c in hits if c >= self.threshold), key=lambda x: (-x[1], x[0]))


class NearDupIndex:
    """Texts indexed by key; :meth:`query` returns the keys whose Jaccard similarity is >= ``threshold``."""

    def __init__(self, threshold: float = 0.7, num_perm: int = 128, bands: int = 32, n: int = 3):
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands")
        self.threshold, self.n, self.bands, self.rows = threshold, n, bands, num_perm // bands
        self.hasher = MinHasher(num_perm)
        self._buckets: list[dict[bytes, list[str]]] = [{} for _ in range(bands)]
        self._sets: dict[str, frozenset[str]] = {}

    def params(self) -> dict[str, object]:
        return {"shingle": f"word {self.n}-grams", "num_perm": self.hasher.num_perm, "bands": self.bands,
                "threshold": self.threshold, "minhash_version": VERSION}

    def __len__(self) -> int:
        return len(self._sets)

    def _bands(self, sig: np.ndarray) -> list[bytes]:
        return [sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def add(self, key: str, text: str) -> None:
        sh = shingles(text, self.n)
        if not sh:
            return
        self._sets[key] = sh
        for band, bucket in zip(self._bands(self.hasher.signature(sh)), self._buckets, strict=True):
            bucket.setdefault(band, []).append(key)

    def query(self, text: str) -> list[tuple[str, float]]:
        """``(key, exact Jaccard)`` of indexed texts at or above the threshold, most similar first."""
        sh = shingles(text, self.n)
        if not sh:
            return []
        cands: set[str] = set()
        for band, bucket in zip(self._bands(self.hasher.signature(sh)), self._buckets, strict=True):
            cands.update(bucket.get(band, ()))
        hits = [(k, jaccard(sh, self._sets[k])) for k in cands]
        return sorted(((k, s) for k, s in hits if s >= self.threshold), key=lambda x: (-x[1], x[0]))
