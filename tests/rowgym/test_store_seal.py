"""Sealing a shard records the sha256 and line count the writer kept up while writing it (no read
back): they must equal a fresh read of the sealed file, also after a resume that repaired a torn
line, and a shard whose bytes the writer did not count whole is hashed from the file instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rowgym.cli import app
from rowgym.rows import Episode, PolicyInfo, RunManifest, RunSource
from rowgym.store import TrajectoryStore
from rowgym.store import files as store_files
from rowgym.store import shards as shards_mod


def episode(i: int) -> Episode:
    # lines of different lengths, several KiB each (hashlib works in blocks; a batch is many lines)
    return Episode(run_id="r", episode_id=f"r:{i}:0", group_id=f"r:{i}", env_id="rowgym/X-v0", env_version="0",
                   seed=i, split="train", task_hash=f"h{i}", instruction="é" * (1000 + 700 * i),
                   policy=PolicyInfo(agent="a"))


def manifest(n: int = 20) -> RunManifest:
    return RunManifest(run_id="r", rowgym_version="0", policy=PolicyInfo(agent="a"),
                       source=RunSource(env_id="rowgym/X-v0", env_version="0", split="train",
                                        seeds=list(range(n)), seed_set_hash="h"))


def sealed_as_reread(root: Path) -> list[tuple[str, str, int]]:
    """Each sealed shard of the manifest next to what reading its file back gives."""
    m = TrajectoryStore(root, readonly=True).manifest
    assert m is not None
    out = []
    for s in m.shards:
        digest, lines = store_files.digest(root / "shards" / s.name)
        assert (s.sha256, s.n_episodes) == (digest, lines), s.name
        out.append((s.name, digest, lines))
    return out


def no_reread(monkeypatch) -> None:
    """Make reading a shard back fail: sealing must use what the writer counted."""
    def refuse(path):
        raise AssertionError(f"{path} was read back")
    monkeypatch.setattr(shards_mod.files, "digest", refuse)


def verify_cli(root: Path) -> str:
    res = CliRunner().invoke(app, ["verify", str(root)])
    assert res.exit_code == 0, res.output
    return res.output


def test_a_sealed_shard_records_what_a_reread_gives_without_reading_it(tmp_path, monkeypatch):
    s = TrajectoryStore(tmp_path, shard_size=4)
    s.start(manifest())
    no_reread(monkeypatch)
    s.append_many([episode(0), episode(1)])
    s.append_many([episode(i) for i in range(2, 7)])  # fills shard 0, starts shard 1
    s.append(episode(7))  # fills shard 1
    s.append_many([episode(8), episode(9)])
    s.close(complete=True)  # seals the third, half-full shard
    monkeypatch.undo()
    assert [n for _, _, n in sealed_as_reread(tmp_path)] == [4, 4, 2]
    with TrajectoryStore(tmp_path, readonly=True) as ro:
        assert ro.verify() == [] and [e.seed for e in ro.episodes()] == list(range(10))
    assert "10 episodes in 3 sealed shards" in verify_cli(tmp_path)


def test_after_a_resume_that_repaired_a_torn_line_more_appends_seal_right(tmp_path):
    s = TrajectoryStore(tmp_path, shard_size=4)
    s.start(manifest())
    s.append_many([episode(0), episode(1), episode(2)])
    s._fh.write(shards_mod.encode(episode(3))[:100])  # killed in the middle of a write
    s.lock.release()
    again = TrajectoryStore(tmp_path, shard_size=4)
    assert again.completed_ids() == {"r:0:0", "r:1:0", "r:2:0"}
    again.start(manifest())
    again.append_many([episode(i) for i in range(3, 8)])
    again.append(episode(8))
    again.close(complete=True)
    assert [n for _, _, n in sealed_as_reread(tmp_path)] == [3, 4, 2]
    with TrajectoryStore(tmp_path, readonly=True) as ro:
        assert ro.verify() == [] and [e.seed for e in ro.episodes()] == list(range(9))
    verify_cli(tmp_path)


def test_a_write_that_failed_part_way_is_sealed_as_the_file_is(tmp_path, monkeypatch):
    s = TrajectoryStore(tmp_path, shard_size=10)
    s.start(manifest())
    s.append_many([episode(0), episode(1)])

    def torn(fh, data):
        fh.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shards_mod, "write_durably", torn)
    with pytest.raises(OSError):
        s.append_many([episode(2), episode(3)])
    monkeypatch.undo()
    s.close()
    ((_, _, lines),) = sealed_as_reread(tmp_path)
    assert lines == 3  # two whole lines, one whole line of the failed batch, part of the next


def test_bytes_added_behind_the_writers_back_are_hashed_from_the_file(tmp_path):
    s = TrajectoryStore(tmp_path, shard_size=10)
    s.start(manifest())
    s.append(episode(0))
    s._fh.write(shards_mod.encode(episode(1)))  # not through append_lines: not counted
    s.close()
    assert [n for _, _, n in sealed_as_reread(tmp_path)] == [2]


def test_bytes_changed_in_place_before_the_seal_fail_verification(tmp_path):
    """The manifest holds the hash of what the writer wrote, not of what the file holds at sealing."""
    s = TrajectoryStore(tmp_path, shard_size=10)
    s.start(manifest())
    s.append_many([episode(0), episode(1)])
    assert s._active is not None
    data = s._active.read_bytes()
    with open(s._active, "r+b") as f:  # same size, one letter different, still an episode
        f.seek(data.index(b"rowgym/X-v0") + len(b"rowgym/"))
        f.write(b"Y")
    s.close()
    kinds = [p.kind for p in TrajectoryStore(tmp_path, readonly=True).verify()]
    assert kinds == ["changed"]
