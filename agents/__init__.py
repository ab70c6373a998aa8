"""Agents and policies: scripted experts, random, LLM agents over vLLM, in-process HF models.

``make_agent(name, env)`` builds one by name; ``"expert"`` means the expert that the
environment's spec names (so plugins bring their own experts).
"""

from __future__ import annotations

from typing import Any

from rowgym.agents.base import Agent, AgentTurn
from rowgym.errors import RowgymError

AGENTS: dict[str, str] = {
    "random": "rowgym.agents.random_agent:RandomAgent",
    "vllm": "rowgym.agents.llm:VLLMAgent",
    "hf": "rowgym.agents.hf_policy:HFPolicy",
}


def make_agent(name: str, env: Any, **kwargs: Any) -> Agent:
    """Build an agent by name for ``env`` (``expert``, ``random``, or a ``module:Class`` path)."""
    from rowgym.registry import load_object, spec

    if name == "expert":
        ref = spec(env.env_id).expert if env.env_id else None
        if not ref:
            raise RowgymError(f"{env.env_id} has no scripted expert; pick another agent")
    elif name in AGENTS:
        ref = AGENTS[name]
    elif ":" in name:
        ref = name
    else:
        raise RowgymError(f"unknown agent {name!r}; use one of: expert, {', '.join(AGENTS)}, or module:Class")
    return load_object(ref)(**kwargs)


__all__ = ["AGENTS", "Agent", "AgentTurn", "make_agent"]
