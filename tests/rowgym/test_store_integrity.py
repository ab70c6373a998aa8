"""Data at rest is not trusted: every open checks sealed shards against the manifest, a bad line
is quarantined with its location, `rowgym verify` reports every mismatch, and dataset builds
refuse a run that fails verification unless --allow-unverified (then the provenance says so)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rowgym.cli import app
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.store import IntegrityError, TrajectoryStore
from rowgym.store import files as store_files
from rowgym.trainers.datasets import load_episodes, sft_conversations

pytestmark = pytest.mark.redteam

ENV = "rowgym/ToolAPI-Retail-v0"
N = 6


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pristine") / "run"
    collect(CollectConfig(env_id=ENV, episodes=N, out=out, progress=False, concurrency=2))
    return out


@pytest.fixture
def run(pristine, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(pristine, dst)
    return dst


def _shard(run: Path) -> Path:
    (p,) = sorted((run / "shards").glob("*.jsonl"))
    return p


def _cli(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output and (res.exception is None or isinstance(res.exception, SystemExit)), \
        res.output
    return res


def flip_a_byte(run: Path) -> None:
    """Change one letter inside a text field: the JSON stays valid, only the bytes differ."""
    p = _shard(run)
    data = bytearray(p.read_bytes())
    i = data.index(b'"instruction":"') + len(b'"instruction":"') + 2
    data[i] = ord("X") if data[i] != ord("X") else ord("Y")
    p.write_bytes(bytes(data))


def delete_a_line(run: Path) -> None:
    p = _shard(run)
    lines = p.read_bytes().splitlines(keepends=True)
    p.write_bytes(b"".join(lines[:1] + lines[2:]))


def malform_line_3(run: Path) -> None:
    p = _shard(run)
    lines = p.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"episode_id": "broken", "not": "an episode"\n'
    p.write_bytes(b"".join(lines))


@pytest.mark.parametrize("damage, kinds", [
    (flip_a_byte, {"changed"}),
    (delete_a_line, {"changed", "line_count"}),
    (malform_line_3, {"changed", "malformed"}),
])
def test_damage_is_reported_by_verify_and_refused_by_dataset_sft(run, tmp_path, damage, kinds):
    res = _cli("verify", str(run))
    assert res.exit_code == 0 and f"{N} episodes" in res.output
    damage(run)
    res = _cli("verify", str(run))
    assert res.exit_code == 1
    problems = TrajectoryStore(run, readonly=True).verify()
    assert {p.kind for p in problems} == kinds
    for p in problems:
        assert f"FAIL {p.kind}: " in res.output and p.shard in res.output
    if damage is delete_a_line:
        assert f"{N - 1} lines, the manifest says {N}" in res.output
    if damage is malform_line_3:
        assert "episodes-00000.jsonl line 3: not an episode" in res.output

    out = tmp_path / "sft"
    res = _cli("dataset", "sft", str(run), "--out", str(out))
    assert res.exit_code == 2 and "fails verification" in res.output and not out.exists()
    with pytest.raises(IntegrityError, match="fails verification"):
        sft_conversations(run)

    res = _cli("dataset", "sft", str(run), "--out", str(out), "--allow-unverified")
    assert res.exit_code == 0, res.output
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["unverified"] is True and prov["integrity_problems"][str(run)]
    n_rows = sum(1 for _ in open(out / "data.jsonl"))
    assert n_rows == (N - 1 if damage is not flip_a_byte else N)  # the quarantined / deleted line is left out


def test_a_malformed_line_is_quarantined_and_the_rest_stays_readable(run):
    malform_line_3(run)
    ro = TrajectoryStore(run, readonly=True)
    eps = list(ro.episodes())
    assert len(eps) == N - 1
    (q,) = ro.quarantined.values()
    assert (q.shard, q.line, q.kind) == ("episodes-00000.jsonl", 3, "malformed")
    res = _cli("show", str(run), "--episode", "0")
    assert res.exit_code == 0 and "warning:" in res.output and "fails verification" in res.output
    res = _cli("export", str(run), "--format", "jsonl", "--level", "episodes")
    assert res.exit_code == 0 and "warning:" in res.output
    assert sum(1 for _ in open(run / "episodes.jsonl")) == N - 1
    eps, _ = load_episodes(run, allow_unverified=True)
    assert len(eps) == N - 1


def test_missing_and_unlisted_shards_and_a_foreign_episode(run):
    shard = _shard(run)
    extra = shard.with_name("episodes-00007.jsonl")
    line = shard.read_bytes().splitlines(keepends=True)[0].replace(b'"run_id":"', b'"run_id":"other', 1)
    extra.write_bytes(line)
    shard.rename(shard.with_name("moved.txt"))
    problems = TrajectoryStore(run, readonly=True).verify()
    kinds = {p.kind: p for p in problems}
    assert set(kinds) == {"missing", "unlisted", "foreign"}
    assert kinds["missing"].shard == "episodes-00000.jsonl" and kinds["unlisted"].shard == "episodes-00007.jsonl"


def test_an_edited_manifest_count_is_reported(run):
    m = json.loads((run / "manifest.json").read_text())
    m["n_episodes"] = N + 1
    m["shards"][0]["n_episodes"] = N + 1
    (run / "manifest.json").write_text(json.dumps(m))
    assert {p.kind for p in TrajectoryStore(run, readonly=True).problems} == {"line_count"}


def test_a_resumed_collect_refuses_a_damaged_run(run):
    flip_a_byte(run)
    with pytest.raises(IntegrityError, match="refusing to resume.*fails verification"):
        collect(CollectConfig(env_id=ENV, episodes=N + 2, out=run, progress=False))
    assert len(list(TrajectoryStore(run, readonly=True).episodes())) == N  # nothing appended


def test_repeated_opens_use_the_hash_cache_and_an_edit_that_keeps_the_mtime_is_still_seen(run, monkeypatch):
    calls = []
    real = store_files.digest
    monkeypatch.setattr(store_files, "digest", lambda p: calls.append(p) or real(p))
    with TrajectoryStore(run) as w:  # the copy has new inodes: the writer hashes once and caches it
        assert w.problems == []
    assert len(calls) == 1
    for _ in range(3):
        assert TrajectoryStore(run, readonly=True).problems == []
    assert len(calls) == 1, "unchanged shards are not hashed again"
    p = _shard(run)
    st = p.stat()
    flip_a_byte(run)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide the edit from mtime (size is unchanged too)
    assert [x.kind for x in TrajectoryStore(run, readonly=True).problems] == ["changed"]
    assert len(calls) == 2


def test_train_sft_refuses_a_damaged_run_before_loading_a_model(run, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    delete_a_line(run)
    res = _cli("train", "sft", str(run), "--model-dir", str(model), "--out", str(tmp_path / "sft"))
    assert res.exit_code == 2 and "fails verification" in res.output and "--allow-unverified" in res.output
    assert not (tmp_path / "sft").exists()


@pytest.mark.parametrize("entry", [{"lines": "two"}, {"lines": None}, {"lines": 1.5}, {"lines": True}, {"lines": -1},
                                   {"sha256": 7}, {"sha256": None}])
def test_a_malformed_hash_cache_entry_is_a_miss_not_a_crash(run, monkeypatch, entry):
    with TrajectoryStore(run):  # caches the shard's hash
        pass
    cache_file = run / store_files.HASH_CACHE
    cache = json.loads(cache_file.read_text())
    (name,) = cache
    cache[name].update(entry)  # the stat still matches the shard
    cache_file.write_text(json.dumps(cache))
    store_files.forget_digests()  # what this process hashed itself would be trusted before the file
    calls = []
    real = store_files.digest
    monkeypatch.setattr(store_files, "digest", lambda p: calls.append(p) or real(p))
    with TrajectoryStore(run) as w:  # a writer reads .hashes.json (a reader never does)
        assert w.problems == []
    assert len(calls) == 1  # hashed again
    ro = TrajectoryStore(run, readonly=True)
    assert ro.problems == [] and len(list(ro.episodes())) == N
    for cmd in (["verify", str(run)], ["dataset", "sft", str(run), "--out", str(run.parent / "ds")]):
        res = _cli(*cmd)
        assert res.exit_code == 0, res.output


def test_newlines_counted_from_the_lines_as_from_their_join():
    """The running digest counts each line's newlines the fast way; any mix of lines counts as the joined bytes do."""
    import random

    from rowgym.store.files import count_newlines

    rng = random.Random(7)
    pieces = [b"", b"\n", b"\n\n", b"x", b'{"a": 1}\n', b"a\nb", b"a\nb\n", b"\nx\n", b"\xff\n"]
    for _ in range(500):
        lines = [rng.choice(pieces) * rng.randint(1, 3) for _ in range(rng.randint(0, 6))]
        assert count_newlines(lines) == b"".join(lines).count(b"\n"), lines
