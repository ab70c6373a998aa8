"""What an agent receives: a typed episode context at reset, never the env object.

>>> import rowgym
>>> env = rowgym.make("rowgym/ToolAPI-Retail-v0")
>>> obs, info = env.reset(seed=2)
>>> ctx = episode_context(env, obs, info, sample_index=1)
>>> ctx.env_id, ctx.seed, ctx.sample_index, ctx.task is None
('rowgym/ToolAPI-Retail-v0', 2, 1, True)
>>> sorted(t["function"]["name"] for t in ctx.tools)[:2]
['calculate', 'cancel_pending_order']

An agent sees the system prompt, the tool schemas, the first observation and where the
episode comes from (env id, seed, split, sample index) — what a policy served in
another process would see, so an env can live anywhere. Scripted experts declare
``privileged = True`` and then, only then, find the task itself in ``ctx.task``; the
episode's ``policy.privileged`` records it, so a privileged agent's rows are never
mistaken for a policy's.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rowgym.rows import Action, PolicyInfo, Split, TokenRecord

_TOOLS_BY_LIST: dict[int, tuple[Any, list[dict], str]] = {}


class EpisodeContext(BaseModel):
    """Everything an agent may know about a new episode."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    env_id: str
    seed: int
    split: Split
    sample_index: int = Field(0, description="Which of a group's k samples this is (stochastic agents differ by it).")
    episode_id: str = ""
    system_prompt: str
    tools: list[dict[str, Any]] = Field(description="OpenAI-style function schemas.")
    tools_json: str = Field("", description="``tools`` as JSON with sorted keys (a cache key for agents); "
                            "filled in from ``tools`` when not given.")
    observation: str = Field(description="The first observation.")
    instruction: str = ""
    max_turns: int
    task: Any = Field(None, description="The task itself: set only for agents with privileged = True.")

    @model_validator(mode="after")
    def _tools_json_of_tools(self) -> EpisodeContext:
        if "tools_json" not in self.model_fields_set:  # never a default that disagrees with ``tools``
            object.__setattr__(self, "tools_json", json.dumps(self.tools, sort_keys=True))
        return self


def env_tools(env: Any) -> tuple[list[dict], str]:
    """``(env.tools, its canonical JSON)``, computed once per tool list.

    A RowEnv's tools are fixed per class (``env.tool_list`` is shared by its instances),
    but generating the pydantic JSON schemas costs ~20 ms per call, and a rollout engine
    makes hundreds of env instances. Envs without a ``tool_list`` are not cached.
    """
    lst = getattr(env, "tool_list", None)
    if lst is None:
        tools = env.tools
        return tools, json.dumps(tools, sort_keys=True)
    hit = _TOOLS_BY_LIST.get(id(lst))
    if hit is None or hit[0] is not lst:
        tools = env.tools
        hit = _TOOLS_BY_LIST[id(lst)] = (lst, tools, json.dumps(tools, sort_keys=True))
    return hit[1], hit[2]


def episode_context(env: Any, obs: str, info: dict[str, Any], *, sample_index: int = 0, episode_id: str = "",
                    privileged: bool = False) -> EpisodeContext:
    """The context of the episode ``env`` was just reset to (``obs, info`` are what reset returned).

    Args:
        privileged: Put the task itself in ``ctx.task`` (scripted experts only).
    """
    tools, tools_json = env_tools(env)
    return EpisodeContext(
        env_id=env.env_id or "", seed=int(info["seed"]), split=Split(info["split"]), sample_index=sample_index,
        episode_id=episode_id, system_prompt=env.system_prompt, tools=tools, tools_json=tools_json,
        observation=obs, instruction=info.get("instruction", ""), max_turns=int(info.get("max_turns", 0)),
        task=env.task if privileged else None)


@dataclass
class AgentTurn:
    """What the agent did this turn."""

    action: Action
    tokens: TokenRecord | None = None


class Agent(ABC):
    """Base of every agent; set ``name`` and implement ``act`` (see :mod:`rowgym.agents.base`)."""

    name: str = "agent"
    privileged: ClassVar[bool] = False
    """True for scripted experts that read the task (``ctx.task``); never for a policy being evaluated."""

    def policy_info(self) -> PolicyInfo:
        return PolicyInfo(agent=self.name)

    async def reset(self, ctx: EpisodeContext) -> None:
        """Start a new episode."""

    @abstractmethod
    async def act(self, obs: str) -> AgentTurn:
        """Choose the next action given the latest observation."""

    async def aclose(self) -> None:
        """Release resources (HTTP sessions, models)."""
