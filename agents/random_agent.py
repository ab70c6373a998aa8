"""A random agent: samples tool calls (some malformed) from the environment's action space."""

from __future__ import annotations

from rowgym.agents.base import Agent, AgentTurn
from rowgym.contract import EpisodeContext
from rowgym.spaces import ToolCallSpace


class RandomAgent(Agent):
    """Uniform over tools, random arguments of roughly the right types; seeded per episode."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._space: ToolCallSpace | None = None

    async def reset(self, ctx: EpisodeContext) -> None:
        self._space = ToolCallSpace.from_schemas(ctx.tools)
        self._space.seed(self.seed * 1_000_003 + ctx.seed)

    async def act(self, obs: str) -> AgentTurn:
        assert self._space is not None, "reset() first"
        return AgentTurn(self._space.sample())
