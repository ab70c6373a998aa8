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

Each finished episode is one JSON line appended to the active shard. A batch of finished
episodes goes out with one synchronous write (``O_DSYNC``: on disk when it returns, like
``write`` + ``fdatasync``; a group commit, :meth:`TrajectoryStore.append_many`;
:class:`EpisodeWriter` does it off the event loop and reports an episode stored only after
that write returned), so a killed collection loses at most the episodes that were not yet
reported stored. A shard is sealed by fsync + rename once it
holds ``shard_size`` episodes, and its hash goes into the manifest (written to a temporary
file, fsynced and renamed); the writer hashes the lines as it writes them, so sealing does not
read the shard back. Re-opening a run repairs a torn last line of the active shard,
seals it, and reports which episode ids are done so a resume skips them.

One writer per run: a writable store holds an exclusive ``flock`` on ``.lock`` from open to
:meth:`TrajectoryStore.close`, and a second writer gets :class:`RunLockedError` naming the
holder. Readers (``readonly=True``) never touch the lock. Data at rest is not trusted (see
:mod:`rowgym.store.integrity`).

Modules, by concern: ``files`` (atomic writes, digests), ``lock``, ``shards`` (appending,
repair, sealing), ``integrity`` (checks, verify, quarantine), ``reading`` (episodes, rows,
exports), ``run`` (the :class:`TrajectoryStore` that ties them together), ``writer``
(:class:`EpisodeWriter`).
"""

from rowgym.store.files import HASH_CACHE, LOCK_FILE, PARTIAL, atomic_write, sha256_file
from rowgym.store.integrity import IntegrityError, Problem
from rowgym.store.lock import RunLock, RunLockedError
from rowgym.store.reading import flatten
from rowgym.store.run import TrajectoryStore
from rowgym.store.writer import EpisodeWriter

__all__ = ["HASH_CACHE", "LOCK_FILE", "PARTIAL", "EpisodeWriter", "IntegrityError", "Problem", "RunLock",
           "RunLockedError", "TrajectoryStore", "atomic_write", "flatten", "sha256_file"]
