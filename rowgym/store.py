"""The trajectory store: append-only JSONL shards plus a manifest, crash-safe and resumable.

>>> import tempfile
>>> from rowgym.store import TrajectoryStore
>>> store = TrajectoryStore(tempfile.mkdtemp())
>>> store.completed_ids()
set()

Layout of a run directory::

    manifest.json                  RunManifest: source, policy, versions, sealed shards + sha256
    shards/episodes-00000.jsonl    sealed: never written again
    shards/episodes-00001.jsonl.partial   the active shard

Each finished episode is one JSON line appended to the active shard with a single
``write`` followed by ``fsync``, so a killed collection loses at most the episodes
that were in flight. A shard is sealed by fsync + rename once it holds
``shard_size`` episodes, and its hash goes into the manifest (written to a temporary
file, fsynced and renamed). Re-opening a run repairs a torn last line of the active
shard, seals it, and reports which episode ids are done so a resume skips them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rowgym import aio
from rowgym.errors import StoreError
from rowgym.rows import Episode, RunManifest, ShardInfo, StepRow

PARTIAL = ".partial"


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
    """The episode id of one stored line, without parsing the whole episode."""
    m = _ID.search(line, 0, 4096)
    if m is None or b"\\" in m.group(1):  # not near the start, or escaped: parse it properly
        return aio.loads(line)["episode_id"]
    return m.group(1).decode()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TrajectoryStore:
    """One run's episodes on disk."""

    def __init__(self, root: str | Path, shard_size: int = 200, *, readonly: bool = False):
        """Open (or create) a run directory.

        ``readonly=True`` never writes: no directory is created and a partial shard is read
        as it is (its torn last line skipped) instead of being repaired and sealed, so a
        run that another process is still collecting can be read safely.
        """
        self.root = Path(root)
        self.shard_dir = self.root / "shards"
        self.shard_size = shard_size
        self.readonly = readonly
        if readonly and not self.shard_dir.is_dir():
            raise StoreError(f"{self.root} is not a rowgym run directory (no shards/ folder)")
        if not readonly:
            self.shard_dir.mkdir(parents=True, exist_ok=True)
        self.manifest: RunManifest | None = self._read_manifest()
        self._active: Path | None = None
        self._active_count = 0
        self._fh: Any = None
        if not readonly:
            self._repair_partials()

    # ---------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def _read_manifest(self) -> RunManifest | None:
        if not self.manifest_path.exists():
            return None
        try:
            return RunManifest.model_validate_json(self.manifest_path.read_text())
        except ValidationError as e:
            raise StoreError(f"{self.manifest_path} is not a rowgym run manifest: {e.errors()[0]['msg']}") from e

    def start(self, manifest: RunManifest, *, resume: bool = True) -> RunManifest:
        """Begin (or resume) a run; refuses a directory that holds a different run."""
        if self.readonly:
            raise StoreError(f"{self.root} was opened read-only")
        if self.manifest is not None:
            old, new = self.manifest, manifest
            same = (old.source == new.source and old.policy.agent == new.policy.agent
                    and old.policy.model == new.policy.model)
            if not resume or not same:
                why = "resume is off" if not resume else "it was collected with a different env, seeds or agent"
                raise StoreError(f"{self.root} already holds run {old.run_id} and {why}; "
                                 f"choose another output directory or delete this one")
            self.manifest = old.model_copy(update={"status": "running"})
        else:
            self.manifest = manifest
        self._write_manifest()
        return self.manifest

    def _write_manifest(self) -> None:
        assert self.manifest is not None
        self.manifest.updated_at = datetime.now(UTC)
        atomic_write(self.manifest_path, self.manifest.model_dump_json(indent=2))

    # ------------------------------------------------------------------ shards
    def _shard_paths(self, sealed_only: bool = False) -> list[Path]:
        paths = sorted(p for p in self.shard_dir.iterdir() if p.suffix == ".jsonl" or p.name.endswith(PARTIAL))
        return [p for p in paths if not (sealed_only and p.name.endswith(PARTIAL))]

    def _repair_partials(self) -> None:
        """Drop a torn last line from a partial shard and seal it (after a crash)."""
        for p in self._shard_paths():
            if not p.name.endswith(PARTIAL):
                continue
            good = bytearray()
            with open(p, "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    try:
                        Episode.model_validate_json(line)
                    except ValidationError:
                        break
                    good += line
            with open(p, "r+b") as f:
                f.truncate(len(good))
                f.flush()
                os.fsync(f.fileno())
            self._seal(p)

    def _seal(self, partial: Path) -> None:
        final = partial.with_name(partial.name[: -len(PARTIAL)])
        if partial.stat().st_size == 0:
            partial.unlink()
            return
        os.replace(partial, final)
        _fsync_dir(self.shard_dir)
        if self.manifest is not None:
            n = sum(1 for _ in open(final, "rb"))
            self.manifest.shards = [s for s in self.manifest.shards if s.name != final.name]
            self.manifest.shards.append(ShardInfo(name=final.name, sha256=sha256_file(final), n_episodes=n))
            self.manifest.n_episodes = sum(s.n_episodes for s in self.manifest.shards)
            self._write_manifest()

    def _next_shard(self) -> Path:
        existing = [p.name.split(".")[0] for p in self._shard_paths()]
        idx = 1 + max((int(n.rsplit("-", 1)[1]) for n in existing), default=-1)
        return self.shard_dir / f"episodes-{idx:05d}.jsonl{PARTIAL}"

    def append(self, episode: Episode) -> None:
        """Durably add one finished episode (one line, one write, fsync)."""
        if self.readonly:
            raise StoreError(f"{self.root} was opened read-only")
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
        self.flush()
        if self.manifest is not None:
            if complete:
                self.manifest.status = "complete"
            self._write_manifest()

    # ----------------------------------------------------------------- reading
    def episodes(self) -> Iterator[Episode]:
        """Every stored episode, in write order, each id once: its latest record.

        An id has more than one record only when a failed episode was played again
        (``collect --retry-failed``); the retry's record replaces the failed one.
        """
        last = self._last_records()
        for p in self._shard_paths():
            with open(p, "rb") as f:
                for i, line in enumerate(f):
                    if line.endswith(b"\n") and last.get(_episode_id(line)) == (p.name, i):
                        yield Episode.model_validate_json(line)

    def rows(self) -> Iterator[StepRow]:
        for ep in self.episodes():
            yield from ep.steps

    def _records(self) -> Iterator[tuple[str, int, bytes]]:
        for p in self._shard_paths():
            with open(p, "rb") as f:
                for i, line in enumerate(f):
                    if line.endswith(b"\n"):
                        yield p.name, i, line

    def _last_records(self) -> dict[str, tuple[str, int]]:
        return {_episode_id(line): (shard, i) for shard, i, line in self._records()}

    def completed_ids(self, *, failed: bool = True) -> set[str]:
        """Ids of stored episodes; with ``failed=False`` only those whose latest record did not fail."""
        latest: dict[str, bool] = {}
        for _, _, line in self._records():
            latest[_episode_id(line)] = failed or aio.loads(line).get("failure") is None
        return {k for k, ok in latest.items() if ok}

    def verify(self) -> list[str]:
        """Problems found: sealed shards whose bytes no longer match the manifest hash."""
        if self.manifest is None:
            return ["no manifest"]
        problems = []
        for s in self.manifest.shards:
            p = self.shard_dir / s.name
            if not p.exists():
                problems.append(f"{s.name}: missing")
            elif sha256_file(p) != s.sha256:
                problems.append(f"{s.name}: sha256 differs from the manifest")
        return problems

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
