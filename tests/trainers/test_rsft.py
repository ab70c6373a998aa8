"""RSFT from grouped runs: accepted samples carry their group's record; held-out runs are refused."""

import json

import pytest
from typer.testing import CliRunner

from rowgym.cli import app
from rowgym.errors import HeldOutLeakError
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.rows import Failure
from rowgym.store import TrajectoryStore
from rowgym.trainers.datasets import episode_groups
from rowgym.trainers.gates import GateConfig
from rowgym.trainers.rsft import build_rsft_dataset, failure_kind, rsft_candidates

ENV = "rowgym/ToolAPI-Retail-v0"
FLAKY = "rowgym.evals.demo:FlakyExpert"


def grouped_run(root, split="train", episodes=4, k=4, env=ENV):
    """k samples per seed from an agent whose samples of one seed differ (one worker: one random stream)."""
    return collect(CollectConfig(env_id=env, agent=FLAKY, split=split, episodes=episodes, group_size=k, out=root,
                                 concurrency=1, progress=False, agent_kwargs={"noise": 0.3})).out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return grouped_run(tmp_path_factory.mktemp("rsft") / "run")


@pytest.fixture(scope="module")
def groups(run):
    return episode_groups(TrajectoryStore(run, readonly=True).episodes())


def test_run_has_mixed_groups(groups):
    # the fixture is what the other tests need: k=4 samples per seed, some groups with passes and failures
    assert len(groups) == 4 and all(len(g) == 4 for g in groups.values())
    assert any(0 < sum(e.success for e in g) < 4 for g in groups.values())


def test_records_carry_candidates_accepted_rejections_and_hard_negatives(run, groups):
    rows, _, _, summary = rsft_candidates(run, n_hard_negatives=2)
    n_success = sum(e.success for g in groups.values() for e in g)
    assert len(rows) == n_success == summary.n_accepted and summary.n_candidates == 16
    for r in rows:
        group = groups[r["group_id"]]
        ep = next(e for e in group if e.episode_id == r["episode_id"])
        assert ep.success and r["seed"] == ep.seed and r["messages"][-1]["role"] == "assistant"
        assert r["candidates"] == len(group) == 4
        assert r["accepted"] == sum(e.success for e in group)
        assert r["accepted"] + r["rejected_count"] == r["candidates"]
        assert (r["checker_name"], r["checker_version"]) == (ep.verdict.verifier, ep.verdict.verifier_version)
        # one rejection reason per rejected sample of this group, with the grader's failed checks
        failed = {e.episode_id: e for e in group if not e.success}
        assert {x["episode_id"] for x in r["rejection_reasons"]} == set(failed)
        for x in r["rejection_reasons"]:
            assert x["failure_kind"] == "checks_failed"
            assert x["checks_failed"] == [c.name for c in failed[x["episode_id"]].verdict.checks if not c.passed]
            assert x["checks_failed"]
        # hard negatives: rejected samples of the same seed, closest miss first, with their conversations
        negs = r["hard_negatives"]
        assert len(negs) == min(2, len(failed))
        assert all(n["episode_id"] in failed and n["messages"][1] == r["messages"][1] for n in negs)
        assert [n["final_reward"] for n in negs] == sorted((n["final_reward"] for n in negs), reverse=True)


def test_max_per_task_and_min_reward(run, groups):
    rows, _, _, _ = rsft_candidates(run, max_per_task=1)
    assert len(rows) == sum(any(e.success for e in g) for g in groups.values())
    assert len({r["group_id"] for r in rows}) == len(rows)
    rows, _, _, s = rsft_candidates(run, min_reward=1.5)  # no pass reaches it: each is rejected as low_reward
    assert rows == [] and s.n_accepted == 0
    assert s.failure_kinds["low_reward"] == sum(e.success for g in groups.values() for e in g)


def test_failure_kind(groups):
    ep = next(e for g in groups.values() for e in g if e.success)
    assert failure_kind(ep) is None
    assert failure_kind(ep.model_copy(update={"failure": Failure(kind="sandbox", reason="x")})) == "sandbox"
    assert failure_kind(ep.model_copy(update={"verdict": None})) == "no_verdict"
    flagged = ep.model_copy(update={"verdict": ep.verdict.model_copy(update={"flags": ["suspicious"]})})
    assert failure_kind(flagged) == "flagged"
    bad = next(e for g in groups.values() for e in g if not e.success)
    assert failure_kind(bad) == "checks_failed"
    last = bad.steps[-1].model_copy(update={"terminated": False, "truncated": True})
    assert failure_kind(bad.model_copy(update={"steps": [*bad.steps[:-1], last]})) == "turn_limit"


def test_dataset_goes_through_gates_writes_manifests_and_feeds_sft(run, groups, tmp_path):
    from rowgym.trainers.sft import sft_rows

    path, report, rows, _ = build_rsft_dataset([run], tmp_path / "ds", cfg=GateConfig(quarantine_seeds=20))
    for name in ("data.jsonl", "provenance.json", "source.json", "processing.json", "consumption.json",
                 "isolation.json"):
        assert (path / name).exists(), name
    proc = json.loads((path / "processing.json").read_text())
    assert proc["builder"] == "rsft" and [g["name"] for g in proc["gates"]] == [
        "format", "semantic", "leakage", "distribution"]
    assert proc["params"]["rejection_sampling"]["n_candidates"] == 16
    assert report.n_generated == sum(e.success for g in groups.values() for e in g) and rows
    assert json.loads((path / "provenance.json").read_text())["kind"] == "rsft"
    # `rowgym train sft DIR` reads it unchanged (held-out check included)
    back = sft_rows(path)
    assert [r["episode_id"] for r in back] == [r["episode_id"] for r in rows]
    assert all("messages" in r and "tools" in r for r in back)


def test_heldout_runs_refused(tmp_path):
    ho = grouped_run(tmp_path / "ho", split="heldout", episodes=2, k=2)
    with pytest.raises(HeldOutLeakError):
        rsft_candidates(ho)
    with pytest.raises(HeldOutLeakError):
        rsft_candidates(ho, splits=("heldout",))
    res = CliRunner().invoke(app, ["dataset", "rsft", str(ho), "--out", str(tmp_path / "out")])
    assert res.exit_code != 0 and "held-out" in res.output
    assert not (tmp_path / "out" / "data.jsonl").exists()


def test_cli_builds_rsft(run, tmp_path):
    res = CliRunner().invoke(app, ["dataset", "rsft", str(run), "--out", str(tmp_path / "d"), "--quarantine-seeds",
                                   "20", "--hard-negatives", "1"])
    assert res.exit_code == 0, res.output
    assert "accepted conversations" in res.output and "rsft:" in res.output
    rows = [json.loads(line) for line in (tmp_path / "d" / "data.jsonl").read_text().splitlines()]
    assert rows and all(len(r["hard_negatives"]) <= 1 for r in rows)


@pytest.mark.train
def test_train_sft_reads_an_rsft_dataset(tiny_model_dir, tmp_path):
    pytest.importorskip("trl")
    from rowgym.trainers.sft import SFTOptions, train_sft

    run = grouped_run(tmp_path / "home", env="rowgym/ToolAPI-Home-v0")
    path, _, rows, _ = build_rsft_dataset([run], tmp_path / "ds", cfg=GateConfig(quarantine_seeds=20))
    res = train_sft(path, tiny_model_dir, tmp_path / "m", SFTOptions(max_steps=1, batch_size=2))
    assert res.n_rows == len(rows) > 0 and res.steps == 1
    cons = json.loads((tmp_path / "m" / "consumption.json").read_text())["consumed"][-1]
    assert cons["dataset"]["kind"] == "rsft" and set(cons["episode_ids"]) == {r["episode_id"] for r in rows}
