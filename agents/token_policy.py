"""The shared turn loop of LLM policies: token conversation, per-sample seeds, recording, decoding.

A subclass implements one hook, :meth:`TokenPolicy.generate` (prompt ids -> sampled ids,
their logprobs, finish reason): over HTTP for vLLM (:mod:`rowgym.agents.llm`), in process
for transformers (:mod:`rowgym.agents.hf_policy`). Everything that makes the stored tokens
faithful lives here once.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from rowgym.agents.base import Agent, AgentTurn
from rowgym.agents.chat_tokens import TokenConversation, env_tools
from rowgym.rows import Action


class TokenPolicy(Agent):
    """Base of token-in, token-out policies; set ``tokenizer`` and ``seed`` in ``__init__``."""

    tokenizer: Any
    seed: int | None = None
    conv: TokenConversation | None = None

    async def reset(self, env: Any, obs: str, info: dict[str, Any]) -> None:
        self.conv = TokenConversation(self.tokenizer, env.system_prompt, env_tools(env)[0], obs)
        self._first = True
        self._turn = 0
        # a seeded policy still samples differently for each of a group's k samples and each turn
        self._episode_seed = hash((self.seed, info.get("seed"), info.get("sample_index", 0))) & 0x3FFFFFFF

    @abstractmethod
    async def generate(self, prompt_ids: list[int], seed: int) -> tuple[list[int], list[float], str | None]:
        """Sample a completion for ``prompt_ids``: (token ids, one logprob each, finish reason)."""

    async def act(self, obs: str) -> AgentTurn:
        assert self.conv is not None, "reset() first"
        if not self._first:
            self.conv.add_observation(obs)
        self._first = False
        self._turn += 1
        ids, lps, finish = await self.generate(list(self.conv.prompt_ids), (self._episode_seed + self._turn) & 0x3FFFFFFF)
        record = self.conv.record(ids, lps, finish)
        self.conv.add_completion(ids)
        return AgentTurn(Action(text=self.decode(ids)), record)

    def decode(self, ids: list[int]) -> str:
        """The completion's text for the env to parse (the end-of-turn token dropped, tool tags kept)."""
        ids = [i for i in ids if i != self.conv.eos_id]
        rust = getattr(self.tokenizer, "backend_tokenizer", None)
        if rust is not None:
            return rust.decode(ids, skip_special_tokens=False)
        return self.tokenizer.decode(ids, skip_special_tokens=False)
