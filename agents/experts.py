"""Scripted experts that follow a task's gold plan, optionally making and repairing mistakes.

>>> import asyncio, rowgym
>>> env = rowgym.make("rowgym/ToolAPI-Airline-v0")
>>> agent = GoldPlanExpert(noise=1.0)
>>> obs, info = env.reset(seed=0)
>>> asyncio.run(agent.reset(episode_context(env, obs, info, privileged=True)))
>>> obs, *_, info = env.step(asyncio.run(agent.act(obs)).action)   # a deliberate mistake
>>> info["bad_call"]
True
>>> obs, *_, info = env.step(asyncio.run(agent.act(obs)).action)   # then the repair
>>> info["repaired"]
True

With ``noise=p`` the expert, before each gold call with probability ``p``, first
sends a broken version of it (misspelled tool, an argument of the wrong type, broken
JSON), reads the error, then sends the correct call. That produces the
``bad_call`` → error observation → ``repaired`` rows that tool-use SFT data needs.
"""

from __future__ import annotations

import json
import random

from rowgym.agents.base import Agent, AgentTurn
from rowgym.contract import EpisodeContext, episode_context  # noqa: F401  (episode_context: doctest)
from rowgym.errors import AgentError
from rowgym.rows import Action, PolicyInfo, ToolCall


def corrupt(call: ToolCall, rng: random.Random) -> ToolCall:
    """A plausible mistake on ``call`` that is always invalid (never a different valid call)."""
    args = json.loads(call.arguments)
    kinds = ["typo", "json"] + (["type"] if args else [])
    kind = rng.choice(kinds)
    if kind == "typo":
        return ToolCall(name=call.name.replace("_", "", 1) if "_" in call.name else call.name + "s",
                        arguments=call.arguments)
    if kind == "json":
        return ToolCall(name=call.name, arguments=call.arguments.rstrip("}"))
    key = rng.choice(sorted(args))
    args[key] = {"value": args[key]}  # an object where a string, number or list is expected
    return ToolCall(name=call.name, arguments=json.dumps(args, sort_keys=True))


class GoldPlanExpert(Agent):
    """Replays the task's gold plan (``ctx.task.gold``), the privileged scripted expert."""

    name = "expert"
    privileged = True

    def __init__(self, noise: float = 0.0, seed: int = 0):
        self.noise = noise
        self.seed = seed
        self._plan: list[ToolCall] = []
        self._pending_repair: ToolCall | None = None
        self._rng = random.Random(seed)

    def policy_info(self) -> PolicyInfo:
        return PolicyInfo(agent=self.name, model="scripted", sampling={"noise": self.noise})

    async def reset(self, ctx: EpisodeContext) -> None:
        gold = getattr(ctx.task, "gold", None)
        if gold is None:
            raise AgentError(f"{ctx.env_id} has no gold plan (task.gold); use its own expert agent")
        self._plan = list(gold)
        self._pending_repair = None
        self._rng = random.Random(f"{self.seed}:{ctx.seed}:{ctx.sample_index}")

    async def act(self, obs: str) -> AgentTurn:
        if self._pending_repair is not None:
            call, self._pending_repair = self._pending_repair, None
            return AgentTurn(Action(tool_call=call))
        if not self._plan:
            return AgentTurn(Action.call("finish", answer=""))
        call = self._plan.pop(0)
        if self.noise and self._rng.random() < self.noise:
            self._pending_repair = call
            return AgentTurn(Action(tool_call=corrupt(call, self._rng)))
        return AgentTurn(Action(tool_call=call))
