"""The env checker catches what a shallow check lets through: unseeded noise, shared tasks across splits,
grader checks named on failure, and skipped checks that never count as passed."""

import random

import pytest
from pydantic import BaseModel

import rowgym
from rowgym.env import RowEnv
from rowgym.evals.checker import check_env
from rowgym.rows import Check, Verdict
from rowgym.splits import HashSplits, ListSplits
from rowgym.tools import ToolArgs, tool

TASKS = list(range(20))


class _Task(BaseModel):
    secret: int


class _AnswerArgs(ToolArgs):
    number: int


class _Answer(RowEnv[_Task]):
    """Say the secret number shown in the first observation."""

    family = "test-checker-answer"
    default_max_turns = 4
    splits = ListSplits([HashSplits("test-checker-answer").split_of(i) for i in TASKS])

    def make_task(self, seed: int) -> _Task:
        return _Task(secret=TASKS[seed % len(TASKS)])

    async def setup(self, task: _Task) -> str:
        self.answered = None
        return f"The secret is {task.secret}. Call answer."

    @tool(terminal=True)
    async def answer(self, args: _AnswerArgs) -> str:
        """Answer the secret number (ends the episode)."""
        self.answered = args.number
        return "ok"

    async def grade(self) -> Verdict:
        ok = self.answered == self.task.secret
        return Verdict(reward=float(ok), success=ok, verifier="exact", verifier_version="1",
                       checks=[Check(name="answer_is_secret", passed=ok, detail=f"answered {self.answered}")])


class _Noisy(_Answer):
    """Adds unseeded noise at setup: the same seed gives a different first observation."""

    family = "test-checker-noisy"
    splits = _Answer.splits

    async def setup(self, task: _Task) -> str:
        return (await super().setup(task)) + f" (lucky number {random.random():.6f})"


class _SharedTasks(_Answer):
    """The default HashSplits over a 20-task list: each task lands in every split."""

    family = "test-checker-shared"
    splits = HashSplits("test-checker-shared")


def _register(name, cls, expert=None):
    env_id = f"test-checker/{name}-v0"
    if env_id not in {s.id for s in rowgym.all_specs()}:
        rowgym.register(env_id, entry_point=cls, expert=expert)
    return env_id


def _reader_expert():
    from rowgym.agents.base import Agent, AgentTurn
    from rowgym.rows import Action, ToolCall

    class SecretReader(Agent):
        name = "expert"

        def __init__(self, noise: float = 0.0, seed: int = 0):
            pass

        async def reset(self, ctx):
            self.secret = int(ctx.observation.split("The secret is ")[1].split(".")[0])

        async def act(self, obs):
            return AgentTurn(Action(tool_call=ToolCall(name="answer", arguments=f'{{"number": {self.secret}}}')))

    return SecretReader


def test_a_sound_env_is_fully_checked():
    env_id = _register("Answer", _Answer, _reader_expert())
    report = check_env(env_id, n_seeds=5, random_episodes=5, random_max=1.0)
    assert report.ok and report.fully_checked, [(r.name, r.status, r.detail) for r in report.results]
    det = next(r for r in report.results if r.name == "determinism")
    assert "5 seeds" in det.detail and "expert" in det.detail


def test_unseeded_noise_at_setup_fails_determinism():
    env_id = _register("Noisy", _Noisy, _reader_expert())
    report = check_env(env_id, n_seeds=5, random_episodes=5, random_max=1.0)
    det = next(r for r in report.results if r.name == "determinism")
    assert det.status == "failed", det.detail
    assert "observation" in det.detail and "lucky number" in det.detail
    assert not report.ok


def test_hash_splits_over_a_short_task_list_fail_disjointness():
    env_id = _register("Shared", _SharedTasks, _reader_expert())
    report = check_env(env_id, n_seeds=2, random_episodes=2, random_max=1.0)
    splits = next(r for r in report.results if r.name == "splits_disjoint")
    assert splits.status == "failed"
    assert "tasks shared across splits" in splits.detail and "(seed" in splits.detail


def test_no_expert_is_skipped_not_passed_and_not_fully_checked():
    env_id = _register("NoExpert", _Answer)
    report = check_env(env_id, n_seeds=3, random_episodes=3, random_max=1.0)
    expert = next(r for r in report.results if r.name == "expert_solves")
    assert expert.status == "skipped" and not expert.passed
    assert report.ok and not report.fully_checked
    det = next(r for r in report.results if r.name == "determinism")
    assert det.status == "passed" and "random" in det.detail  # replayed with the seeded random agent


def test_expert_failure_names_the_grader_check():
    from rowgym.agents.base import Agent, AgentTurn
    from rowgym.rows import Action, ToolCall

    class WrongExpert(Agent):
        name = "expert"

        async def act(self, obs):
            return AgentTurn(Action(tool_call=ToolCall(name="answer", arguments='{"number": -1}')))

    env_id = _register("WrongExpert", _Answer, WrongExpert)
    report = check_env(env_id, n_seeds=2, random_episodes=2, random_max=1.0)
    expert = next(r for r in report.results if r.name == "expert_solves")
    assert expert.status == "failed" and "answer_is_secret" in expert.detail and "answered -1" in expert.detail


@pytest.mark.parametrize("n", [1000])
def test_split_check_lists_a_thousand_seeds_per_split(n):
    report = check_env("rowgym/ToolAPI-Retail-v0", n_seeds=1, random_episodes=2, split_seeds=n)
    splits = next(r for r in report.results if r.name == "splits_disjoint")
    assert splits.status == "passed" and f"train: {n}" in splits.detail and f"heldout: {n}" in splits.detail


class _LookAlike(_Answer):
    """Every task shows the same first observation (the secret comes only from a tool): a held-out episode
    relabelled as a train seed would show exactly what that train seed shows."""

    family = "test-checker-lookalike"
    splits = _Answer.splits

    async def setup(self, task: _Task) -> str:
        await super().setup(task)
        return "Guess the secret number, then call answer."


@pytest.mark.redteam
def test_tasks_of_different_splits_that_look_alike_fail_the_check():
    """The held-out guard tells a relabelled episode by its first observation; an env whose tasks of
    different splits look alike fails `rowgym check` (the example plugin did, before its games got numbers)."""
    env_id = _register("LookAlike", _LookAlike, _reader_expert())
    report = check_env(env_id, n_seeds=2, random_episodes=2, random_max=1.0)
    first = next(r for r in report.results if r.name == "first_observations_identify_tasks")
    assert first.status == "failed" and "same first observation" in first.detail, first.detail
    env_id = _register("Answer", _Answer, _reader_expert())
    first = next(r for r in check_env(env_id, n_seeds=2, random_episodes=2, random_max=1.0).results
                 if r.name == "first_observations_identify_tasks")
    assert first.status == "passed", first.detail
