"""The GRPO loop on the real data path (HF policy in process, tiny model): one run store, the staleness
bound, and kill -9 + --resume training every group exactly once."""

import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("trl")

from rowgym.store import TrajectoryStore  # noqa: E402
from rowgym.trainers.rl.record import ConsumptionRecord  # noqa: E402

pytestmark = [pytest.mark.train, pytest.mark.slow]
ENV = "rowgym/ToolAPI-Home-v0"
SMALL = ["--generations", "2", "--prompts-per-step", "2", "--turn-tokens", "12", "--max-turns", "2",
         "--lr", "1e-3", "--local-weight", "1.0", "--credit", "turn"]


def _train(out, *extra, env=None):
    cmd = [sys.executable, "-m", "rowgym.cli", "train", "grpo", ENV, "--out", str(out), *SMALL, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})


def _turn_versions(run_dir):
    """episode id -> the policy-version steps of its turns, read from the run store's rows."""
    return {e.episode_id: [s.tokens.policy_version.step for s in e.steps if s.tokens is not None]
            for e in TrajectoryStore(run_dir, readonly=True).episodes()}


def _check_run(out, steps, k):
    store = TrajectoryStore(out / "run", readonly=True)
    assert store.verify() == []
    assert store.manifest.identity is not None and store.manifest.source.group_size == 2
    entries = ConsumptionRecord(out / "consumption.jsonl").entries()
    assert [e["step"] for e in entries] == list(range(1, steps + 1))
    consumed = ConsumptionRecord(out / "consumption.jsonl").consumed_groups()  # raises on a group trained twice
    stored_groups = {e.group_id for e in store.episodes()}
    assert set(consumed) == stored_groups and len(stored_groups) == 2 * steps
    versions = _turn_versions(out / "run")
    lags = []
    for e in entries:
        trainer_version = e["step"] - 1
        for eid in e["episode_ids"]:
            for v in versions[eid]:
                assert trainer_version - k <= v <= trainer_version, (e["step"], eid, v)
                lags.append(trainer_version - v)
    return entries, lags


def test_staleness_bound_holds_with_k1(tmp_path):
    out = tmp_path / "g"
    r = _train(out, "--steps", "3", "--max-staleness", "1")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    entries, lags = _check_run(out, 3, k=1)
    # the collectors ran ahead: batch 1 started on version 0 while step 1 trained
    assert max(lags) == 1
    assert entries[0]["new_version"]["weights_hash"] != entries[1]["new_version"]["weights_hash"]


def test_kill9_then_resume_trains_every_group_once(tmp_path):
    out = tmp_path / "g"
    # SIGKILL after step 2 is recorded but before its checkpoint: step 2's training is lost with the process
    r = _train(out, "--steps", "3", env={"ROWGYM_RL_CRASH": "after_record:2"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    before = ConsumptionRecord(out / "consumption.jsonl").entries()
    assert [e["step"] for e in before] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.endswith(".tmp")) == ["step-000001"]
    r = _train(out, "--steps", "3")
    assert r.returncode != 0 and "--resume" in r.stdout + r.stderr  # refuses to start over an existing run
    r = _train(out, "--steps", "3", "--resume")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "resuming after optimizer step 1" in r.stdout
    entries, lags = _check_run(out, 3, k=0)
    assert set(lags) == {0}  # k = 0: every turn sampled by the version being trained
    assert entries[1]["group_ids"] == before[1]["group_ids"]  # step 2 consumed the same groups again, once
    # a second crash right after a checkpoint, then resume: nothing is trained twice either
    r = _train(out, "--steps", "4", "--resume", env={"ROWGYM_RL_CRASH": "after_checkpoint:4"})
    assert r.returncode == -signal.SIGKILL
    r = _train(out, "--steps", "4", "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    _check_run(out, 4, k=0)
    res = json.loads((out / "grpo_result.json").read_text())
    assert res["start_step"] == 4 and res["step_rewards"] == []
