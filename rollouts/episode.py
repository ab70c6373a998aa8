"""Play one episode and record every step as a row.

>>> import asyncio, rowgym
>>> from rowgym.agents import make_agent
>>> from rowgym.rollouts.episode import EpisodeKey, play_episode
>>> env = rowgym.make("rowgym/ToolAPI-Retail-v0")
>>> ep = asyncio.run(play_episode(env, make_agent("expert", env), EpisodeKey("run0", 4)))
>>> ep.success, ep.steps[0].turn, ep.split == env.splits.split_of(4)
(True, 0, True)

Nothing an agent or environment does inside an episode escapes as an exception:
a policy that fails (server down, timeout) or an environment that crashes ends the
episode with a :class:`rowgym.rows.Failure` saying which part failed and why, and
the rows recorded so far are kept.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from rowgym.agents.base import Agent
from rowgym.agents.chat_tokens import env_tools
from rowgym.errors import AgentError
from rowgym.rows import Episode, Failure, StepRow, Timings, Verdict


@dataclass(frozen=True)
class EpisodeKey:
    """Identity of one episode in a run: the seed and which of the group's k samples it is."""

    run_id: str
    seed: int
    sample_index: int = 0

    @property
    def episode_id(self) -> str:
        return f"{self.run_id}:{self.seed}:{self.sample_index}"

    @property
    def group_id(self) -> str:
        return f"{self.run_id}:{self.seed}"


@dataclass(frozen=True)
class Timeouts:
    """Seconds; ``None`` means no limit.

    Attributes:
        turn_s: One policy turn (the agent's ``act``, retries included).
        episode_s: The whole episode, reset and grading included.
        step_s: One environment step: a tool call, the sandbox commands it runs, and on the
            last step the final grading (so it bounds sandbox and grader time too).
    """

    turn_s: float | None = None
    episode_s: float | None = None
    step_s: float | None = None


class EpisodeFailure(Exception):
    """An episode failed for a known reason (kind + reason become the episode's Failure)."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.failure_kind = kind


def _failure_kind(exc: BaseException) -> str:
    """Attribute an exception to the part that failed.

    An exception's ``failure_kind`` attribute wins (``SandboxError`` carries "sandbox",
    ``GraderError``, raised by the env base around ``grade()``, carries "grader"); then agent
    errors are the policy's, timeouts are timeouts, and anything else raised by the env is the env's.
    """
    kind = getattr(exc, "failure_kind", None)
    if kind:
        return kind
    if isinstance(exc, AgentError):
        return "policy"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    return "env"


async def play_episode(env: Any, agent: Agent, key: EpisodeKey, timeouts: Timeouts = Timeouts(),
                       record: bool = True) -> Episode:
    """Run ``agent`` on ``env`` for the episode ``key`` and return it with all its rows.

    Never raises for a failure of the env, the policy or a timeout: the episode comes back
    with ``failure`` set (and the rows recorded so far). With ``record=False`` rows are not
    built (used to measure recording overhead).
    """
    t_start = time.perf_counter()
    ep = Episode(run_id=key.run_id, episode_id=key.episode_id, group_id=key.group_id, sample_index=key.sample_index,
                 env_id=env.env_id or "", env_version=env.version, seed=key.seed, split=env.splits.split_of(key.seed),
                 task_hash="", policy=agent.policy_info())
    deadline = asyncio.timeout(timeouts.episode_s)
    try:
        async with deadline:
            await _play(env, agent, ep, timeouts, record)
    except Exception as e:  # attributed and kept on the episode, never raised into the engine
        if isinstance(e, TimeoutError) and deadline.expired():
            kind, what = "timeout", f"episode exceeded {timeouts.episode_s}s (after {len(ep.steps)} steps)"
        else:
            kind, what = _failure_kind(e), str(e) if isinstance(e, EpisodeFailure) else f"{type(e).__name__}: {e}"
        ep.failure = Failure(kind=kind, reason=what[:2000])
    ep.duration_s = round(time.perf_counter() - t_start, 4)
    return ep


async def _play(env: Any, agent: Agent, ep: Episode, timeouts: Timeouts, record: bool) -> None:
    obs, info = await _env_call(env.areset(seed=ep.seed), timeouts.step_s, "reset")
    _, tools_json = env_tools(env)
    ep.task_hash, ep.instruction = info["task_hash"], info.get("instruction", "")
    ep.reward_versions, ep.tools = env.reward_versions(), tools_json
    # the sample index lets stochastic agents differ within a GRPO group (same seed, k samples)
    await agent.reset(env, obs, {**info, "sample_index": ep.sample_index, "episode_id": ep.episode_id})
    turn = 0
    while True:
        t0 = time.perf_counter()
        if timeouts.turn_s is None:
            out = await agent.act(obs)
        else:
            turn_deadline = asyncio.timeout(timeouts.turn_s)
            try:
                async with turn_deadline:
                    out = await agent.act(obs)
            except TimeoutError as e:
                if not turn_deadline.expired():
                    raise  # raised inside the agent, not our deadline
                raise EpisodeFailure("timeout", f"the policy did not answer turn {turn} "
                                                f"within {timeouts.turn_s}s") from e
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, sinfo = await _env_call(env.astep(out.action), timeouts.step_s,
                                                                         f"step {turn}")
        t2 = time.perf_counter()
        if record:
            ep.steps.append(StepRow(
                run_id=ep.run_id, episode_id=ep.episode_id, group_id=ep.group_id, env_id=ep.env_id,
                env_version=ep.env_version, seed=ep.seed, split=ep.split, turn=turn, observation=obs,
                action=out.action, next_observation=next_obs, reward=sinfo["local_reward"],
                reward_breakdown=sinfo["reward_breakdown"], bad_call=sinfo["bad_call"],
                error_kind=sinfo["error_kind"], repaired=sinfo["repaired"], terminated=terminated,
                truncated=truncated, timings=Timings(policy_s=round(t1 - t0, 6), env_s=round(t2 - t1, 6)),
                tokens=out.tokens))
        if terminated or truncated:
            verdict: Verdict = sinfo["verdict"]
            ep.verdict = verdict
            return
        obs, turn = next_obs, turn + 1


async def _env_call(coro: Any, limit: float | None, what: str) -> Any:
    if limit is None:
        return await coro
    step_deadline = asyncio.timeout(limit)
    try:
        async with step_deadline:
            return await coro
    except TimeoutError as e:
        if not step_deadline.expired():
            raise
        raise EpisodeFailure("timeout", f"env {what} (tool call, sandbox or grading) exceeded {limit}s") from e
