"""Deterministic, disjoint seed sets: train / dev / heldout.

>>> s = HashSplits("toolapi-retail")
>>> s.split_of(s.seeds("heldout", 3)[0])
<Split.HELDOUT: 'heldout'>
>>> set(s.seeds("train", 50)) & set(s.seeds("heldout", 50))
set()

A seed's split is a pure function of the family namespace and the seed (a BLAKE2
hash), so it is the same on every machine and does not change when an environment's
version does. Families with a finite task list (repo-patch) use :class:`ListSplits`,
where seed *i* is task *i* and the family chooses each task's split (for example by
repository and source file, so held-out tasks share no code with training tasks).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from rowgym.errors import SplitError
from rowgym.rows import Split

DEFAULT_FRACTIONS = {Split.TRAIN: 0.8, Split.DEV: 0.1, Split.HELDOUT: 0.1}

MAX_SEED_INDEX = 10_000_000
"""How far into a split :meth:`HashSplits.seeds` lists: ``start + n`` at most this. The seeds of a split
are found by walking every seed and hashing it (about a second per million), so a larger request
would run for minutes or hours, and its list would take gigabytes."""


def as_split(split: str | Split) -> Split:
    try:
        return Split(split)
    except ValueError:
        raise SplitError(f"unknown split {split!r}; use one of: train, dev, heldout") from None


class SeedSplits(Protocol):
    """How an environment family partitions its seeds."""

    def split_of(self, seed: int) -> Split: ...

    def seeds(self, split: str | Split, n: int | None = None, start: int = 0) -> list[int]: ...


class HashSplits:
    """Infinite integer seeds, each assigned to a split by a hash of (namespace, key(seed)).

    ``key`` defaults to the seed itself. A family whose seeds can repeat a task passes a
    key of the task's *content* instead, so that equal tasks always share a split.
    """

    def __init__(self, namespace: str, fractions: dict[Split, float] | None = None,
                 key: Callable[[int], str] = str):
        self.namespace = namespace
        self.key = key
        fr = fractions or DEFAULT_FRACTIONS
        self._cuts = []
        acc = 0.0
        for split in (Split.TRAIN, Split.DEV, Split.HELDOUT):
            acc += fr[split]
            self._cuts.append((acc, split))

    def split_of(self, seed: int) -> Split:
        if seed < 0:
            raise SplitError(f"seeds are non-negative integers, got {seed}")
        digest = hashlib.blake2b(f"{self.namespace}:{self.key(seed)}".encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2**64
        for cut, split in self._cuts:
            if u < cut:
                return split
        return Split.HELDOUT

    def seeds(self, split: str | Split, n: int | None = None, start: int = 0) -> list[int]:
        """The first ``n`` seeds (from index ``start`` within the split) of ``split``."""
        if n is None:
            raise SplitError("HashSplits has infinitely many seeds: pass n")
        split = as_split(split)
        check_seed_range(n, start)
        out: list[int] = []
        seed, skipped = 0, 0
        while len(out) < n:
            if self.split_of(seed) == split:
                if skipped >= start:
                    out.append(seed)
                else:
                    skipped += 1
            seed += 1
        return out


class ListSplits:
    """A finite task list: seed *i* is task *i mod N*, whose split the family assigns.

    Any non-negative seed is valid (Gymnasium code resets with arbitrary seeds); the
    canonical seeds listed by :meth:`seeds` are ``0..N-1``.
    """

    def __init__(self, task_splits: Sequence[Split]):
        self.task_splits = [Split(s) for s in task_splits]
        if not self.task_splits:
            raise SplitError("ListSplits needs at least one task")

    def task_index(self, seed: int) -> int:
        if seed < 0:
            raise SplitError(f"seeds are non-negative integers, got {seed}")
        return seed % len(self.task_splits)

    def split_of(self, seed: int) -> Split:
        return self.task_splits[self.task_index(seed)]

    def seeds(self, split: str | Split, n: int | None = None, start: int = 0) -> list[int]:
        split = as_split(split)
        ids = [i for i, s in enumerate(self.task_splits) if s == split][start:]
        return ids if n is None else ids[:n]


def check_seed_range(n: int, start: int = 0) -> None:
    """Refuse a seed request past :data:`MAX_SEED_INDEX` (or a negative one) with a :class:`SplitError`.

    >>> check_seed_range(10, start=MAX_SEED_INDEX - 10)
    >>> check_seed_range(1, start=MAX_SEED_INDEX)
    Traceback (most recent call last):
    ...
    rowgym.errors.SplitError: seed index 10000000 + 1 seeds is past the last seed index a split lists (10000000)
    """
    if n < 0 or start < 0:
        raise SplitError(f"seed counts and indices are non-negative, got n={n}, start={start}")
    if start + n > MAX_SEED_INDEX:
        raise SplitError(f"seed index {start} + {n} seeds is past the last seed index a split lists ({MAX_SEED_INDEX})")


def seed_set_hash(env_id: str, split: Split, seeds: Iterable[int]) -> str:
    """A short content hash of a seed set, recorded in run manifests."""
    payload = json.dumps({"env": env_id, "split": str(split), "seeds": sorted(seeds)})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def content_hash(obj: object) -> str:
    """Hash of a task's content (canonical JSON), used for contamination checks."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def find_contamination(hashes_by_split: dict[Split, dict[int, str]]) -> list[tuple[str, Split, int, Split, int]]:
    """Task hashes that appear in two different splits, as (hash, split_a, seed_a, split_b, seed_b)."""
    seen: dict[str, tuple[Split, int]] = {}
    clashes = []
    for split, by_seed in hashes_by_split.items():
        for seed, h in by_seed.items():
            if h in seen and seen[h][0] != split:
                clashes.append((h, seen[h][0], seen[h][1], split, seed))
            seen.setdefault(h, (split, seed))
    return clashes
