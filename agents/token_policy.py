"""The shared turn loop of LLM policies: token conversation, per-sample seeds, recording, decoding.

A subclass implements one hook, :meth:`TokenPolicy.generate` (prompt ids -> sampled ids,
their logprobs, finish reason): over HTTP for vLLM (:mod:`rowgym.agents.llm`), in process
for transformers (:mod:`rowgym.agents.hf_policy`). Everything that makes the stored tokens
faithful lives here once.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from rowgym.agents.base import Agent, AgentTurn
from rowgym.agents.chat_tokens import TokenConversation
from rowgym.contract import EpisodeContext
from rowgym.errors import AgentError
from rowgym.rows import Action, PolicyVersion


class PolicyVersions:
    """The version of the weights a policy samples with, and a gate around weight updates.

    A trainer that changes the weights under a running policy holds :meth:`updating` while
    it swaps them; every sampling call holds :meth:`sampling`, which waits while an update
    runs and blocks updates while it runs. So each turn is sampled by exactly one version,
    the one recorded on its :class:`rowgym.rows.TokenRecord` (``policy_version``).
    Waiters are served in order: an update that waits is not starved by new turns.
    """

    def __init__(self, version: PolicyVersion):
        self.current = version
        self._active = 0
        self._updating = False
        self._cond: asyncio.Condition | None = None
        self._pending_updates = 0

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    @asynccontextmanager
    async def sampling(self) -> AsyncIterator[PolicyVersion]:
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: not self._updating and not self._pending_updates)
            self._active += 1
        try:
            yield self.current
        finally:
            async with cond:
                self._active -= 1
                cond.notify_all()

    @asynccontextmanager
    async def updating(self) -> AsyncIterator[None]:
        """Hold while the weights change (no turn is being sampled meanwhile); then call :meth:`set`."""
        cond = self._condition()
        async with cond:
            self._pending_updates += 1
            await cond.wait_for(lambda: not self._updating and self._active == 0)
            self._pending_updates -= 1
            self._updating = True
        try:
            yield
        finally:
            async with cond:
                self._updating = False
                cond.notify_all()

    def set(self, version: PolicyVersion) -> None:
        self.current = version


class ContextLengthError(AgentError):
    """The conversation no longer fits the model's context (the episode fails with kind 'policy')."""


class TokenPolicy(Agent):
    """Base of token-in, token-out policies; set ``tokenizer`` and ``seed`` in ``__init__``.

    ``max_context`` (when known) is the model's context length: a turn whose prompt plus
    ``max_tokens`` would not fit ends the episode with a clear policy failure instead of
    sampling past the model's positions.
    """

    tokenizer: Any
    seed: int | None = None
    conv: TokenConversation | None = None
    max_context: int | None = None
    max_tokens: int = 256
    versions: PolicyVersions | None = None
    """Set by a trainer that updates the weights while this policy samples (each turn records its version)."""

    async def reset(self, ctx: EpisodeContext) -> None:
        self.conv = TokenConversation(self.tokenizer, ctx.system_prompt, ctx.tools, ctx.observation,
                                      tools_json=ctx.tools_json)
        self._first = True
        self._turn = 0
        # a seeded policy still samples differently for each of a group's k samples and each turn
        self._episode_seed = hash((self.seed, ctx.seed, ctx.sample_index)) & 0x3FFFFFFF

    @abstractmethod
    async def generate(self, prompt_ids: list[int], seed: int) -> tuple[list[int], list[float], str | None]:
        """Sample a completion for ``prompt_ids``: (token ids, one logprob each, finish reason)."""

    async def act(self, obs: str) -> AgentTurn:
        assert self.conv is not None, "reset() first"
        if not self._first:
            self.conv.add_observation(obs)
        self._first = False
        self._turn += 1
        n = len(self.conv.prompt_ids)
        if self.max_context is not None and n + self.max_tokens > self.max_context:
            raise ContextLengthError(f"turn {self._turn}: the prompt has {n} tokens and {self.max_tokens} more may be "
                                     f"sampled, beyond the model's context of {self.max_context} tokens")
        seed = (self._episode_seed + self._turn) & 0x3FFFFFFF
        if self.versions is None:
            ids, lps, finish = await self.generate(list(self.conv.prompt_ids), seed)
            record = self.conv.record(ids, lps, finish)
        else:
            async with self.versions.sampling() as version:
                ids, lps, finish = await self.generate(list(self.conv.prompt_ids), seed)
            record = self.conv.record(ids, lps, finish)
            record.policy_version = version
        self.conv.add_completion(ids)
        return AgentTurn(Action(text=self.decode(ids)), record)

    def decode(self, ids: list[int]) -> str:
        """The completion's text for the env to parse (the end-of-turn token dropped, tool tags kept)."""
        ids = [i for i in ids if i != self.conv.eos_id]
        rust = getattr(self.tokenizer, "backend_tokenizer", None)
        if rust is not None:
            return rust.decode(ids, skip_special_tokens=False)
        return self.tokenizer.decode(ids, skip_special_tokens=False)
