"""Agents and policies: scripted experts, random, LLM agents over vLLM, in-process HF models.

``make_agent(name, env)`` builds one by name; ``"expert"`` means the expert that the
environment's spec names (so plugins bring their own experts).
"""

from __future__ import annotations

import functools
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
    accepted = _accepted_options(cls.__init__)
    if accepted is None:
        return
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise RowgymError(f"agent {name!r} ({cls.__name__}) does not take option(s) {', '.join(unknown)}; "
                          f"it takes: {', '.join(accepted) or 'no options'}")


@functools.lru_cache(maxsize=256)
def _accepted_options(init: Any) -> tuple[str, ...] | None:
    """The keyword options a constructor takes (None: any, it has ``**kwargs``); cached, since the
    engine builds an agent per rollout worker."""
    import inspect

    params = inspect.signature(init).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(p for p in params if p != "self" and params[p].kind is not inspect.Parameter.VAR_POSITIONAL)


__all__ = ["AGENTS", "Agent", "AgentTurn", "make_agent"]
