"""Storing finished episodes off the event loop, several per fsync (group commit).

>>> import asyncio, tempfile
>>> from rowgym.rows import Episode, PolicyInfo
>>> from rowgym.store import EpisodeWriter, TrajectoryStore
>>> ep = Episode(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1,
...              split="train", task_hash="h", policy=PolicyInfo(agent="a"))
>>> async def main(store):
...     done = []
...     writer = EpisodeWriter(store, done.append)
...     writer.put(ep)
...     await writer.close()
...     return [e.episode_id for e in done]
>>> with TrajectoryStore(tempfile.mkdtemp()) as store:
...     asyncio.run(main(store))
['r:1:0']

``put`` never blocks the loop long: it serialises the episode (as each finishes, so the work is
spread over the collection instead of piling up behind the last one) and queues it. One
background task takes everything queued and hands the lines to
:meth:`TrajectoryStore.append_lines` in a worker thread (one synchronous ``write``; at most
one commit per ``min_interval_s``), and only then reports each episode through
``on_stored``: an episode is durable when it is reported stored. While one commit is in
flight, the episodes that finish meanwhile queue up and share the next one, so the number
of commits falls as the rate of finished episodes rises, and the loop never waits for the
disk. A writer told how many episodes to ``expect`` commits the last of them at once rather
than after the interval (on the loop itself: nothing else is left to run then, and a thread's round
trip would only add to the wait), and a batch of ``max_batch_bytes`` or more does not wait out the
interval either: a commit's cost grows with its bytes (6 MB took 10-20 ms with the loop idle and
33-69 ms with it busy, on a loaded 2-core machine), so when episodes finish in a burst, as all of a
collection's do at its end, the commit the collection waits for after its last episode stays small.
Given ``report``, the writer keeps what it returns for each episode (the engine: a few counts for
its progress bar) instead of the episode until its commit, so a finished episode's rows are freed
at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from rowgym.errors import RowgymError
from rowgym.rows import Episode
from rowgym.store.run import TrajectoryStore
from rowgym.store.shards import encode


class EpisodeWriter:
    """Appends finished episodes to ``store`` from one background task, in order of arrival.

    Args:
        store: A writable store; the writer does not close it.
        on_stored: Called on the event loop for each episode once it is on disk.
        min_interval_s: Least time between two commits: episodes that finish sooner after the
            last commit wait (at most this long) and share the next one. Each commit wakes a
            worker thread that must take the GIL from the loop and give it back, which on a
            busy machine (every core taken) costs the loop more than the disk wait itself.
        expect: How many episodes will be put, if known: once that many are queued, no more can
            join a commit, so the rest is committed without waiting out the interval.
        max_batch_bytes: Queued lines of at least this many bytes are committed without waiting
            out the interval (the wake-up it saves is small next to writing them).
        report: What ``on_stored`` is called with for an episode, taken when it is put: the
            episode itself by default. A few numbers of it (the engine's progress counts) let the
            writer hold just those and the line until the commit, not the episode and its rows.
    """

    def __init__(self, store: TrajectoryStore, on_stored: Callable[[Any], None], *,
                 min_interval_s: float = 0.1, expect: int | None = None, max_batch_bytes: int = 1 << 20,
                 report: Callable[[Episode], Any] | None = None):
        self.store, self.on_stored, self.report = store, on_stored, report
        self.min_interval_s = min_interval_s
        self.expect = expect
        self.max_batch_bytes = max_batch_bytes
        self.n_put = 0
        self.queued_bytes = 0
        # (what to report, the line, the episode only if its line is still to be written)
        self.queue: asyncio.Queue[tuple[Any, bytes | None, Episode | None] | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())
        self.last_stored = time.perf_counter()
        self.n_commits = 0
        self.last_commit = -math.inf  # the first commit never waits (perf_counter may start near 0 after a boot)
        self.closing = False
        self._nap: asyncio.Future[None] | None = None

    def put(self, ep: Episode, line: bytes | None = None) -> None:
        """Serialise and queue one finished episode (raises the writer's error if it stopped, e.g. disk full).

        ``line``: its stored line, already written (:meth:`rowgym.store.shards.EpisodeLine.of`).
        An episode that cannot be serialised is queued as it is: the writer serialises it again
        and stops with that error, as it would have without this early attempt.
        """
        if self.task.done():
            self.task.result()
            raise RowgymError("the store writer stopped early")
        if line is None:
            try:
                line = encode(ep)
            except Exception:  # raised again, by the writer, in order (see _run)
                line = None
        self.queue.put_nowait((ep if self.report is None else self.report(ep), line, None if line is not None else ep))
        self.n_put += 1
        if line is not None:
            self.queued_bytes += len(line)
        if self.expect is not None and self.n_put >= self.expect:
            self._last_in()
        elif self.queued_bytes >= self.max_batch_bytes:
            self._wake()  # a full batch: commit it now

    def _last_in(self) -> None:
        """Nothing more will join a commit: stop waiting out the interval."""
        self.closing = True
        self._wake()

    def _wake(self) -> None:
        """End the writer's nap, if it naps (it runs in the loop's next round: a busy loop's round at the
        end of a collection, when every episode finishes, can take tens of ms)."""
        if self._nap is not None and not self._nap.done():
            self._nap.set_result(None)

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            wait = self.last_commit + self.min_interval_s - time.perf_counter()
            if wait > 0 and batch[0] is not None and not self.closing and self.queued_bytes < self.max_batch_bytes:
                loop = asyncio.get_running_loop()
                self._nap = nap = loop.create_future()
                timer = loop.call_later(wait, self._wake)
                try:
                    await nap  # cut short by close(), the last expected episode or a full batch
                finally:
                    timer.cancel()
                    self._nap = None
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self.queued_bytes = 0
            items = [b for b in batch if b is not None]
            if items:
                # serialised on the loop (by put, or here if that failed): the thread holds the GIL only briefly
                lines = [line if line is not None else encode(ep) for _, line, ep in items]
                if self.closing:
                    # the last commit (every expected episode is in, or close() was called): nothing is left
                    # to run meanwhile, and the thread's round trip (waking it, the GIL there and back)
                    # would only add to the wait for it
                    self.store.append_lines(lines)
                else:
                    await asyncio.to_thread(self.store.append_lines, lines)
                self.n_commits += 1
                self.last_stored = self.last_commit = time.perf_counter()
                for stored, _, _ in items:
                    self.on_stored(stored)
            if len(items) < len(batch):
                return

    async def close(self) -> None:
        """Store everything queued now (no waiting out the interval), then stop (raises the writer's
        error, if any)."""
        self._last_in()
        self.queue.put_nowait(None)
        await self.task
