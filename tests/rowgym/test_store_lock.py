"""One writer per run directory: an flock held for the writer's life, readers never touch it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from rowgym.store import LOCK_FILE, RunLockedError, TrajectoryStore

pytestmark = pytest.mark.redteam

ENV = "rowgym/ToolAPI-Airline-v0"


def _wait_for(cond, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _holder(run: Path) -> dict:
    try:
        return json.loads((run / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return {}


def test_a_second_writer_is_refused_naming_the_holder_and_readers_never_block(tmp_path):
    with TrajectoryStore(tmp_path) as writer:
        assert writer.lock.held
        assert _holder(tmp_path)["pid"] == os.getpid() and _holder(tmp_path)["host"]
        with pytest.raises(RunLockedError, match=f"being written by pid {os.getpid()} on "):
            TrajectoryStore(tmp_path)
        before = (tmp_path / LOCK_FILE).stat().st_mtime_ns
        ro = TrajectoryStore(tmp_path, readonly=True)  # does not wait, does not take the lock
        assert list(ro.episodes()) == [] and not ro.lock.held
        assert (tmp_path / LOCK_FILE).stat().st_mtime_ns == before
    with TrajectoryStore(tmp_path) as again:  # released by close()
        assert again.lock.held


def test_a_dead_writers_lock_is_released_by_the_kernel(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from rowgym.store import TrajectoryStore
        s = TrajectoryStore({str(tmp_path)!r})
        print("locked", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            TrajectoryStore(tmp_path)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with TrajectoryStore(tmp_path) as s:  # no stale-lock cleanup needed: flock died with the process
        assert s.lock.held and _holder(tmp_path)["pid"] == os.getpid()


GATED_AGENT = '''
import asyncio, os
from rowgym.registry import load_object, spec

Base = load_object(spec("rowgym/ToolAPI-Airline-v0").expert)


class Gated(Base):
    """The airline expert, holding its first action until the test opens the gate."""

    async def act(self, obs):
        while not os.path.exists(os.environ["ROWGYM_TEST_GATE"]):
            await asyncio.sleep(0.01)
        return await super().act(obs)
'''


def test_two_concurrent_collects_on_one_dir(tmp_path, rowgym_cli):
    """The second collect is refused naming the first one's pid; the first completes and verifies."""
    (tmp_path / "gated_agent.py").write_text(GATED_AGENT)
    gate, out = tmp_path / "gate", tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "ROWGYM_TEST_GATE": str(gate)}
    cmd = [*rowgym_cli, "collect", ENV, "--agent", "gated_agent:Gated", "--episodes", "20", "--group-size", "2",
           "--concurrency", "4", "--out", str(out), "--no-progress"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _holder(out).get("pid") == first.pid, what="the first collect to take the lock")
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        text = second.stdout + second.stderr
        assert f"being written by pid {first.pid}" in text and "Traceback" not in text
        assert len(text.strip().splitlines()) == 1, text
    finally:
        gate.touch()
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    verify = subprocess.run([*rowgym_cli, "verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0 and "40 episodes" in verify.stdout, verify.stdout
    store = TrajectoryStore(out, readonly=True)
    ids = [e.episode_id for e in store.episodes()]
    lines = sum(p.read_bytes().count(b"\n") for p in (out / "shards").iterdir())
    assert len(ids) == lines == 40 and max(Counter(ids).values()) == 1
    assert store.manifest.status == "complete" and store.verify() == []
