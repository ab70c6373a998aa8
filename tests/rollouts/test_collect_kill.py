"""SIGKILL a running collection, run it again: every episode exactly once."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

from rowgym.store import TrajectoryStore

N = 60


def _collect(out, extra=()):
    return [sys.executable, "-m", "rowgym.cli", "collect", "rowgym/ToolAPI-Airline-v0", "--episodes", str(N),
            "--group-size", "2", "--concurrency", "3", "--out", str(out), "--no-progress", *extra]


def test_sigkill_mid_run_then_resume_has_no_duplicates_and_no_gaps(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_collect(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    shards = out / "shards"
    deadline = time.time() + 120
    # wait until some episodes are durable, then kill without warning
    while time.time() < deadline:
        done = sum(p.read_bytes().count(b"\n") for p in shards.glob("*")) if shards.exists() else 0
        if done >= 10:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = TrajectoryStore(out).completed_ids()
    assert 10 <= len(partial) < 2 * N, "the kill should land mid-run"

    again = subprocess.run(_collect(out), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    store = TrajectoryStore(out)
    ids = [e.episode_id for e in store.episodes()]
    raw_lines = sum(p.read_bytes().count(b"\n") for p in (out / "shards").glob("*.jsonl"))
    assert raw_lines == len(ids) == 2 * N, "no duplicates written, none missing"
    assert max(Counter(ids).values()) == 1
    assert set(partial) <= set(ids)
    seeds = Counter(e.seed for e in store.episodes())
    assert set(seeds.values()) == {2}, "each seed has its full group of 2"
    assert store.manifest.status == "complete" and store.verify() == []
    assert f"({len(partial)} already in the store)" in again.stdout
