"""The run directory as one object: open (lock, repair, check), start or resume, close.

See :mod:`rowgym.store` for the layout and the guarantees.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rowgym.errors import StoreError
from rowgym.rows import RunManifest
from rowgym.store.files import HASH_CACHE, LOCK_FILE, atomic_write
from rowgym.store.integrity import Integrity, IntegrityError, Problem, summary
from rowgym.store.lock import RunLock, RunLockedError
from rowgym.store.reading import Reader
from rowgym.store.shards import Shards


class TrajectoryStore(Shards, Integrity, Reader):
    """One run's episodes on disk: writing (:class:`Shards`), checking (:class:`Integrity`) and
    reading (:class:`Reader`) share this object's state."""

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
        self._strict = False
        self._active: Path | None = None
        self._active_count = 0
        self._fh: Any = None
        self._written = None
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
                                 f"({summary(problems)}); run `rowgym verify {self.root}`")
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

    # ----------------------------------------------------------------- closing
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
