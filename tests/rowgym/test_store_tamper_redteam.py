"""Red team: a run whose manifest was rewritten to match tampered shards, or whose hash cache was
forged, must still fail verification everywhere a dataset is built (not only in `rowgym verify`);
and odd `rowgym collect` arguments are one-line errors, not tracebacks or hangs."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rowgym.cli import app
from rowgym.errors import SplitError
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.splits import MAX_SEED_INDEX, HashSplits, check_seed_range
from rowgym.store import HASH_CACHE, IntegrityError, TrajectoryStore
from rowgym.store.files import stat_key
from rowgym.trainers.datasets import load_episodes

pytestmark = pytest.mark.redteam

ENV = "rowgym/ToolAPI-Retail-v0"
N = 6
SHARD = "episodes-00000.jsonl"


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


def _cli(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output and (res.exception is None or isinstance(res.exception, SystemExit)), \
        res.output
    return res


def _reseal(run: Path, data: bytes) -> None:
    """Write ``data`` as the run's only shard and rewrite the manifest to match it (what a tamperer does)."""
    (run / "shards" / SHARD).write_bytes(data)
    m = json.loads((run / "manifest.json").read_text())
    n = data.count(b"\n")
    m["shards"] = [{"name": SHARD, "sha256": hashlib.sha256(data).hexdigest(), "n_episodes": n}]
    m["n_episodes"] = n
    (run / "manifest.json").write_text(json.dumps(m))
    (run / HASH_CACHE).unlink(missing_ok=True)


def _edit_manifest(run: Path, f) -> None:
    m = json.loads((run / "manifest.json").read_text())
    f(m)
    (run / "manifest.json").write_text(json.dumps(m))


def _assert_refused_everywhere(run: Path, tmp_path: Path, kind: str) -> None:
    """`rowgym verify` reports ``kind``, and neither the loader nor `rowgym dataset sft` builds from the run."""
    res = _cli("verify", str(run))
    assert res.exit_code == 1 and f"FAIL {kind}" in res.output, res.output
    with pytest.raises(IntegrityError, match="fails verification"):
        load_episodes(run)
    out = tmp_path / "ds"
    res = _cli("dataset", "sft", str(run), "--out", str(out))
    assert res.exit_code == 2 and "fails verification" in res.output, res.output
    assert not (out / "provenance.json").exists()


# ------------------------------------------------------------------ F6: NaN in a stored line
@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_a_nan_reward_in_a_resealed_shard_is_quarantined_not_read(run, tmp_path, literal):
    data = (run / "shards" / SHARD).read_bytes()
    lines = data.splitlines(keepends=True)
    lines[0], n = re.subn(rb'"verdict":\{"reward":[-0-9.eE+]+', b'"verdict":{"reward":' + literal, lines[0], count=1)
    assert n == 1
    _reseal(run, b"".join(lines))
    ro = TrajectoryStore(run, readonly=True)
    eps = list(ro.episodes())
    assert len(eps) == N - 1 and all(e.verdict is None or e.verdict.reward == e.verdict.reward for e in eps)
    ((shard, line),) = ro.quarantined
    assert (shard, line) == (SHARD, 0) and "NaN" in str(ro.quarantined[shard, line])
    _assert_refused_everywhere(run, tmp_path, "malformed")


def test_the_words_nan_and_infinity_inside_a_string_are_still_read(run):
    data = (run / "shards" / SHARD).read_bytes()
    data = data.replace(b'"instruction":"', b'"instruction":"NaN Infinity -Infinity ', 1)
    _reseal(run, data)
    ro = TrajectoryStore(run, readonly=True)
    assert ro.verify() == [] and len(list(ro.episodes())) == N and ro.quarantined == {}


# ------------------------------------------------------------------ F4: forged hash cache
def test_a_forged_hash_cache_entry_does_not_hide_an_edited_shard(run, tmp_path):
    shard = run / "shards" / SHARD
    sealed = json.loads((run / "manifest.json").read_text())["shards"][0]
    lines = shard.read_bytes().splitlines(keepends=True)
    lines[1] = lines[0]  # an episode stored twice, one dropped: same line count
    shard.write_bytes(b"".join(lines))
    cache = {SHARD: {"stat": stat_key(shard.stat()), "sha256": sealed["sha256"], "lines": len(lines)}}
    (run / HASH_CACHE).write_text(json.dumps(cache))
    assert "changed" in {p.kind for p in TrajectoryStore(run, readonly=True).verify(fast=True)}
    _assert_refused_everywhere(run, tmp_path, "changed")


def test_a_reader_never_reads_the_runs_hash_cache(run, monkeypatch):
    from rowgym.store import files as store_files

    with TrajectoryStore(run):  # the writer keeps .hashes.json
        pass
    assert (run / HASH_CACHE).exists()
    store_files.forget_digests()
    calls = []
    real = store_files.digest
    monkeypatch.setattr(store_files, "digest", lambda p: calls.append(p) or real(p))
    for _ in range(3):  # hashed once by this process, then its own digest is trusted
        assert TrajectoryStore(run, readonly=True).problems == []
    assert len(calls) == 1


# ------------------------------------------------------------------ S1a: a malformed line in a resealed shard
def test_an_invalid_utf8_line_in_a_resealed_shard_fails_the_dataset_build(run, tmp_path):
    data = (run / "shards" / SHARD).read_bytes()
    _reseal(run, data.replace(b'"instruction":"', b'"instruction":"\xff', 1))
    assert TrajectoryStore(run, readonly=True).verify(fast=True) == []  # the fast check does not parse it...
    _assert_refused_everywhere(run, tmp_path, "malformed")  # ...but reading it is a verification failure
    eps, _ = load_episodes(run, allow_unverified=True)  # the override still skips it and reads the rest
    assert len(eps) == N - 1
    # ...and a dataset built with it says so (the fast check alone found nothing: it was marked verified)
    out = tmp_path / "ds-override"
    res = _cli("dataset", "sft", str(run), "--out", str(out), "--allow-unverified", "--min-reward", "0")
    assert res.exit_code == 0, res.output
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["unverified"] is True and "not an episode" in json.dumps(prov["integrity_problems"]), prov


# ------------------------------------------------------------------ S1b: manifest shard names, torn shards
def test_a_shard_name_outside_the_run_is_refused(run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run, other)
    escape = f"../../{other.name}/shards/{SHARD}"
    assert (run / "shards" / escape).resolve() == (other / "shards" / SHARD).resolve()
    _edit_manifest(run, lambda m: (m["shards"].append({**m["shards"][0], "name": escape}),
                                   m.update(n_episodes=2 * N)))
    problems = TrajectoryStore(run, readonly=True).verify()
    assert any(p.kind == "manifest" and escape in p.detail for p in problems), problems
    _assert_refused_everywhere(run, tmp_path, "manifest")


def test_a_shard_listed_twice_is_refused(run, tmp_path):
    _edit_manifest(run, lambda m: m.update(shards=m["shards"] * 2, n_episodes=2 * N))
    _assert_refused_everywhere(run, tmp_path, "manifest")


def test_a_sealed_shard_with_a_torn_last_line_is_reported(run, tmp_path):
    _reseal(run, (run / "shards" / SHARD).read_bytes()[:-1])  # the manifest counts the complete lines
    assert {p.kind for p in TrajectoryStore(run, readonly=True).problems} == {"torn"}
    _assert_refused_everywhere(run, tmp_path, "torn")


# ------------------------------------------------------------------ C2: odd collect arguments
@pytest.mark.parametrize("args, msg", [
    (["http://[::1", "--episodes", "1"], "is not a valid URL"),
    (["http://127.0.0.1:99999/x-v0", "--episodes", "1"], "is not a valid URL"),
    ([ENV, "--seed-offset", str(2**63 - 1), "--episodes", "2"], "--seed-offset"),
    ([ENV, "--seed-offset", "9" * 23, "--episodes", "1"], "--seed-offset"),
    ([ENV, "--episodes", "9" * 20], "--episodes"),
    ([ENV, "--episodes", str(MAX_SEED_INDEX + 1)], "--episodes"),
    ([ENV, "--seed-offset", str(MAX_SEED_INDEX), "--episodes", "1"], "--seed-offset"),
])
def test_odd_collect_arguments_are_a_quick_one_line_error(tmp_path, args, msg):
    out = tmp_path / "run"
    t0 = time.monotonic()
    res = _cli("collect", *args, "--no-progress", "--out", str(out))
    assert time.monotonic() - t0 < 10
    assert res.exit_code == 2 and res.output.startswith("error: ") and msg in res.output, res.output
    assert not out.exists()


def test_hash_splits_refuse_a_seed_walk_past_the_limit():
    s = HashSplits("toolapi-retail")
    for n, start in ((1, 2**63 - 1), (10**20, 0), (1, MAX_SEED_INDEX)):
        t0 = time.monotonic()
        with pytest.raises(SplitError, match="past the last seed index"):
            s.seeds("train", n, start=start)
        assert time.monotonic() - t0 < 1
    check_seed_range(3, start=MAX_SEED_INDEX - 3)  # the last seeds that may be asked for
