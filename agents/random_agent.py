"""A random agent: samples tool calls (some malformed) from the environment's action space."""

from __future__ import annotations

from typing import Any

from rowgym.agents.base import Agent, AgentTurn


class RandomAgent(Agent):
    """Uniform over tools, random arguments of roughly the right types; seeded per episode."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._space: Any = None

    async def reset(self, env: Any, obs: str, info: dict[str, Any]) -> None:
        self._space = env.action_space
        self._space.seed(self.seed * 1_000_003 + int(info.get("seed", 0)))

    async def act(self, obs: str) -> AgentTurn:
        return AgentTurn(self._space.sample())
