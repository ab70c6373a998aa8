"""Group commit: several episodes per fsync, each reported stored only once it is on disk."""

import asyncio
import fcntl
import json
import os

import pytest
from pydantic_core import PydanticSerializationError

from rowgym.errors import StoreError
from rowgym.rows import Episode, PolicyInfo, RunManifest, RunSource
from rowgym.store import EpisodeWriter, TrajectoryStore
from rowgym.store import shards as shards_mod
from rowgym.store import writer as writer_mod


def episode(i: int, run: str = "r") -> Episode:
    return Episode(run_id=run, episode_id=f"{run}:{i}:0", group_id=f"{run}:{i}", env_id="rowgym/X-v0",
                   env_version="0", seed=i, split="train", task_hash=f"h{i}", policy=PolicyInfo(agent="a"))


async def committed(writer: EpisodeWriter, n: int) -> None:
    """Wait until ``writer`` has made ``n`` commits (and reported their episodes): a loaded machine's fsync
    can outlast any fixed sleep."""
    for _ in range(12_000):  # 60 s
        if writer.n_commits >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the writer made {writer.n_commits} commits in 60 s, not {n}")


def manifest(run: str = "r") -> RunManifest:
    return RunManifest(run_id=run, rowgym_version="0", policy=PolicyInfo(agent="a"),
                       source=RunSource(env_id="rowgym/X-v0", env_version="0", split="train", seeds=list(range(20)),
                                        seed_set_hash="h"))


def _count_writes(monkeypatch):
    calls = []
    real = shards_mod.write_durably
    monkeypatch.setattr(shards_mod, "write_durably", lambda fh, data: calls.append(data) or real(fh, data))
    return calls


def test_append_many_is_one_synchronous_write(tmp_path, monkeypatch):
    s = TrajectoryStore(tmp_path, shard_size=100)
    s.start(manifest())
    calls = _count_writes(monkeypatch)
    s.append_many([episode(i) for i in range(10)])
    assert len(calls) == 1 and calls[0].count(b"\n") == 10
    assert fcntl.fcntl(s._fh.fileno(), fcntl.F_GETFL) & os.O_DSYNC  # the write returns once it is on disk
    s.append(episode(10))
    assert len(calls) == 2
    monkeypatch.undo()
    s.close()
    with TrajectoryStore(tmp_path, readonly=True) as ro:
        assert [e.seed for e in ro.episodes()] == list(range(11)) and ro.verify() == []


def test_append_many_splits_a_batch_at_shard_boundaries(tmp_path):
    s = TrajectoryStore(tmp_path, shard_size=3)
    s.start(manifest())
    s.append_many([episode(i) for i in range(2)])
    s.append_many([episode(i) for i in range(2, 9)])  # fills the first shard, one more, and 2 of a third
    s.close()
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert [sh["n_episodes"] for sh in m["shards"]] == [3, 3, 3]
    with TrajectoryStore(tmp_path, readonly=True) as ro:
        assert [e.seed for e in ro.episodes()] == list(range(9)) and ro.verify() == []


def test_an_episode_that_cannot_be_serialised_writes_nothing_of_its_batch(tmp_path):
    s = TrajectoryStore(tmp_path)
    s.start(manifest())
    bad = episode(1).model_copy(update={"instruction": "lone \udce9 surrogate"})
    with pytest.raises(PydanticSerializationError):
        s.append_many([episode(0), bad])
    assert s.completed_ids() == set()
    s.close()


def test_a_batch_torn_by_a_kill_keeps_its_complete_lines(tmp_path):
    s = TrajectoryStore(tmp_path)
    s.start(manifest())
    s.append_many([episode(0), episode(1)])
    partial = s._active
    s.lock.release()  # the process "dies" in the middle of writing the next batch
    with open(partial, "ab") as f:
        f.write(episode(2).model_dump_json().encode() + b"\n" + episode(3).model_dump_json().encode()[:40])
    with TrajectoryStore(tmp_path) as again:
        assert again.completed_ids() == {"r:0:0", "r:1:0", "r:2:0"}
        assert again.verify() == []


async def test_writer_reports_each_episode_only_once_it_is_on_disk(tmp_path):
    store = TrajectoryStore(tmp_path)
    store.start(manifest())
    seen_on_disk = []

    def on_stored(ep):  # a reader that opens the run now must already find the episode
        seen_on_disk.append(ep.episode_id in TrajectoryStore(tmp_path, readonly=True).completed_ids())

    writer = EpisodeWriter(store, on_stored, min_interval_s=0)
    for i in range(12):
        writer.put(episode(i))
    await writer.close()
    store.close()
    assert seen_on_disk == [True] * 12
    assert writer.n_commits == 1  # all twelve were queued before the writer ran: one group commit


async def test_writer_batches_episodes_that_finish_within_its_interval(tmp_path):
    with TrajectoryStore(tmp_path) as store:
        store.start(manifest())
        stored = []
        writer = EpisodeWriter(store, lambda ep: stored.append(ep.seed), min_interval_s=0.2)
        for i in range(6):  # one episode every ~10 ms: the first commits alone, the rest share the next
            writer.put(episode(i))
            await asyncio.sleep(0.01)
        await writer.close()
        assert stored == list(range(6)) and writer.n_commits == 2


async def test_writer_error_stops_the_run(tmp_path):
    store = TrajectoryStore(tmp_path)
    store.start(manifest())
    store.close()  # appending now fails like a full disk would
    writer = EpisodeWriter(store, lambda ep: None)
    writer.put(episode(0))
    with pytest.raises(StoreError):
        await writer.close()
    with pytest.raises(StoreError):
        writer.put(episode(1))


async def test_close_commits_at_once_instead_of_waiting_out_the_interval(tmp_path):
    with TrajectoryStore(tmp_path) as store:
        store.start(manifest())
        writer = EpisodeWriter(store, lambda ep: None, min_interval_s=600)
        writer.put(episode(0))
        await committed(writer, 1)  # the first episode is committed at once; the next one would wait 600 s
        writer.put(episode(1))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(writer.close(), 60)
        assert store.completed_ids() == {"r:0:0", "r:1:0"} and writer.n_commits == 2


# ---- serialised when put; the last expected episode committed at once

async def test_the_last_expected_episode_is_committed_without_waiting_out_the_interval(tmp_path):
    with TrajectoryStore(tmp_path) as store:
        store.start(manifest())
        stored: list[int] = []
        both = asyncio.Event()

        def on_stored(ep):
            stored.append(ep.seed)
            if len(stored) == 2:
                both.set()

        writer = EpisodeWriter(store, on_stored, min_interval_s=600, expect=2)
        writer.put(episode(0))  # committed at once (no commit yet)
        await committed(writer, 1)
        writer.put(episode(1))  # would wait 600 s for company, but it is the last one
        await asyncio.wait_for(both.wait(), 60)  # reported without close()
        assert stored == [0, 1] and writer.n_commits == 2
        assert store.completed_ids() == {"r:0:0", "r:1:0"}
        await writer.close()


async def test_an_episode_before_the_last_expected_one_still_waits_for_company(tmp_path):
    with TrajectoryStore(tmp_path) as store:
        store.start(manifest())
        stored: list[int] = []
        writer = EpisodeWriter(store, lambda ep: stored.append(ep.seed), min_interval_s=600, expect=3)
        writer.put(episode(0))
        await committed(writer, 1)
        writer.put(episode(1))  # not the last expected: it naps (600 s), so it is not stored yet
        await asyncio.sleep(0.05)
        assert stored == [0]
        writer.put(episode(2))  # the last: both go out in one commit
        await asyncio.wait_for(writer.close(), 60)
        assert stored == [0, 1, 2] and writer.n_commits == 2


async def test_the_stored_line_is_the_one_serialised_at_put(tmp_path, monkeypatch):
    calls = []
    real = writer_mod.encode
    monkeypatch.setattr(writer_mod, "encode", lambda ep: calls.append(ep.seed) or real(ep))
    with TrajectoryStore(tmp_path) as store:
        store.start(manifest())
        writer = EpisodeWriter(store, lambda ep: None, min_interval_s=0)
        eps = [episode(i) for i in range(5)]
        for ep in eps:
            writer.put(ep)
        assert calls == list(range(5))  # serialised by put, before the writer task ran
        await writer.close()
        assert calls == list(range(5))  # and not again
    with TrajectoryStore(tmp_path, readonly=True) as ro:
        lines = b"".join(p.read_bytes() for p in ro._shard_paths())
    assert lines == b"".join(e.model_dump_json().encode() + b"\n" for e in eps)


async def test_an_episode_that_cannot_be_serialised_still_stops_the_writer_and_writes_nothing_of_its_batch(tmp_path):
    store = TrajectoryStore(tmp_path)
    store.start(manifest())
    writer = EpisodeWriter(store, lambda ep: None, min_interval_s=0)
    bad = episode(1).model_copy(update={"instruction": "lone \udce9 surrogate"})
    writer.put(episode(0))
    writer.put(bad)  # no error here: the writer raises it, in order
    with pytest.raises(PydanticSerializationError):
        await writer.close()
    assert store.completed_ids() == set()
    with pytest.raises(PydanticSerializationError):
        writer.put(episode(2))
    store.close()


async def test_a_full_batch_is_committed_without_waiting_out_the_interval(tmp_path):
    with TrajectoryStore(tmp_path) as store:
        store.start(manifest())
        stored: list[int] = []
        three = asyncio.Event()

        def on_stored(ep):
            stored.append(ep.seed)
            if len(stored) == 3:
                three.set()

        one = len(episode(1).model_dump_json()) + 1
        writer = EpisodeWriter(store, on_stored, min_interval_s=600, max_batch_bytes=2 * one)
        writer.put(episode(0))  # committed at once (no commit yet)
        await committed(writer, 1)
        writer.put(episode(1))  # half a batch: it naps (600 s)
        await asyncio.sleep(0.05)
        assert stored == [0]
        writer.put(episode(2))  # the batch is full: committed now, without close()
        await asyncio.wait_for(three.wait(), 60)
        assert stored == [0, 1, 2] and writer.n_commits == 2
        assert store.completed_ids() == {"r:0:0", "r:1:0", "r:2:0"}
        await writer.close()


async def test_the_writer_wakes_in_the_loops_next_round(tmp_path):
    """A busy loop's round at the end of a collection can take tens of ms: the last expected episode
    ends the writer's nap in one round, not three (a cancelled sleep task, then asyncio.wait)."""
    with TrajectoryStore(tmp_path) as store:
        store.start(manifest())
        writer = EpisodeWriter(store, lambda ep: None, min_interval_s=600, expect=3)
        writer.put(episode(0))
        await committed(writer, 1)  # committed at once
        writer.put(episode(1))
        await asyncio.sleep(0.05)
        assert writer._nap is not None and not writer._nap.done()  # waiting for company
        writer.put(episode(2))  # the last one
        await asyncio.sleep(0)
        assert writer._nap is None  # the writer already ran past its nap
        await asyncio.wait_for(writer.close(), 60)
        assert store.completed_ids() == {"r:0:0", "r:1:0", "r:2:0"}


async def test_a_writer_with_report_keeps_what_it_reports_not_the_episode(tmp_path):
    """``report``: on_stored gets what it returned, once the episode is on disk, and the writer holds no
    reference to an episode whose line is written, so its rows can go before the commit."""
    import gc
    import weakref

    from rowgym.store.shards import encode

    with TrajectoryStore(tmp_path) as store:
        store.start(manifest())
        reported: list[tuple[str, bool]] = []

        def on_stored(r: str) -> None:
            reported.append((r, r in TrajectoryStore(tmp_path, readonly=True).completed_ids()))

        writer = EpisodeWriter(store, on_stored, min_interval_s=600, report=lambda ep: ep.episode_id)
        eps = [episode(i) for i in range(4)]
        refs = [weakref.ref(e) for e in eps]
        writer.put(eps[0], encode(eps[0]))  # committed at once (the first commit never waits)
        await committed(writer, 1)
        for e in eps[1:3]:
            writer.put(e, encode(e))  # napping: queued until the interval ends or close()
        writer.put(eps[3])  # no line given: put writes it
        del eps, e
        gc.collect()
        assert all(r() is None for r in refs)
        assert [r for r, _ in reported] == ["r:0:0"]
        await writer.close()
        assert reported == [(f"r:{i}:0", True) for i in range(4)]
