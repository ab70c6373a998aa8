"""The agent interface: one async ``act`` per turn.

>>> import asyncio, rowgym
>>> from rowgym.agents import make_agent
>>> env = rowgym.make("rowgym/ToolAPI-Retail-v0")
>>> agent = make_agent("expert", env)
>>> obs, info = env.reset(seed=2)
>>> asyncio.run(agent.reset(env, obs, info))
>>> turn = asyncio.run(agent.act(obs))
>>> turn.action.tool_call.name in {"find_user_id_by_email", "find_user_id_by_name_zip"}
True

An agent sees the observation text (and, at ``reset``, the environment: its tools,
system prompt and, for scripted experts only, the task) and returns an
:class:`AgentTurn`: the action and, for LLM policies, the exact token record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from rowgym.rows import Action, PolicyInfo, TokenRecord


@dataclass
class AgentTurn:
    """What the agent did this turn."""

    action: Action
    tokens: TokenRecord | None = None


class Agent(ABC):
    """Base of every agent; set ``name`` and implement ``act``."""

    name: str = "agent"

    def policy_info(self) -> PolicyInfo:
        return PolicyInfo(agent=self.name)

    async def reset(self, env: Any, obs: str, info: dict[str, Any]) -> None:
        """Start a new episode (``env`` is the unwrapped rowgym env)."""

    @abstractmethod
    async def act(self, obs: str) -> AgentTurn:
        """Choose the next action given the latest observation."""

    async def aclose(self) -> None:
        """Release resources (HTTP sessions, models)."""
