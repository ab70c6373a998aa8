"""The writer serialises each episode when it is put and commits the last expected one at once."""

import asyncio

import pytest
from pydantic_core import PydanticSerializationError

from rowgym.rows import Episode, PolicyInfo, RunManifest, RunSource
from rowgym.store import EpisodeWriter, TrajectoryStore
from rowgym.store import writer as writer_mod


def episode(i: int, run: str = "r") -> Episode:
    return Episode(run_id=run, episode_id=f"{run}:{i}:0", group_id=f"{run}:{i}", env_id="rowgym/X-v0",
                   env_version="0", seed=i, split="train", task_hash=f"h{i}", policy=PolicyInfo(agent="a"))


def manifest(run: str = "r") -> RunManifest:
    return RunManifest(run_id=run, rowgym_version="0", policy=PolicyInfo(agent="a"),
                       source=RunSource(env_id="rowgym/X-v0", env_version="0", split="train", seeds=list(range(20)),
                                        seed_set_hash="h"))


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
        await asyncio.sleep(0.05)
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
        await asyncio.sleep(0.05)
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
