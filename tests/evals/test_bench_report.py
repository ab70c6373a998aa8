"""Bench runner and reports: files, contents, viewer, leaderboard, split guard, resume."""

import json
import re

import pytest

from rowgym.errors import SplitError
from rowgym.evals.runner import parse_agent, run_bench

RETAIL = "rowgym/ToolAPI-Retail-v0"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "b1"
    return run_bench([RETAIL], ["expert", "random"], episodes=3, attempts=2, out_dir=out, progress=False,
                     concurrency=2)


def test_report_files_and_contents(bench):
    out = bench.out_dir
    for name in ("report.md", "report.html", "metrics.json", "bench.json"):
        assert (out / name).exists(), name
    md = (out / "report.md").read_text()
    assert "heldout" in md and "ToolAPI-Retail-v0" in md and "| expert |" in md and "| random |" in md
    page = (out / "report.html").read_text()
    assert "SPLIT: HELDOUT" in page and "Episode viewer" in page
    assert page.count("<svg") >= 3                      # success, reward, turns (+ outcomes)
    assert "<details" in page and "find_user_id_by" in page  # the viewer shows the expert's actions
    for ep_id in bench.groups[0].episode_ids["all"]:
        assert f'id="{ep_id}"' in page                  # every episode has an anchor
    assert not re.search(r'(src|href)="(https?:)?//', page) and "url(http" not in page  # self-contained
    assert "<script" not in page


def test_metrics_are_traceable(bench):
    metrics = json.loads((bench.out_dir / "metrics.json").read_text())
    by_agent = {g["agent"]: g for g in metrics["groups"]}
    assert by_agent["expert"]["success_rate"] == 1.0 and by_agent["random"]["success_rate"] == 0.0
    expert = by_agent["expert"]
    assert len(expert["episode_ids"]["success"]) == expert["n_episodes"] == 6
    stored = {json.loads(line)["episode_id"] for p in bench.runs[0].run_dir.glob("shards/*.jsonl")
              for line in p.read_text().splitlines()}
    assert set(expert["episode_ids"]["all"]) == stored
    assert all(v["n"] == 2 for v in expert["per_task"].values())


def test_leaderboard_accumulates_and_upserts(bench, tmp_path):
    lb = bench.reports["leaderboard"]
    assert lb == bench.out_dir.parent / "leaderboard.jsonl"
    lines = [json.loads(line) for line in lb.read_text().splitlines()]
    assert [(x["env_id"], x["agent"]) for x in lines] == [(RETAIL, "expert"), (RETAIL, "random")]
    first = lines[0]
    assert first["split"] == "heldout" and first["seed_set_hash"] and first["run_id"] == bench.runs[0].manifest.run_id
    assert first["metrics"]["success_rate"] == 1.0 and first["contamination_checked"] is False
    # re-running the same bench resumes (nothing replayed) and replaces its lines, not duplicates them
    again = run_bench([RETAIL], ["expert", "random"], episodes=3, attempts=2, out_dir=bench.out_dir, progress=False)
    assert again.bench_id == bench.bench_id
    assert len(lb.read_text().splitlines()) == 2
    # another bench in the same results dir adds its lines
    run_bench([RETAIL], ["random"], episodes=2, out_dir=bench.out_dir.parent / "b2", progress=False)
    assert len(lb.read_text().splitlines()) == 3


def test_other_split_needs_flag_and_is_marked(tmp_path):
    with pytest.raises(SplitError, match="allow"):
        run_bench([RETAIL], ["expert"], episodes=2, split="dev", out_dir=tmp_path / "d", progress=False)
    res = run_bench([RETAIL], ["expert"], episodes=2, split="dev", allow_split=True, out_dir=tmp_path / "d",
                    progress=False)
    assert res.runs[0].manifest.source.split == "dev"
    assert "SPLIT: DEV" in (tmp_path / "d" / "report.html").read_text()
    assert "WARNING — split: DEV" in (tmp_path / "d" / "report.md").read_text()


def test_parse_agent_spec():
    assert parse_agent("random") == ("random", {})
    assert parse_agent("pkg.mod:Cls,skill=0.5,name=x") == ("pkg.mod:Cls", {"skill": 0.5, "name": "x"})
