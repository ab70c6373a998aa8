"""The trajectory store: append-only JSONL shards plus a manifest, crash-safe, locked and verified.

>>> import tempfile
>>> from rowgym.store import TrajectoryStore
>>> with TrajectoryStore(tempfile.mkdtemp()) as store:
...     store.completed_ids()
set()

Layout of a run directory::

    manifest.json                  RunManifest: identity, source, policy, sealed shards + sha256
    shards/episodes-00000.jsonl    sealed: never written again
    shards/episodes-00001.jsonl.partial   the active shard
    .lock                          the writer's lock (pid, host, start time of the holder)
    .hashes.json                   cache of shard hashes keyed by size/mtime/ctime/inode

Each finished episode is one JSON line appended to the active shard with a single
``write`` followed by ``fsync``, so a killed collection loses at most the episodes
that were in flight. A shard is sealed by fsync + rename once it holds
``shard_size`` episodes, and its hash goes into the manifest (written to a temporary
file, fsynced and renamed). Re-opening a run repairs a torn last line of the active
shard, seals it, and reports which episode ids are done so a resume skips them.

One writer per run: a writable store holds an exclusive ``flock`` on ``.lock`` from
open to :meth:`TrajectoryStore.close` (the kernel drops it if the process dies), and a
second writer gets :class:`RunLockedError` naming the holder. Readers
(``readonly=True``) never touch the lock.

Data at rest is not trusted: every open checks the sealed shards against the manifest
(size, sha256, line count; the hash is recomputed only when a shard's stat changed),
and a line that does not parse is quarantined (skipped and reported with its shard and
line number) while the rest of the run stays readable. :meth:`TrajectoryStore.verify`
re-hashes and re-parses everything (``rowgym verify RUN``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rowgym import aio
from rowgym.errors import StoreError
from rowgym.rows import Episode, RunManifest, ShardInfo, StepRow

PARTIAL = ".partial"
LOCK_FILE = ".lock"
HASH_CACHE = ".hashes.json"


class RunLockedError(StoreError):
    """Another process is writing this run directory."""


class IntegrityError(StoreError):
    """A run's data do not match its manifest (changed, missing or malformed shards)."""


@dataclass(frozen=True)
class Problem:
    """One integrity problem of a run: what is wrong and where (``line`` is 1-based)."""

    kind: str
    """changed, line_count, malformed, missing, unlisted, foreign, duplicate, no_manifest, manifest."""
    shard: str | None
    detail: str
    line: int | None = None

    def __str__(self) -> str:
        where = (self.shard or "run") + (f" line {self.line}" if self.line is not None else "")
        return f"{where}: {self.detail}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: str) -> None:
    """Write a whole file so that readers see the old or the new content, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


_ID = re.compile(rb'"episode_id":"((?:[^"\\]|\\.)*)"')


def _episode_id(line: bytes) -> str:
    """The episode id of one stored line, without parsing the whole episode (ValueError if none)."""
    m = _ID.search(line, 0, 4096)
    if m is None or b"\\" in m.group(1):  # not near the start, or escaped: parse it properly
        obj = aio.loads(line)
        if not isinstance(obj, dict) or not isinstance(obj.get("episode_id"), str):
            raise ValueError("no episode_id")
        return obj["episode_id"]
    return m.group(1).decode()


def sha256_file(path: Path) -> str:
    return _digest(path)[0]


def _digest(path: Path) -> tuple[str, int]:
    """sha256 and the number of complete lines of a file."""
    h, lines = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            lines += block.count(b"\n")
    return h.hexdigest(), lines


def _stat_key(st: os.stat_result) -> list[int]:
    # ctime cannot be set back by `touch`, so an edit that restores the mtime still misses the cache
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class RunLock:
    """An exclusive advisory ``flock`` on ``<run>/.lock``; the file records the holder."""

    def __init__(self, root: Path):
        self.path = root / LOCK_FILE
        self._f: Any = None

    def acquire(self) -> None:
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = _parse_holder(f.read())
            f.close()
            raise RunLockedError(
                f"{self.path.parent} is being written by pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} (since {holder.get('started', '?')}); one writer per run "
                f"directory: wait for it to finish or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": datetime.now(UTC).isoformat(timespec="seconds")}) + "\n")
        f.flush()
        self._f = f

    def release(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            self._f.close()
            self._f = None

    @property
    def held(self) -> bool:
        return self._f is not None


def _parse_holder(text: str) -> dict[str, Any]:
    try:
        d = json.loads(text)
        return d if isinstance(d, dict) else {}
    except ValueError:
        return {}


class TrajectoryStore:
    """One run's episodes on disk."""

    def __init__(self, root: str | Path, shard_size: int = 200, *, readonly: bool = False):
        """Open (or create) a run directory.

        A writable store creates the directory, takes the run's lock (raising
        :class:`RunLockedError` if another process holds it) and repairs a torn active
        shard; release it with :meth:`close` (or use the store as a context manager).
        ``readonly=True`` never writes and never takes the lock: no directory is created
        and a partial shard is read as it is (its torn last line skipped), so a run that
        another process is still collecting can be read safely.

        Either way the sealed shards are checked against the manifest; what is wrong is in
        :attr:`problems` (plus lines quarantined while reading), not raised.
        """
        self.root = Path(root)
        self.shard_dir = self.root / "shards"
        self.shard_size = shard_size
        self.readonly = readonly
        self.lock = RunLock(self.root)
        self.created = False
        self._created_dirs: list[Path] = []
        self.quarantined: dict[tuple[str, int], Problem] = {}
        self._hash_cache: dict[str, dict[str, Any]] = {}
        self._cache_dirty = False
        self._active: Path | None = None
        self._active_count = 0
        self._fh: Any = None
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} exists and is not a directory; choose another output directory")
        if readonly:
            if not self.shard_dir.is_dir():
                raise StoreError(f"{self.root} is not a rowgym run directory (no shards/ folder)")
        else:
            self._open_for_writing()
        try:
            self.manifest: RunManifest | None = self._read_manifest()
            self._fresh = not readonly and self.manifest is None and not self._shard_paths()
            self._hash_cache = self._read_hash_cache()
            if not readonly and (self.manifest is not None or not self._shard_paths()):
                self._repair_partials()  # never touch the shards of a dir without a manifest
            self.open_problems = self._check_sealed()
            if not readonly and self._cache_dirty:
                self._save_hash_cache()
            for attempt in range(3):
                if not (readonly and any(p.kind in ("unlisted", "missing") for p in self.open_problems)):
                    break
                # a live writer may be sealing a shard between our reads of the manifest and the folder
                time.sleep(0.01 * attempt)
                self.manifest = self._read_manifest()
                self.open_problems = self._check_sealed()
        except BaseException:
            self.lock.release()
            raise

    def _open_for_writing(self) -> None:
        try:
            self._created_dirs = [d for d in (self.root, *self.root.parents) if not d.exists()]
            self.created = bool(self._created_dirs)
            self.root.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
            self.shard_dir.mkdir(exist_ok=True)
        except RunLockedError:
            raise
        except OSError as e:
            self.lock.release()
            raise StoreError(f"cannot write the run directory {self.root}: {e.strerror or e}") from None

    def __enter__(self) -> TrajectoryStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def _read_manifest(self) -> RunManifest | None:
        try:
            text = self.manifest_path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise StoreError(f"{self.manifest_path} cannot be read: {e}") from None
        try:
            return RunManifest.model_validate_json(text)
        except ValidationError as e:
            raise StoreError(f"{self.manifest_path} is not a rowgym run manifest: {e.errors()[0]['msg']}") from None

    def start(self, manifest: RunManifest, *, resume: bool = True) -> RunManifest:
        """Begin (or resume) a run.

        Refuses a directory that holds a different run (any field of the identity differs,
        listed in the message), a resume that would shrink the seed plan, a directory with
        shards but no manifest, and a run that fails verification.
        """
        if self.readonly:
            raise StoreError(f"{self.root} was opened read-only")
        if self.manifest is None:
            if self._shard_paths():
                raise StoreError(f"{self.root} holds shards but no manifest.json; refusing to start a new run "
                                 f"over them (it would play every seed again). Restore the manifest, or choose "
                                 f"another output directory")
            self.manifest = manifest
            self._write_manifest()
            return self.manifest
        old = self.manifest
        if not resume:
            raise StoreError(f"{self.root} already holds run {old.run_id} and resume is off; "
                             f"choose another output directory or delete this one")
        diffs = _identity_diff(old, manifest)
        if diffs:
            raise StoreError(f"refusing to resume {self.root} (run {old.run_id}): {', '.join(diffs)}; "
                             f"resume with the run's original options or choose another output directory")
        problems = self.problems
        if problems:
            raise IntegrityError(f"refusing to resume {self.root}: the run fails verification "
                                 f"({_summary(problems)}); run `rowgym verify {self.root}`")
        source = old.source
        if len(manifest.source.seeds) > len(source.seeds):  # extending the run: the new plan is a superset
            source = manifest.source
        self.manifest = old.model_copy(update={"status": "running", "source": source,
                                               "identity": manifest.identity or old.identity,
                                               "identity_hash": manifest.identity_hash or old.identity_hash})
        self._write_manifest()
        return self.manifest

    def _write_manifest(self) -> None:
        assert self.manifest is not None
        self.manifest.updated_at = datetime.now(UTC)
        atomic_write(self.manifest_path, self.manifest.model_dump_json(indent=2))

    # ------------------------------------------------------------------ shards
    def _shard_paths(self, sealed_only: bool = False) -> list[Path]:
        if not self.shard_dir.is_dir():
            return []
        paths = sorted(p for p in self.shard_dir.iterdir() if p.suffix == ".jsonl" or p.name.endswith(PARTIAL))
        return [p for p in paths if not (sealed_only and p.name.endswith(PARTIAL))]

    def _repair_partials(self) -> None:
        """Drop a torn last line from a partial shard and seal it (after a crash).

        A crash can only tear the last line; a bad line before it is not a crash's doing, so it
        is kept and quarantined (reported) rather than silently cut with everything after it.
        """
        for p in self._shard_paths():
            if not p.name.endswith(PARTIAL):
                continue
            data = p.read_bytes()
            lines = data.splitlines(keepends=True)
            keep = len(data)
            if lines and (not lines[-1].endswith(b"\n") or not _parses(lines[-1])):
                keep -= len(lines[-1])
            if keep != len(data):
                with open(p, "r+b") as f:
                    f.truncate(keep)
                    f.flush()
                    os.fsync(f.fileno())
            self._seal(p)

    def _seal(self, partial: Path) -> None:
        final = partial.with_name(partial.name[: -len(PARTIAL)])
        if partial.stat().st_size == 0:
            partial.unlink()
            return
        # manifest first, then the rename: a reader never finds a sealed shard the manifest does not
        # list (only, for an instant, a listed one still named .partial), and after a crash in
        # between, reopening seals the partial again with the same hash
        digest, n = _digest(partial)
        if self.manifest is not None:
            self.manifest.shards = [s for s in self.manifest.shards if s.name != final.name]
            self.manifest.shards.append(ShardInfo(name=final.name, sha256=digest, n_episodes=n))
            self.manifest.n_episodes = sum(s.n_episodes for s in self.manifest.shards)
            self._write_manifest()
        os.replace(partial, final)
        _fsync_dir(self.shard_dir)
        self._remember(final, digest, n)

    def _next_shard(self) -> Path:
        existing = [p.name.split(".")[0] for p in self._shard_paths()]
        idx = 1 + max((int(n.rsplit("-", 1)[1]) for n in existing if n.rsplit("-", 1)[-1].isdigit()), default=-1)
        return self.shard_dir / f"episodes-{idx:05d}.jsonl{PARTIAL}"

    def append(self, episode: Episode) -> None:
        """Durably add one finished episode (one line, one write, fsync)."""
        if self.readonly:
            raise StoreError(f"{self.root} was opened read-only")
        if not self.lock.held:
            raise StoreError(f"{self.root} was closed; open the store again to write")
        if self._fh is None:
            self._active = self._next_shard()
            self._fh = open(self._active, "ab")
            self._active_count = 0
        self._fh.write(episode.model_dump_json().encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._active_count += 1
        if self._active_count >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Seal the active shard, if any."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            assert self._active is not None
            self._seal(self._active)
            self._active = None

    def close(self, *, complete: bool = False) -> None:
        """Seal the active shard, write the manifest and release the lock (a no-op when read-only)."""
        if self.readonly or not self.lock.held:
            return
        try:
            self.flush()
            if self.manifest is not None:
                if complete:
                    self.manifest.status = "complete"
                self._write_manifest()
        finally:
            self.lock.release()

    def discard(self) -> None:
        """Undo opening a new run that never stored an episode (a failed start): remove the files
        this store made, and the directories it created (the run dir and any missing parents)."""
        if self.readonly or not self._fresh or any(p.stat().st_size for p in self._shard_paths()):
            self.close()
            return
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        for p in [*self._shard_paths(), self.manifest_path, self.root / HASH_CACHE, self.root / LOCK_FILE]:
            p.unlink(missing_ok=True)
        self.lock.release()
        for d in (self.shard_dir, *self._created_dirs):  # deepest first; a dir someone else filled stays
            with contextlib.suppress(OSError):
                d.rmdir()

    # ------------------------------------------------------------- integrity
    def _read_hash_cache(self) -> dict[str, dict[str, Any]]:
        try:
            d = json.loads((self.root / HASH_CACHE).read_text())
            return d if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}

    def _remember(self, path: Path, digest: str, lines: int) -> None:
        self._hash_cache[path.name] = {"stat": _stat_key(path.stat()), "sha256": digest, "lines": lines}
        self._save_hash_cache()

    def _save_hash_cache(self) -> None:
        """Persist the hash cache (writers only: a reader never writes into a run)."""
        if not self.readonly:
            with contextlib.suppress(OSError):
                atomic_write(self.root / HASH_CACHE, json.dumps(self._hash_cache, sort_keys=True))
            self._cache_dirty = False

    def _hash(self, path: Path, *, use_cache: bool = True) -> tuple[str, int]:
        st = path.stat()
        hit = self._hash_cache.get(path.name)
        if use_cache and isinstance(hit, dict) and hit.get("stat") == _stat_key(st):
            return str(hit.get("sha256")), int(hit.get("lines", -1))
        digest, lines = _digest(path)
        self._hash_cache[path.name] = {"stat": _stat_key(st), "sha256": digest, "lines": lines}
        self._cache_dirty = True
        return digest, lines

    def _check_sealed(self, *, use_cache: bool = True) -> list[Problem]:
        """Sealed shards against the manifest: missing, changed bytes, line counts, unlisted shards."""
        sealed = self._shard_paths(sealed_only=True)
        if self.manifest is None:
            return [Problem("no_manifest", None, "shards but no manifest.json")] if self._shard_paths() else []
        problems = []
        listed = {s.name for s in self.manifest.shards}
        for s in self.manifest.shards:
            p = self.shard_dir / s.name
            try:
                digest, lines = self._hash(p, use_cache=use_cache)
            except FileNotFoundError:
                problems.append(Problem("missing", s.name, "listed in the manifest but missing"))
                continue
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
                ep = Episode.model_validate_json(line)
            except ValidationError as e:
                problems.append(Problem("malformed", name, f"not an episode: {_first_error(e)}", i + 1))
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
        """Raise :class:`IntegrityError` listing the problems if the run fails verification."""
        problems = self.verify(fast=True)
        if problems:
            raise IntegrityError(f"{self.root} fails verification ({_summary(problems)}); a run that fails "
                                 f"verification cannot become training data (see `rowgym verify {self.root}`; "
                                 f"--allow-unverified uses it anyway and marks the dataset unverified)")

    def _quarantine(self, shard: str, i: int, why: str) -> None:
        self.quarantined.setdefault((shard, i), Problem("malformed", shard, f"quarantined: {why}", i + 1))

    # ----------------------------------------------------------------- reading
    def _lines(self, *, complete_only: bool = True,
               shards: Callable[[str], bool] | None = None) -> Iterator[tuple[str, int, bytes]]:
        for p in self._shard_paths():
            if shards is not None and not shards(p.name):
                continue
            try:
                f = open(p, "rb")
            except FileNotFoundError:  # the writer sealed it since we listed the folder
                if not p.name.endswith(PARTIAL):
                    continue
                p = p.with_name(p.name[: -len(PARTIAL)])
                try:
                    f = open(p, "rb")
                except FileNotFoundError:
                    continue
            with f:
                for i, line in enumerate(f):
                    if line.endswith(b"\n") or not complete_only:
                        yield p.name, i, line

    def _records(self) -> Iterator[tuple[str, int, bytes, str]]:
        """(shard, line index, line, episode id) of every complete line with an episode id."""
        for shard, i, line in self._lines():
            try:
                yield shard, i, line, _episode_id(line)
            except (ValueError, UnicodeDecodeError, KeyError) as e:
                self._quarantine(shard, i, f"{type(e).__name__}: {e}"[:200])

    def episodes(self) -> Iterator[Episode]:
        """Every stored episode, in write order, each id once: its latest record.

        An id has more than one record only when a failed episode was played again
        (``collect --retry-failed``); the retry's record replaces the failed one. A line
        that does not parse is skipped and recorded in :attr:`quarantined`.
        """
        last = self._last_records()
        for shard, i, line, eid in self._records():
            if last.get(eid) == (shard, i):
                try:
                    yield Episode.model_validate_json(line)
                except ValidationError as e:
                    self._quarantine(shard, i, _first_error(e))

    def rows(self) -> Iterator[StepRow]:
        for ep in self.episodes():
            yield from ep.steps

    def _last_records(self) -> dict[str, tuple[str, int]]:
        return {eid: (shard, i) for shard, i, _, eid in self._records()}

    def completed_ids(self, *, failed: bool = True) -> set[str]:
        """Ids of stored episodes; with ``failed=False`` only those whose latest record did not fail."""
        latest: dict[str, bool] = {}
        for shard, i, line, eid in self._records():
            if failed:
                latest[eid] = True
                continue
            try:
                latest[eid] = aio.loads(line).get("failure") is None
            except ValueError as e:
                self._quarantine(shard, i, str(e)[:200])
        return {k for k, ok in latest.items() if ok}

    # ----------------------------------------------------------------- export
    def to_arrow(self, level: str = "steps") -> Any:
        """A pyarrow Table with one row per step (``level="steps"``) or per episode."""
        import pyarrow as pa

        records = [r for ep in self.episodes() for r in flatten(ep, level)]
        return pa.Table.from_pylist(records)

    def export_parquet(self, path: str | Path, level: str = "steps") -> Path:
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.to_arrow(level), path)
        return path

    def to_dataset(self, level: str = "steps") -> Any:
        """The run as a Hugging Face ``datasets.Dataset`` (needs the ``datasets`` extra)."""
        try:
            import datasets
        except ImportError as e:
            raise StoreError("exporting to a Dataset needs `pip install rowgym[datasets]`") from e
        return datasets.Dataset(self.to_arrow(level))


def _parses(line: bytes) -> bool:
    try:
        Episode.model_validate_json(line)
        return True
    except ValidationError:
        return False


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    return f"{loc + ': ' if loc else ''}{err.get('msg', 'invalid')}"[:200]


def _summary(problems: list[Problem], n: int = 3) -> str:
    head = "; ".join(str(p) for p in problems[:n])
    return head + (f"; and {len(problems) - n} more" if len(problems) > n else "")


def _identity_diff(old: RunManifest, new: RunManifest) -> list[str]:
    """Why ``new`` may not resume ``old`` (empty when it may)."""
    if old.identity is not None and new.identity is not None:
        diffs = old.identity.diff(new.identity)
    else:  # a run written before identities existed: compare what its manifest recorded
        o, n = old.source, new.source
        pairs = [("env_id", o.env_id, n.env_id), ("split", o.split.value, n.split.value),
                 ("group_size", o.group_size, n.group_size), ("agent", old.policy.agent, new.policy.agent),
                 ("policy model", old.policy.model, new.policy.model)]
        diffs = [f"{k} {json.dumps(a)} -> {json.dumps(b)}" for k, a, b in pairs if a != b]
        for k in sorted(set(old.policy.sampling) | set(new.policy.sampling)):
            a, b = old.policy.sampling.get(k), new.policy.sampling.get(k)
            if a != b and k != "base_url":
                diffs.append(f"{k} {json.dumps(a)} -> {json.dumps(b)}")
    if diffs:
        return diffs
    a, b = old.source.seeds, new.source.seeds
    if b[: len(a)] == a:
        return []  # the same plan, or a longer one that extends it
    if a[: len(b)] == b:
        return [f"episodes {len(a)} -> {len(b)} (a resume may extend a run, never shrink it)"]
    return [f"seeds differ (seed set {old.source.seed_set_hash} -> {new.source.seed_set_hash})"]


def flatten(ep: Episode, level: str = "steps") -> list[dict[str, Any]]:
    """Arrow-friendly records: dicts whose keys vary from row to row become JSON strings."""
    episode_cols = {"final_reward": ep.final_reward, "success": ep.success,
                    "failure": ep.failure.model_dump_json() if ep.failure else None}
    if level == "episodes":
        d = ep.model_dump(mode="json", exclude={"steps", "verdict", "failure", "reward_versions", "policy"})
        return [{**d, **episode_cols, "n_turns": len(ep.steps), "local_return": ep.local_return,
                 "n_bad_calls": ep.n_bad_calls, "policy": ep.policy.model_dump_json(),
                 "verdict": ep.verdict.model_dump_json() if ep.verdict else None,
                 "reward_versions": json.dumps(ep.reward_versions)}]
    if level != "steps":
        raise StoreError(f"unknown export level {level!r}; use 'steps' or 'episodes'")
    out = []
    for s in ep.steps:
        d = s.model_dump(mode="json")
        d["reward_breakdown"] = json.dumps(d["reward_breakdown"], sort_keys=True)
        out.append({**d, **episode_cols})
    return out
