"""Data at rest is not trusted: sealed shards checked against the manifest, lines quarantined.

Every open checks the sealed shards against the manifest (names, size, sha256, line count, a
torn last line; the hash is recomputed only when a shard's stat changed: a writer keeps
``.hashes.json``, but a read-only opener trusts only the hashes its own process computed, since
whoever can edit a shard can edit a cache that lives next to it), and a line that does not parse
(strictly: JSON has no NaN or Infinity, although pydantic reads them) is quarantined (skipped and
reported with its shard and line number) while the rest of the run stays readable. A store whose
caller required verification (:meth:`Integrity.require_verified`) raises :class:`IntegrityError`
instead when a read finds such a line. :meth:`Integrity.verify` re-hashes and re-parses
everything (``rowgym verify RUN``).

>>> Problem("missing", "episodes-00000.jsonl", "listed in the manifest but missing").kind
'missing'
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from rowgym.errors import StoreError
from rowgym.rows import Episode, RunManifest
from rowgym.store import files
from rowgym.store.files import (
    HASH_CACHE,
    PARTIAL,
    atomic_write,
    ends_torn,
    remember_digest,
    seen_digest,
    stat_key,
)

SHARD_NAME = re.compile(r"episodes-\d{5}\.jsonl")
"""What a sealed shard of the manifest may be called (a plain name in ``shards/``, nothing else)."""


class IntegrityError(StoreError):
    """A run's data do not match its manifest (changed, missing or malformed shards)."""


@dataclass(frozen=True)
class Problem:
    """One integrity problem of a run: what is wrong and where (``line`` is 1-based)."""

    kind: str
    """changed, line_count, torn, malformed, missing, unlisted, foreign, duplicate, no_manifest, manifest."""
    shard: str | None
    detail: str
    line: int | None = None

    def __str__(self) -> str:
        where = (self.shard or "run") + (f" line {self.line}" if self.line is not None else "")
        return f"{where}: {self.detail}"


class Integrity:
    """The checking half of :class:`~rowgym.store.TrajectoryStore` (hash cache, verify, quarantine)."""

    root: Path
    shard_dir: Path
    readonly: bool
    manifest: RunManifest | None
    open_problems: list[Problem]
    quarantined: dict[tuple[str, int], Problem]
    _hash_cache: dict[str, dict[str, Any]]
    _cache_dirty: bool
    _strict: bool  # set by require_verified: a line that fails to parse is then an IntegrityError

    if TYPE_CHECKING:  # provided by the other halves of TrajectoryStore
        def _shard_paths(self, sealed_only: bool = False) -> list[Path]:
            ...

        def _lines(self, *, complete_only: bool = True,
                   shards: Callable[[str], bool] | None = None) -> Iterator[tuple[str, int, bytes]]:
            ...

    # ------------------------------------------------------------ hash cache
    def _read_hash_cache(self) -> dict[str, dict[str, Any]]:
        """The run's ``.hashes.json`` for a writer; nothing for a read-only opener, which must not take the
        word of a file that whoever edited the run could have written (it trusts only its own process's
        digests, :func:`~rowgym.store.files.seen_digest`)."""
        if self.readonly:
            return {}
        try:
            d = json.loads((self.root / HASH_CACHE).read_text())
            return d if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}

    def _remember(self, path: Path, digest: str, lines: int) -> None:
        st = path.stat()
        self._hash_cache[path.name] = {"stat": stat_key(st), "sha256": digest, "lines": lines}
        remember_digest(st, digest, lines)
        self._save_hash_cache()

    def _save_hash_cache(self) -> None:
        """Persist the hash cache (writers only: a reader never writes into a run)."""
        if not self.readonly:
            with contextlib.suppress(OSError):
                atomic_write(self.root / HASH_CACHE, json.dumps(self._hash_cache, sort_keys=True))
            self._cache_dirty = False

    def _hash(self, path: Path, *, use_cache: bool = True) -> tuple[str, int]:
        """(sha256, line count) of a shard: from the hash cache if its entry matches the file's stat
        and is well formed (anything else in ``.hashes.json``, e.g. ``"lines": "two"``, is a miss:
        the cache is a file in the run, not trusted to be what a writer left), or from this process's
        own digests (the only cache a read-only opener has)."""
        st = path.stat()
        if use_cache:
            hit = self._hash_cache.get(path.name)
            if isinstance(hit, dict) and hit.get("stat") == stat_key(st):
                digest, lines = hit.get("sha256"), hit.get("lines")
                if type(digest) is str and type(lines) is int and lines >= 0:
                    return digest, lines
            seen = seen_digest(st)
            if seen is not None:
                return seen
        digest, lines = files.digest(path)
        remember_digest(st, digest, lines)
        self._hash_cache[path.name] = {"stat": stat_key(st), "sha256": digest, "lines": lines}
        self._cache_dirty = True
        return digest, lines

    # ---------------------------------------------------------------- checks
    def _check_sealed(self, *, use_cache: bool = True) -> list[Problem]:
        """Sealed shards against the manifest: shard names (``episodes-NNNNN.jsonl``, each listed once),
        missing, changed bytes, line counts, a torn last line, unlisted shards."""
        sealed = self._shard_paths(sealed_only=True)
        if self.manifest is None:
            return [Problem("no_manifest", None, "shards but no manifest.json")] if self._shard_paths() else []
        problems = []
        listed = {s.name for s in self.manifest.shards}
        seen: set[str] = set()
        for s in self.manifest.shards:
            if not SHARD_NAME.fullmatch(s.name):
                problems.append(Problem("manifest", None, f"the manifest lists a shard named {s.name!r}; a sealed "
                                        f"shard is shards/episodes-NNNNN.jsonl"))
                continue
            if s.name in seen:
                problems.append(Problem("manifest", s.name, "listed more than once in the manifest"))
                continue
            seen.add(s.name)
            p = self.shard_dir / s.name
            try:
                digest, lines = self._hash(p, use_cache=use_cache)
                torn = ends_torn(p)
            except FileNotFoundError:
                problems.append(Problem("missing", s.name, "listed in the manifest but missing"))
                continue
            if torn:
                problems.append(Problem("torn", s.name, "its last line has no newline (a sealed shard holds "
                                        "whole lines only)"))
            if digest != s.sha256:
                problems.append(Problem("changed", s.name, "sha256 differs from the manifest "
                                        "(its bytes changed after it was sealed)"))
            if lines != s.n_episodes:
                problems.append(Problem("line_count", s.name, f"{lines} lines, the manifest says {s.n_episodes}"))
        for p in sealed:
            if p.name not in listed:
                problems.append(Problem("unlisted", p.name, "sealed shard not listed in the manifest"))
        total = sum(s.n_episodes for s in self.manifest.shards)
        if self.manifest.n_episodes != total:
            problems.append(Problem("manifest", None, f"manifest says {self.manifest.n_episodes} episodes, its "
                                    f"shards {total}"))
        if self.manifest.identity is not None and self.manifest.identity_hash not in (None,
                                                                                     self.manifest.identity.hash()):
            problems.append(Problem("manifest", None, "identity_hash does not match the recorded identity"))
        return problems

    @property
    def problems(self) -> list[Problem]:
        """What failed the checks on open, plus every line quarantined while reading so far."""
        return [*self.open_problems, *self.quarantined.values()]

    def verify(self, *, fast: bool = False) -> list[Problem]:
        """Every problem of the run: changed bytes, line counts that differ from the manifest (a
        deleted or added line), malformed lines (shard + line number), missing and unlisted
        shards, episodes of another run, an episode stored twice.

        The full check (``rowgym verify``) re-hashes every sealed shard and parses every line.
        ``fast=True`` trusts the hash cache for unchanged files and parses only the lines of
        partial shards and of shards whose hash does not match (a sealed shard whose bytes
        match the manifest holds exactly the episodes the writer wrote).
        """
        problems = self._check_sealed(use_cache=fast)
        run_id = self.manifest.run_id if self.manifest else None
        listed = {s.name for s in self.manifest.shards} if self.manifest else set()
        suspect = {p.shard for p in problems if p.kind in ("changed", "line_count", "unlisted")}

        def parse(name: str) -> bool:
            return not fast or name.endswith(PARTIAL) or name in suspect or name not in listed

        ok: dict[str, bool] = {}  # episode id -> did its latest record succeed
        for name, i, line in self._lines(complete_only=False, shards=parse):
            if not line.endswith(b"\n") and name.endswith(PARTIAL):
                continue  # the writer's line in flight
            try:
                ep = parse_episode(line)
            except ValueError as e:
                problems.append(Problem("malformed", name, f"not an episode: {first_error(e)}", i + 1))
                continue
            if run_id is not None and ep.run_id != run_id:
                problems.append(Problem("foreign", name, f"episode {ep.episode_id} belongs to run {ep.run_id}, "
                                        f"not {run_id}", i + 1))
            if ok.get(ep.episode_id):  # only a failed record may be played again (--retry-failed)
                problems.append(Problem("duplicate", name, f"episode {ep.episode_id} stored again after it "
                                        f"succeeded", i + 1))
            ok[ep.episode_id] = ep.failure is None
        return problems

    def require_verified(self) -> None:
        """Raise :class:`IntegrityError` listing the problems if the run fails verification.

        The fast check does not parse a sealed shard that matches the manifest, and a manifest can be
        rewritten to match any bytes: so from here on, a line that a read of this store finds
        malformed raises :class:`IntegrityError` too, instead of being quarantined and skipped.
        """
        problems = [*self.verify(fast=True), *self.quarantined.values()]
        if problems:
            self._fail_verification(problems)
        self._strict = True

    def _fail_verification(self, problems: list[Problem]) -> None:
        raise IntegrityError(f"{self.root} fails verification ({summary(problems)}); a run that fails "
                             f"verification cannot become training data (see `rowgym verify {self.root}`; "
                             f"--allow-unverified uses it anyway and marks the dataset unverified)")

    def _quarantine(self, shard: str, i: int, why: str) -> None:
        problem = self.quarantined.setdefault((shard, i), Problem("malformed", shard, f"quarantined: {why}", i + 1))
        if getattr(self, "_strict", False):
            self._fail_verification([problem])


def parse_episode(line: bytes) -> Episode:
    """One stored line as an :class:`Episode`, as strictly as the writer wrote it (ValueError if it is not one).

    pydantic reads the literals ``NaN``, ``Infinity`` and ``-Infinity`` into a float field, but JSON has
    none and the writer never stores one (:func:`rowgym.store.shards.encode`): a line holding one was
    edited, and a NaN reward would pass every ``reward < threshold`` filter. A line that holds either
    word (most hold neither: one substring search each) is parsed by orjson first, which refuses them.
    """
    if b"NaN" in line or b"Infinity" in line:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"not strict JSON (NaN and Infinity are not JSON): {e}") from None
    return Episode.model_validate_json(line)


def first_error(e: ValueError) -> str:
    if not isinstance(e, ValidationError):
        return str(e)[:200]
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    return f"{loc + ': ' if loc else ''}{err.get('msg', 'invalid')}"[:200]


def summary(problems: list[Problem], n: int = 3) -> str:
    head = "; ".join(str(p) for p in problems[:n])
    return head + (f"; and {len(problems) - n} more" if len(problems) > n else "")
