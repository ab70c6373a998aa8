"""The work dir's git repository comes from a .git made once per snapshot on the host (no git run per reset)."""

from __future__ import annotations

import subprocess

import pytest

from rowgym.envs.repopatch.families import CorpusEnv
from rowgym.envs.repopatch.task import Base, RepoPatchTask, SnapshotCache, read_tree
from rowgym.sandboxes import SandboxError


def _task() -> RepoPatchTask:
    return RepoPatchTask(instance_id="t", source="corpus", repo="r",
                         base=Base(files={"pkg/a.py": "x = 1\n", "tests/test_a.py": "def test_a():\n    pass\n"}),
                         problem_statement="p", fail_to_pass=["tests/test_a.py::test_a"])


def test_git_dir_is_beside_the_snapshot_and_holds_one_commit_of_it(tmp_path) -> None:
    cache = SnapshotCache()
    try:
        task = _task()
        git = cache.git_dir(task)
        snap = cache.get(task)
        assert git is not None and git.parent == snap.parent
        assert not (snap / ".git").exists(), "the snapshot (what grading copies) stays free of .git"
        assert cache.git_dir(task) == git, "made once, then reused"
        assert not (git / "hooks").exists(), "no template hooks"
        assert str(snap.parent) not in (git / "config").read_text(), "no host path (work tree) in the config"
        files = subprocess.run(["git", "--git-dir", str(git), "ls-tree", "-r", "--name-only", "HEAD"],
                               capture_output=True, text=True, check=True).stdout.split()
        assert sorted(files) == sorted(read_tree(snap))
        log = subprocess.run(["git", "--git-dir", str(git), "log", "--format=%an %s"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        assert log == ["rowgym task snapshot"]
    finally:
        cache.close()


@pytest.mark.docker
def test_reset_work_dir_is_a_clean_repository_and_diff_sees_edits() -> None:
    try:
        env = CorpusEnv(pool_size=1)
        env.reset(seed=0)
    except SandboxError as exc:
        pytest.skip(f"no sandbox backend: {exc}")
    try:
        obs, *_ = env.step({"name": "run", "arguments": {"command": "git status --porcelain; git log --oneline | wc -l"}})
        assert obs.split()[-1] == "1" and "??" not in obs and " M " not in obs, obs
        path = next(p for p in read_tree(env.snapshots.get(env.task)) if p.endswith(".py") and "test" not in p)
        env.step({"name": "write_file", "arguments": {"path": path, "content": "changed = True\n"}})
        obs, *_ = env.step({"name": "run", "arguments": {"command": "git diff --name-only"}})
        assert path in obs, obs
    finally:
        env.close()
