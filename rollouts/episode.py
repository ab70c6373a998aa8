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
    """Seconds; ``None`` means no limit."""

    turn_s: float | None = None
    episode_s: float | None = None


def _failure_kind(exc: BaseException) -> str:
    """Attribute an exception to the part that failed."""
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

    With ``record=False`` rows are not built (used to measure recording overhead).
    """
    t_start = time.perf_counter()
    obs, info = await env.areset(seed=key.seed)
    ep = Episode(run_id=key.run_id, episode_id=key.episode_id, group_id=key.group_id, sample_index=key.sample_index,
                 env_id=env.env_id, env_version=env.version, seed=key.seed, split=info["split"],
                 task_hash=info["task_hash"], instruction=info.get("instruction", ""), policy=agent.policy_info(),
                 reward_versions=env.reward_versions(), tools=env.tools_json())
    try:
        await asyncio.wait_for(_loop(env, agent, ep, obs, info, timeouts, record), timeouts.episode_s)
    except Exception as e:  # attributed and kept on the episode, never raised into the engine
        what = "episode timed out" if isinstance(e, asyncio.TimeoutError | TimeoutError) else f"{type(e).__name__}: {e}"
        ep.failure = Failure(kind=_failure_kind(e), reason=what[:2000])
    ep.duration_s = round(time.perf_counter() - t_start, 4)
    return ep


async def _loop(env: Any, agent: Agent, ep: Episode, obs: str, info: dict, timeouts: Timeouts, record: bool) -> None:
    # the sample index lets stochastic agents differ within a GRPO group (same seed, k samples)
    await agent.reset(env, obs, {**info, "sample_index": ep.sample_index, "episode_id": ep.episode_id})
    turn = 0
    while True:
        t0 = time.perf_counter()
        try:
            out = await asyncio.wait_for(agent.act(obs), timeouts.turn_s)
        except TimeoutError as e:
            raise AgentError(f"the policy did not answer turn {turn} within {timeouts.turn_s}s") from e
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, sinfo = await env.astep(out.action)
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
