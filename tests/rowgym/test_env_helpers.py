"""Env-author helpers: verdict() builds the verdict from checks; signal() refuses names no reward reads."""

import pytest
from pydantic import BaseModel

from rowgym.env import RowEnv
from rowgym.errors import ToolDefinitionError
from rowgym.rows import Check
from rowgym.tools import NoArgs, tool


class _Task(BaseModel):
    n: int


class _Env(RowEnv[_Task]):
    family = "test-env-helpers"

    def make_task(self, seed):
        return _Task(n=seed)

    async def setup(self, task):
        return "go"

    @tool
    async def progress(self, args: NoArgs) -> str:
        """Report progress under the declared signal name."""
        self.signal("subgoal", 0.5)
        return "ok"

    @tool
    async def typo(self, args: NoArgs) -> str:
        """Report progress under a name no reward reads."""
        self.signal("subgaol", 0.5)
        return "ok"

    @tool(terminal=True)
    async def finish(self, args: NoArgs) -> str:
        """End."""
        return "done"

    async def grade(self):
        return self.verdict([Check(name="always", passed=True)])


def test_verdict_from_checks():
    env = _Env()
    v = env.verdict([Check(name="a", passed=True), Check(name="b", passed=False, detail="no")], flags=["x"])
    assert (v.reward, v.success, v.flags, v.verifier) == (0.0, False, ["x"], "verifier")
    assert v.breakdown == {"verifier@1": 0.0}
    assert env.verdict([Check(name="a", passed=True)]).success
    partial = env.verdict([Check(name="a", passed=False)], reward=0.4, breakdown={"price": 1.0})
    assert (partial.reward, partial.success, partial.breakdown["price"]) == (0.4, False, 1.0)


def test_declared_signal_pays_and_a_typo_is_refused():
    env = _Env()
    env.reset(seed=0)
    _, reward, _, _, info = env.step({"name": "progress", "arguments": {}})
    assert info["reward_breakdown"]["subgoal_progress@1"] == 0.25
    with pytest.raises(ToolDefinitionError, match="subgaol.*the rubric's signals: subgoal"):
        env.step({"name": "typo", "arguments": {}})
