"""The agent interface: one async ``act`` per turn.

>>> import asyncio, rowgym
>>> from rowgym.agents import make_agent
>>> env = rowgym.make("rowgym/ToolAPI-Retail-v0")
>>> agent = make_agent("expert", env)
>>> obs, info = env.reset(seed=2)
>>> asyncio.run(agent.reset(episode_context(env, obs, info, privileged=agent.privileged)))
>>> turn = asyncio.run(agent.act(obs))
>>> turn.action.tool_call.name in {"find_user_id_by_email", "find_user_id_by_name_zip"}
True

An agent never receives the env. At ``reset`` it gets an
:class:`~rowgym.contract.EpisodeContext` (system prompt, tool schemas, first
observation, env id, seed, split, sample index); each turn, the observation. It returns
an :class:`AgentTurn`: the action and, for LLM policies, the exact token record.
Scripted experts set ``privileged = True`` to get the task in ``ctx.task``; rows record it.

Writing an agent (a plugin's expert included): subclass :class:`Agent`, set ``name``,
implement ``act`` (and ``reset`` to read the context). Options a user passes
(``--noise``, ``seed``, ...) arrive as constructor keyword arguments; an agent that does
not take an option is refused with a message listing the options it takes.
"""

from __future__ import annotations

# The contract lives in the core so that an env's own expert (beside the env) can subclass it.
from rowgym.contract import Agent, AgentTurn, EpisodeContext, episode_context  # noqa: F401

__all__ = ["Agent", "AgentTurn", "EpisodeContext"]
