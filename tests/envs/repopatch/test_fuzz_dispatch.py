"""Fuzzing the repo-patch family's tool dispatch: 10,000 hostile calls, 0 exceptions, no Docker.

The sandbox is the real :class:`rowgym.sandboxes.Sandbox` (its race-free host-side file
operations on a real work dir) with ``exec`` replaced by a fake that runs nothing, so
every tool (``read_file``, ``write_file``, ``replace_in_file``, ``list_files``,
``search``, ``run``, ``run_visible_tests``, ``submit``) is dispatched with the calls of
``tests/fuzz_actions.py``. Grading (a second sandbox running hidden tests) is stubbed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from fuzz_actions import fuzz_env

import rowgym
from rowgym.envs.repopatch.grading import agent_changes
from rowgym.rows import Verdict
from rowgym.sandboxes import Sandbox
from rowgym.sandboxes.base import ExecResult, as_argv

pytestmark = pytest.mark.redteam  # agent input against the env's parsing, tools and storage

N_CALLS = 10_000


class FakeExecSandbox(Sandbox):
    """A sandbox whose files are real (a work dir under tmp) and whose commands run nowhere."""

    async def start(self) -> None:
        self.host_workdir.mkdir(parents=True, exist_ok=True)

    async def exec(self, cmd: str | Sequence[str], timeout: float | None = None, cwd: str | None = None,
                   env: dict[str, str] | None = None) -> ExecResult:
        self._check_open()
        argv = as_argv(cmd)
        code = 0 if "git init" in argv[-1] else len(argv[-1]) % 3  # grep: 0 matches found, 1 none, 2 error
        out = f"ran {argv!r}"[:4000]
        return ExecResult(stdout=out, stderr="" if code != 2 else "error \ud800", exit_code=code, timed_out=False,
                          duration_s=0.0)

    async def close(self) -> None:
        self.closed = True


class FakeBoxes:
    def __init__(self, root):
        self.root, self.n = root, itertools.count()

    async def acquire(self) -> Sandbox:
        sb = FakeExecSandbox(self.root / f"box{next(self.n)}")
        await sb.start()
        return sb

    async def close(self) -> None:
        pass

    def close_sync(self) -> None:
        pass


def test_ten_thousand_hostile_calls_through_the_tools_never_raise(tmp_path):
    env = rowgym.make("rowgym/RepoPatch-Corpus-v0")
    env._boxes = FakeBoxes(tmp_path)

    async def grade() -> Verdict:  # the host-side half of grading still sees what the agent wrote
        await agent_changes(env.sb, env.snapshots.get(env.task))
        return Verdict(reward=0.0, success=False, verifier="stub", verifier_version="0")

    env.grade = grade
    seeds = env.splits.seeds("train", 4)
    tally = fuzz_env(env, seeds, N_CALLS, fuzz_seed=7)
    assert tally.crashes == [], tally.crashes[:5]
    k = tally.kinds
    assert k[None] > 300 and k["tool_error"] > 100 and k["invalid_arguments"] > 1000, k
    assert k["bad_json"] > 500 and k["unknown_tool"] > 100 and k["no_tool_call"] > 100, k
    assert tally.notes > 20 and tally.episodes > 20, (tally.notes, tally.episodes)
