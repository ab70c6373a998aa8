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
    try:
        cls = load_object(ref)
    except (ImportError, AttributeError) as e:
        raise RowgymError(f"agent {name!r} cannot be loaded ({ref}): {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise RowgymError(f"agent {name!r} ({ref}) is not a rowgym Agent class; "
                          "name a subclass of rowgym.agents.Agent as 'module:Class'")
    check_options(cls, kwargs, name)
    return cls(**kwargs)


def check_options(cls: type, options: dict[str, Any], name: str) -> None:
    """Refuse options the agent's constructor does not take, listing those it does."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p != "self" and params[p].kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise RowgymError(f"agent {name!r} ({cls.__name__}) does not take option(s) {', '.join(unknown)}; "
                          f"it takes: {', '.join(accepted) or 'no options'}")


__all__ = ["AGENTS", "Agent", "AgentTurn", "make_agent"]
