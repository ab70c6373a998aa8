"""`rowgym bench` end to end through the real CLI: expert and random on both tool-API envs."""

import json
import subprocess

ENVS = ["rowgym/ToolAPI-Retail-v0", "rowgym/ToolAPI-Airline-v0"]


def test_bench_cli_smoke(rowgym_cli, tmp_path):
    out = tmp_path / "results" / "smoke"
    cmd = [*rowgym_cli, "bench", "--env", ENVS[0], "--env", ENVS[1], "--agent", "expert", "--agent", "random",
           "--episodes", "3", "--attempts", "2", "--concurrency", "2", "--out", str(out), "--no-progress"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "split heldout" in p.stdout and "pass@2" in p.stdout and "pass^2" in p.stdout
    for env in ("ToolAPI-Retail-v0", "ToolAPI-Airline-v0"):
        assert env in p.stdout
    assert str(out / "report.html") in p.stdout and "leaderboard" in p.stdout
    lines = [json.loads(x) for x in (tmp_path / "results" / "leaderboard.jsonl").read_text().splitlines()]
    assert {(x["env_id"], x["agent"]) for x in lines} == {(e, a) for e in ENVS for a in ("expert", "random")}
    assert {x["agent"]: x["metrics"]["success_rate"] for x in lines if x["env_id"] == ENVS[1]} == \
        {"expert": 1.0, "random": 0.0}
    assert len(list((out / "runs").iterdir())) == 4


def test_bench_cli_bad_split_and_agent(rowgym_cli, tmp_path):
    base = [*rowgym_cli, "bench", "--env", ENVS[0], "--episodes", "1", "--out", str(tmp_path / "b"), "--no-progress"]
    p = subprocess.run([*base, "--agent", "expert", "--split", "train"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--allow-split" in p.stdout
    p = subprocess.run([*base, "--agent", "nobody"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "unknown agent" in p.stdout
