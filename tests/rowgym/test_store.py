import json

import pytest

from rowgym.errors import StoreError
from rowgym.rows import Episode, PolicyInfo, RunManifest, RunSource
from rowgym.store import TrajectoryStore


def episode(i: int, run: str = "r") -> Episode:
    return Episode(run_id=run, episode_id=f"{run}:{i}:0", group_id=f"{run}:{i}", env_id="rowgym/X-v0",
                   env_version="0", seed=i, split="train", task_hash=f"h{i}", policy=PolicyInfo(agent="a"))


def manifest(run: str = "r", seeds=(1, 2, 3), agent: str = "a") -> RunManifest:
    return RunManifest(run_id=run, rowgym_version="0", policy=PolicyInfo(agent=agent),
                       source=RunSource(env_id="rowgym/X-v0", env_version="0", split="train", seeds=list(seeds),
                                        seed_set_hash="h"))


def complete_run(path, n: int, shard_size: int) -> None:
    """A finished run of episodes 0..n-1 in ``path``."""
    s = TrajectoryStore(path, shard_size=shard_size)
    s.start(manifest())
    for i in range(n):
        s.append(episode(i))
    s.close(complete=True)


def test_append_seal_and_manifest_hashes(tmp_path):
    complete_run(tmp_path, 5, shard_size=2)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["status"] == "complete" and m["n_episodes"] == 5
    assert [sh["n_episodes"] for sh in m["shards"]] == [2, 2, 1]
    with TrajectoryStore(tmp_path) as again:
        assert [e.seed for e in again.episodes()] == [0, 1, 2, 3, 4]
        assert again.verify() == [] and again.problems == []
    (tmp_path / "shards" / m["shards"][0]["name"]).write_text("tampered\n")
    ro = TrajectoryStore(tmp_path, readonly=True)
    assert [p.kind for p in ro.problems] == ["changed", "line_count"]  # found on open, not raised
    assert "sha256" in str(ro.verify()[0])


def test_torn_last_line_is_repaired_on_reopen(tmp_path):
    s = TrajectoryStore(tmp_path)
    s.start(manifest())
    s.append(episode(0))
    s.append(episode(1))
    # simulate a crash in the middle of writing the third episode (the kernel drops a dead writer's lock)
    s._fh.write(episode(2).model_dump_json().encode()[:40])
    s._fh.flush()
    s.lock.release()
    again = TrajectoryStore(tmp_path)
    assert again.completed_ids() == {"r:0:0", "r:1:0"}
    assert list(again.shard_dir.glob("*.partial")) == []
    again.start(manifest())
    again.append(episode(2))
    again.close()
    assert [e.seed for e in TrajectoryStore(tmp_path, readonly=True).episodes()] == [0, 1, 2]


def _crashed_with_last_line(tmp_path, last: bytes) -> TrajectoryStore:
    """A run killed before sealing, whose active shard ends with ``last``; reopened (which repairs it)."""
    s = TrajectoryStore(tmp_path)
    s.start(manifest())
    s.append_many([episode(0), episode(1)])
    s._fh.write(last)
    s.lock.release()
    return TrajectoryStore(tmp_path)


@pytest.mark.parametrize("last, why", [
    (episode(2).model_dump_json().replace('"duration_s":0.0', '"duration_s":null').encode() + b"\n",
     "duration_s: Input should be a valid number"),  # what a NaN used to be written as
    (episode(2).model_dump_json()[:-1].encode() + b',"a_newer_field":1}\n', "a_newer_field: Extra inputs"),
])
def test_a_complete_last_line_that_does_not_parse_is_kept_and_quarantined_not_cut(tmp_path, last, why):
    again = _crashed_with_last_line(tmp_path, last)
    (shard,) = again.shard_dir.iterdir()
    assert shard.read_bytes().endswith(last)  # written whole (one O_DSYNC write): not a crash's doing
    again.close()
    ro = TrajectoryStore(tmp_path, readonly=True)
    assert [e.seed for e in ro.episodes()] == [0, 1] and ro.manifest.n_episodes == 3
    (q,) = ro.problems  # reported, as a bad line in the middle is; the sealed shard matches the manifest
    assert (q.kind, q.shard, q.line) == ("malformed", shard.name, 3) and why in q.detail
    assert [p.kind for p in ro.verify()] == ["malformed"]


def test_only_the_unterminated_tail_is_cut(tmp_path):
    again = _crashed_with_last_line(tmp_path, episode(2).model_dump_json().encode())  # all but its newline
    (shard,) = again.shard_dir.iterdir()
    assert shard.read_bytes().count(b"\n") == 2 and shard.read_bytes().endswith(b"}\n")
    again.close()
    ro = TrajectoryStore(tmp_path, readonly=True)
    assert [e.seed for e in ro.episodes()] == [0, 1] and ro.problems == [] and ro.manifest.n_episodes == 2


def test_a_different_run_in_the_same_dir_is_refused(tmp_path):
    s = TrajectoryStore(tmp_path)
    s.start(manifest())
    s.close()
    with TrajectoryStore(tmp_path) as again, pytest.raises(StoreError, match="refusing to resume.*seeds differ"):
        again.start(manifest(seeds=(9,)))
    with TrajectoryStore(tmp_path) as again, pytest.raises(StoreError, match='agent "a" -> "b"'):
        again.start(manifest(agent="b"))
    with TrajectoryStore(tmp_path) as again, pytest.raises(StoreError, match="resume is off"):
        again.start(manifest(), resume=False)


def test_export_parquet_and_dataset(tmp_path):
    from rowgym.rollouts.engine import CollectConfig, collect

    collect(CollectConfig(env_id="rowgym/ToolAPI-Retail-v0", episodes=3, out=tmp_path, progress=False,
                          agent_kwargs={"noise": 0.5}))
    store = TrajectoryStore(tmp_path, readonly=True)
    n_steps = sum(len(e.steps) for e in store.episodes())
    path = store.export_parquet(tmp_path / "steps.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert table.num_rows == n_steps
    assert {"observation", "action", "reward", "bad_call", "split", "final_reward"} <= set(table.column_names)
    ds = store.to_dataset("episodes")
    assert len(ds) == 3 and set(ds["split"]) == {"train"}
    assert all(json.loads(v) for v in ds["reward_versions"])


def test_readonly_open_never_writes(tmp_path):
    s = TrajectoryStore(tmp_path)
    s.start(manifest())
    s.append(episode(0))
    s._fh.write(b'{"torn')
    s._fh.flush()
    before = sorted((p.name, p.stat().st_size) for p in (tmp_path / "shards").iterdir())
    ro = TrajectoryStore(tmp_path, readonly=True)
    assert [e.seed for e in ro.episodes()] == [0]
    assert sorted((p.name, p.stat().st_size) for p in (tmp_path / "shards").iterdir()) == before
    with pytest.raises(StoreError, match="read-only"):
        ro.append(episode(1))
    with pytest.raises(StoreError, match="not a rowgym run"):
        TrajectoryStore(tmp_path / "nothing", readonly=True)


def test_episodes_only_returns_the_asked_ids_and_leaves_other_lines_unparsed(tmp_path):
    complete_run(tmp_path, 6, shard_size=3)
    shard = sorted((tmp_path / "shards").iterdir())[0]
    lines = shard.read_bytes().splitlines(keepends=True)
    # a line the reader would quarantine if it parsed it fully (its id is still findable)
    lines[0] = lines[0].replace(b'"env_id":"rowgym/X-v0"', b'"env_id":17', 1)
    shard.write_bytes(b"".join(lines))
    ro = TrajectoryStore(tmp_path, readonly=True)
    assert [e.episode_id for e in ro.episodes(only={"r:4:0", "r:1:0"})] == ["r:1:0", "r:4:0"]
    assert ro.quarantined == {}  # r:0:0 was never parsed
    assert len(list(ro.episodes())) == 5 and len(ro.quarantined) == 1  # a full read does parse it


@pytest.mark.parametrize("read", ["all", "only"])
def test_a_reader_misses_nothing_when_the_writer_seals_the_shard_between_its_passes(tmp_path, read):
    """episodes() reads the run twice (which record of each id is the latest, then those records); a live
    writer that seals the partial shard in between renames it. A trainer reading its batch while the
    collector re-opened the run after a crash (which seals the crashed shard) got none of the batch."""
    w = TrajectoryStore(tmp_path)
    w.start(manifest())
    for i in range(3):
        w.append(episode(i))
    assert [p.name.endswith(".partial") for p in w.shard_dir.iterdir()] == [True]
    ro = TrajectoryStore(tmp_path, readonly=True)
    first_pass = ro._last_records

    def then_the_writer_seals() -> dict:
        last = first_pass()
        w.flush()  # seals the active shard: episodes-00000.jsonl.partial -> episodes-00000.jsonl
        return last

    ro._last_records = then_the_writer_seals
    got = ro.episodes() if read == "all" else ro.episodes(only={"r:0:0", "r:2:0"})
    assert [e.seed for e in got] == ([0, 1, 2] if read == "all" else [0, 2])
    assert [p.name for p in w.shard_dir.iterdir()] == ["episodes-00000.jsonl"] and ro.problems == []
    w.close()
