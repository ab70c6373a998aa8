"""Red team: a losing policy turns its episode into a grader or sandbox failure through its own work dir.

RL trains only on policy/timeout failures (trainers/rl/batching.py), so an episode that ends in a
GraderError or SandboxError drops out of its group: were that reachable from the work dir, erasing a
losing episode would be a strategy. Whatever the agent made of its work dir must be graded as the
agent's outcome (reward 0, a flag that says why) and ``env.step`` must not raise. Each attack leaves
the bug in place.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.redteam]

SEED = 3


def _run(env, command: str, timeout: float = 60) -> tuple[str, dict]:
    obs, _, term, _, info = env.step({"name": "run", "arguments": {"command": command, "timeout": timeout}})
    assert not term, obs
    return obs, info


def _submit(env):
    *_, info = env.step({"name": "submit", "arguments": {}})  # must not raise
    return info["verdict"]


def _pkg(env) -> str:
    return env.task.location.split("::")[0].split("/")[0]


def test_a_dir_replaced_by_a_file_is_the_agents_zero(env) -> None:
    """`rm -rf tests && echo x > tests`: staging once raised IsADirectoryError -> GraderError (with a host path)."""
    env.reset(seed=SEED)
    obs, _ = _run(env, "rm -rf tests && echo x > tests")
    assert "exit code 0" in obs, obs
    v = _submit(env)
    assert v.reward == 0.0 and "workdir_conflict" in v.flags, v.flags
    detail = next(c.detail for c in v.checks if c.name == "workdir_conflict")
    assert "tests" in detail and "/tmp" not in detail


def test_the_package_dir_replaced_by_a_file_is_the_agents_zero(env) -> None:
    env.reset(seed=SEED)
    pkg = _pkg(env)
    obs, _ = _run(env, f"rm -rf {pkg} && echo x > {pkg}")
    assert "exit code 0" in obs, obs
    v = _submit(env)  # applied like a checkout: the package is gone, the hidden tests fail
    assert v.reward == 0.0 and not v.success


def test_a_work_dir_filled_to_its_quota_is_the_agents_zero(env) -> None:
    """The grading copy (the agent's files + the hidden tests) did not fit an equal quota: SandboxError."""
    env.reset(seed=SEED)
    obs, _ = _run(env, "rm -rf .git && head -c 400M /dev/zero > blob.bin; df -k . | tail -1")
    assert " 100% " in obs, obs
    v = _submit(env)
    assert v.reward == 0.0 and "oversize_workdir" in v.flags, v.flags
    assert any(c.name == "workdir_size" and not c.passed for c in v.checks)


def test_visible_tests_in_a_full_work_dir_are_a_tool_error(env) -> None:
    """The harness config could not be written: SandboxError from run_visible_tests (an episode failure)."""
    env.reset(seed=SEED)
    obs, _ = _run(env, "head -c 400M /dev/zero > blob.bin; df -k . | tail -1")
    assert " 100% " in obs, obs
    obs, _, term, _, info = env.step({"name": "run_visible_tests", "arguments": {}})
    assert not term and info["error_kind"] is not None and "full" in obs, obs


def test_deep_nesting_is_listed_and_graded_as_the_agents_zero(env) -> None:
    """1,200 nested dirs: list_files crashed (RecursionError), grading raised GraderError and left its copy."""
    import glob

    env.reset(seed=SEED)
    obs, _ = _run(env, "python3 -c \"import os\nfor _ in range(1200): os.mkdir('d'); os.chdir('d')\n"
                       "open('x', 'w').close()\"")
    assert "exit code 0" in obs, obs
    before = set(glob.glob("/tmp/rowgym-rp-out-*"))
    obs, _, _, _, info = env.step({"name": "list_files", "arguments": {"path": "."}})
    assert info["error_kind"] is None and f"{_pkg(env)}/__init__.py" in obs, obs
    v = _submit(env)
    assert v.reward == 0.0 and "deep_workdir" in v.flags, v.flags
    assert set(glob.glob("/tmp/rowgym-rp-out-*")) <= before


def test_non_utf8_file_names_do_not_break_the_verdict(env) -> None:
    """Non-UTF-8 names reached check details and the diff as lone surrogates: the verdict could not be stored."""
    env.reset(seed=SEED)
    pkg = _pkg(env)
    obs, _ = _run(env, "python3 -c \"import os; open(b'tests/x\\xff.py', 'wb').write(b'pass'); "
                       f"open(b'{pkg}/y\\xfe.py', 'wb').write(b'pass')\"")
    assert "exit code 0" in obs, obs
    v = _submit(env)
    assert v.reward == 0.0 and "edited_tests" in v.flags, v.flags
    v.model_dump_json().encode()
    g = env.last_grade
    g.diff.encode()
    assert all(p.encode() for p in g.dropped) and any("\ufffd" in p for p in g.dropped)
