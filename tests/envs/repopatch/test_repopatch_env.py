"""Repo-patch env end to end in a real sandbox: gold -> 1, empty -> 0, test edits flagged, hidden tests hidden."""

from __future__ import annotations

import asyncio
import json

import pytest

import rowgym
from rowgym.rows import Split

pytestmark = pytest.mark.docker


def test_gold_and_empty(env) -> None:
    seed = env.splits.seeds(Split.DEV, 1)[0]
    env.reset(seed=seed)
    rewards = []
    for c in env.task.gold:
        obs, r, term, trunc, info = env.step(c)
        rewards.append(r)
    assert term and info["verdict"].reward == 1.0 and not info["verdict"].flags
    assert rewards[0] > 0.02, "an applied edit earns a local reward"
    env.reset(seed=seed)
    *_, info = env.step({"name": "submit", "arguments": {}})
    assert info["verdict"].reward == 0.0
    assert any(not c.passed and "FAIL_TO_PASS" in c.detail for c in info["verdict"].checks)


def test_test_edits_are_dropped_and_flagged(env) -> None:
    env.reset(seed=1)
    env.step({"name": "write_file", "arguments": {"path": "conftest.py", "content": "collect_ignore_glob = ['*']\n"}})
    env.step({"name": "write_file", "arguments": {"path": "tests/test_basic.py", "content": ""}})
    *_, info = env.step({"name": "submit", "arguments": {}})
    assert info["verdict"].reward == 0.0 and info["verdict"].flags == ["edited_tests", "suspicious"]  # conftest: tooling


def test_hidden_tests_unreachable(env) -> None:
    """Security: no tool can find the hidden tests from inside the agent's sandbox."""
    env.reset(seed=0)
    task = env.task
    (hidden_path,) = task.hidden_files
    marker = next(line.split("(")[0].removeprefix("def ").strip()
                  for line in task.hidden_files[hidden_path].splitlines() if line.startswith("def test_"))
    probes = [
        ("list_files", {"path": "."}),
        ("list_files", {"path": "tests"}),
        ("search", {"pattern": marker, "path": "."}),
        ("read_file", {"path": hidden_path}),
        ("read_file", {"path": "/" + hidden_path}),
        ("read_file", {"path": "../" + hidden_path}),
        ("run", {"command": f"grep -rIl {marker} / 2>/dev/null | head; echo done"}),
        ("run", {"command": f"find / -name '{hidden_path.rsplit('/', 1)[-1]}' 2>/dev/null; echo done"}),
        ("run", {"command": "env; git log --all --stat | head -50; cat /proc/1/environ | tr '\\0' '\\n'"}),
        ("run", {"command": "python3 -m pytest -q 2>&1 | tail -3"}),
    ]
    for name, args in probes:
        obs, *_ = env.step({"name": name, "arguments": args})
        assert marker not in obs, f"{name}({args}) leaked the hidden test"
        assert hidden_path.rsplit("/", 1)[-1] not in obs or obs.startswith("Error"), f"{name}({args}) leaked the path"


def test_checker_on_corpus_sample() -> None:
    from rowgym.evals.checker import check_env

    report = check_env("rowgym/RepoPatch-Corpus-v0", n_seeds=2, random_episodes=3)
    assert report.ok, "\n".join(f"{r.name}: {r.detail}" for r in report.failed())


def test_swebench_example_env(tmp_path) -> None:
    from rowgym.envs.repopatch.swebench import example_instances

    e = rowgym.make("rowgym/RepoPatch-SWEBench-v0", instances_path=str(example_instances(tmp_path)), pool_size=1)
    try:
        e.reset(seed=0)
        obs, *_ = e.step({"name": "run", "arguments": {"command": "ls tests; grep -r divide_by_zero . ; echo end"}})
        assert "test_divide_by_zero" not in obs
        for c in e.task.gold:
            *_, info = e.step(c)
        assert info["verdict"].reward == 1.0
        checks = {c.name: c.passed for c in info["verdict"].checks}
        assert checks == {"tests/test_calc.py::test_divide_by_zero": True, "tests/test_calc.py::test_add": True}
        assert json.loads(e.task.gold[0].arguments)["path"] == "calc.py"
    finally:
        e.close()


def test_synth_sample_gold_and_empty() -> None:
    """A small synthesized sample (ROWGYM_SYNTH_TASKS-sized build): gold -> 1, empty -> 0."""
    from rowgym.envs.repopatch.verify import verify_tasks

    e = rowgym.make("rowgym/RepoPatch-Synth-v0", n_tasks=3)
    tasks = e.task_list
    e.close()
    assert len({t.repo for t in tasks}) >= 2
    rows = asyncio.run(verify_tasks(tasks, workers=2, progress=False))
    assert all(g == 1.0 and z == 0.0 for _, g, z, _ in rows), rows
