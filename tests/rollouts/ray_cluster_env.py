"""A slow 8-turn env tagged ``sandbox`` and a scripted ticker, importable by Ray workers (setup_modules)."""

from __future__ import annotations

import asyncio

from rowgym.agents.base import Agent, AgentTurn
from rowgym.errors import UnknownEnvError
from rowgym.registry import register, spec
from rowgym.rollouts.mock import CountdownEnv
from rowgym.rows import Action, ToolCall

SLOW_ID = "rowgym-test/SlowSandboxCountdown-v0"
STEP_S = 0.1


class SlowCountdownEnv(CountdownEnv):
    """CountdownEnv whose every step takes ``STEP_S`` (so a collection is still running when a node goes)."""

    async def astep(self, action):
        await asyncio.sleep(STEP_S)
        return await super().astep(action)


class Ticker(Agent):
    name = "ticker"

    async def act(self, obs: str) -> AgentTurn:
        return AgentTurn(Action(tool_call=ToolCall(name="tick", arguments="{}")))


try:
    spec(SLOW_ID)
except UnknownEnvError:
    register(SLOW_ID, SlowCountdownEnv, tags=("sandbox",), description="slow countdown for Ray node-loss tests")
