"""An in-process Hugging Face transformers policy with the same token recording as the vLLM agent.

    rowgym collect rowgym/ToolAPI-Retail-v0 --agent hf --model-dir ~/.cache/rowgym/models/tiny-qwen3

Used on CPU by the trainers (GRPO plays episodes with the model being trained) and for
evaluation without a server. Sampling is seeded per episode, and the logprob of each
sampled token is computed from the same forward pass that sampled it.

With a shared :class:`BatchedSampler` (what the GRPO trainer uses), the turns that many
concurrent episodes ask for at the same moment are sampled in one left-padded
``generate`` call; the seed is then the first request's, so a sample depends on which turns
shared its batch (the logprobs are still those of the forward pass that sampled it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rowgym.agents.chat_tokens import TokenConversation
from rowgym.agents.llm import default_model_dir, load_tokenizer
from rowgym.agents.token_policy import TokenPolicy
from rowgym.errors import AgentError
from rowgym.rows import PolicyInfo


class HFPolicy(TokenPolicy):
    """Samples with ``model.generate`` from the token-id prompt; records ids, logprobs and mask."""

    name = "hf"

    def __init__(self, model_dir: str | Path | None = None, model: Any = None, tokenizer: Any = None,
                 temperature: float = 1.0, top_p: float = 1.0, max_tokens: int = 128, seed: int = 0,
                 lock: asyncio.Lock | None = None, sampler: BatchedSampler | None = None):
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError as e:
            raise AgentError("the hf agent needs torch + transformers: pip install 'rowgym[train]'") from e
        self.model_dir = Path(model_dir).expanduser() if model_dir else default_model_dir()
        self.tokenizer = tokenizer or load_tokenizer(self.model_dir)
        self.model = model or AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
        self.temperature, self.top_p, self.max_tokens, self.seed = temperature, top_p, max_tokens, seed
        self.max_context = getattr(self.model.config, "max_position_embeddings", None)
        # generate() is CPU-bound: one at a time, off the event loop so env steps keep running
        self._lock = lock
        self.sampler = sampler
        self.conv: TokenConversation | None = None

    def policy_info(self) -> PolicyInfo:
        name = getattr(self.model.config, "_name_or_path", None) or str(self.model_dir)
        return PolicyInfo(agent=self.name, model=str(name),
                          sampling={"temperature": self.temperature, "top_p": self.top_p,
                                    "max_tokens": self.max_tokens, "seed": self.seed})

    async def generate(self, prompt_ids: list[int], seed: int) -> tuple[list[int], list[float], str | None]:
        if self.sampler is not None:
            ids, lps = await self.sampler.sample(prompt_ids, seed)
            return ids, lps, "stop" if ids and ids[-1] == self.conv.eos_id else "length"
        async with self._lock or _loop_lock():
            ids, lps = await asyncio.to_thread(self._sample, prompt_ids, seed)
        return ids, lps, "stop" if ids and ids[-1] == self.conv.eos_id else "length"

    def _sample(self, prompt: list[int], seed: int) -> tuple[list[int], list[float]]:
        import torch

        torch.manual_seed(seed)
        inp = torch.tensor([prompt])
        with torch.no_grad():
            out = self.model.generate(inp, attention_mask=torch.ones_like(inp), max_new_tokens=self.max_tokens,
                                      do_sample=self.temperature > 0, temperature=max(self.temperature, 1e-5),
                                      top_p=self.top_p, top_k=0, output_scores=True, return_dict_in_generate=True,
                                      eos_token_id=self.conv.eos_id, pad_token_id=self.tokenizer.pad_token_id,
                                      use_cache=True)  # a model saved by a trainer may say use_cache: false
        ids = out.sequences[0, len(prompt):].tolist()
        # scores are the processed logits the sample was drawn from (temperature/top-p applied)
        lps = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(out.scores, ids, strict=False)]
        return ids, lps


_LOCKS: dict[int, asyncio.Lock] = {}


def _loop_lock() -> asyncio.Lock:
    """One generate() at a time per event loop (an asyncio.Lock cannot be shared across loops)."""
    return _LOCKS.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())


class BatchedSampler:
    """Samples the turns that concurrent episodes request together in one batched ``generate``.

    Requests that arrive while a batch runs wait for the next one; ``max_batch`` caps a batch.
    ``model`` may be swapped (``sampler.model = other``) between batches.
    """

    def __init__(self, model: Any, tokenizer: Any, *, temperature: float = 1.0, top_p: float = 1.0,
                 max_tokens: int = 128, max_batch: int = 64):
        self.model, self.tokenizer = model, tokenizer
        self.temperature, self.top_p, self.max_tokens, self.max_batch = temperature, top_p, max_tokens, max_batch
        eos = tokenizer.eos_token
        self.eos_id = tokenizer.convert_tokens_to_ids(eos) if isinstance(eos, str) else tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self._pending: list[tuple[list[int], int, asyncio.Future]] = []
        self._running = False
        self.batches: list[int] = []
        """Size of every batch sampled (for benchmarks and tests)."""

    async def sample(self, prompt_ids: list[int], seed: int) -> tuple[list[int], list[float]]:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((list(prompt_ids), seed, fut))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                for _ in range(3):  # let episodes that are ready in this loop iteration queue their turn
                    await asyncio.sleep(0)
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                try:
                    results = await asyncio.to_thread(self._generate, [p for p, _, _ in batch], batch[0][1])
                except BaseException as e:
                    for _, _, f in batch:
                        if not f.done():
                            f.set_exception(AgentError(f"batched sampling failed: {type(e).__name__}: {e}"))
                    if not isinstance(e, Exception):
                        raise
                    continue
                self.batches.append(len(batch))
                for (_, _, f), r in zip(batch, results, strict=True):
                    if not f.done():
                        f.set_result(r)
        finally:
            self._running = False

    def _generate(self, prompts: list[list[int]], seed: int) -> list[tuple[list[int], list[float]]]:
        import torch

        torch.manual_seed(seed)
        width = max(len(p) for p in prompts)
        inp = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts])
        att = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model.generate(inp, attention_mask=att, max_new_tokens=self.max_tokens,
                                          do_sample=self.temperature > 0, temperature=max(self.temperature, 1e-5),
                                          top_p=self.top_p, top_k=0, output_scores=True, return_dict_in_generate=True,
                                          eos_token_id=self.eos_id, pad_token_id=self.pad_id,
                                          use_cache=True)  # the trainer's model (or its checkpoint) may say false
        finally:
            self.model.train(was)
        new = out.sequences[:, width:]
        if not out.scores:
            return [([], []) for _ in prompts]
        # the processed scores the samples were drawn from, one [batch, vocab] per position
        logp = torch.log_softmax(torch.stack(out.scores, 1).float(), -1)
        picked = logp.gather(-1, new[:, : logp.shape[1], None]).squeeze(-1)
        res = []
        for i in range(len(prompts)):
            ids = new[i].tolist()
            if self.eos_id in ids:
                ids = ids[: ids.index(self.eos_id) + 1]
            res.append((ids, picked[i, : len(ids)].tolist()))
        return res
