"""An LLM agent over any OpenAI-compatible completions server (vLLM first), token-in token-out.

    rowgym collect rowgym/ToolAPI-Retail-v0 --agent vllm --base-url http://127.0.0.1:8000 \
        --model-dir ~/.cache/rowgym/models/tiny-qwen3 --group-size 4 --concurrency 16

Each turn posts the episode's prompt as **token ids** to ``/v1/completions`` with
``return_token_ids`` and ``logprobs``, so what is stored (prompt ids, sampled ids, their
logprobs, the policy mask) is exactly what the server received and returned; the next
turn appends only the new observation's ids (see :mod:`rowgym.agents.chat_tokens`).
The completion text is decoded locally and handed to the environment, which parses the
tool call: malformed output becomes a ``bad_call`` row, not a crash.

HTTP goes through one shared aiohttp session per event loop (lean JSON: the OpenAI SDK costs
about 5 ms of CPU per call, too much to keep hundreds of episodes in flight on a small machine). Connection errors and 5xx/429
answers are retried with exponential backoff for up to ``retry_budget_s`` seconds — long
enough to ride out a server restart — after which the episode fails with kind
``policy`` and the reason.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from rowgym import aio
from rowgym.agents.chat_tokens import TokenConversation
from rowgym.agents.token_policy import TokenPolicy
from rowgym.errors import AgentError, PolicyServerError
from rowgym.rows import PolicyInfo

__all__ = ["PolicyServerError", "VLLMAgent", "load_tokenizer"]


def load_tokenizer(model_dir: str | Path) -> Any:
    """The model's tokenizer (transformers, from the ``train`` extra), cached per directory."""
    key = str(Path(model_dir).expanduser())
    if key not in _TOKENIZERS:
        try:
            from transformers import AutoTokenizer
        except ImportError as e:
            raise AgentError("LLM agents need transformers: pip install 'rowgym[train]'") from e
        _TOKENIZERS[key] = AutoTokenizer.from_pretrained(key)
    return _TOKENIZERS[key]


_TOKENIZERS: dict[str, Any] = {}


class _SharedSession:
    """One aiohttp session per event loop, reference-counted by the agents using it."""

    sessions: dict[int, tuple[Any, int]] = {}

    @classmethod
    def acquire(cls) -> Any:
        import aiohttp

        key = id(asyncio.get_running_loop())
        sess, n = cls.sessions.get(key, (None, 0))
        if sess is None or sess.closed:
            sess = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
        cls.sessions[key] = (sess, n + 1)
        return sess

    @classmethod
    async def release(cls) -> None:
        key = id(asyncio.get_running_loop())
        sess, n = cls.sessions.get(key, (None, 0))
        if sess is None:
            return
        if n <= 1:
            cls.sessions.pop(key, None)
            await sess.close()
        else:
            cls.sessions[key] = (sess, n - 1)


def default_model_dir() -> Path:
    from rowgym.agents.serving import default_model_dir as d

    return Path(d())


class VLLMAgent(TokenPolicy):
    """A policy served over HTTP; samples one completion per turn from the token-id prompt."""

    name = "vllm"

    def __init__(self, base_url: str = "http://127.0.0.1:8000", model: str | None = None,
                 model_dir: str | Path | None = None, temperature: float = 1.0, top_p: float = 1.0,
                 max_tokens: int = 256, request_timeout_s: float = 120.0, retry_budget_s: float = 180.0,
                 seed: int | None = None):
        from rowgym.agents.serving import DEFAULT_SERVED_NAME

        # accept both http://host:port and the OpenAI-style http://host:port/v1
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model_dir = Path(model_dir).expanduser() if model_dir else default_model_dir()
        self.model = model or DEFAULT_SERVED_NAME
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.request_timeout_s, self.retry_budget_s = request_timeout_s, retry_budget_s
        self.seed = seed
        self.tokenizer = load_tokenizer(self.model_dir)
        self.conv: TokenConversation | None = None
        self._session: Any = None
        self._revision = self._read_revision()

    def _read_revision(self) -> str | None:
        meta = self.model_dir / "rowgym_build.json"
        try:
            return json.loads(meta.read_text()).get("params_hash") if meta.exists() else None
        except (OSError, ValueError):
            return None

    def policy_info(self) -> PolicyInfo:
        return PolicyInfo(agent=self.name, model=self.model, revision=self._revision,
                          sampling={"temperature": self.temperature, "top_p": self.top_p,
                                    "max_tokens": self.max_tokens, "base_url": self.base_url})

    async def generate(self, prompt_ids: list[int], seed: int) -> tuple[list[int], list[float], str | None]:
        body = {"model": self.model, "prompt": prompt_ids, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "top_p": self.top_p, "logprobs": 0,
                "return_token_ids": True, "skip_special_tokens": False}
        if self.seed is not None:
            body["seed"] = seed
        data = await self._post("/v1/completions", body)
        choice = data["choices"][0]
        sent = data.get("prompt_token_ids") or choice.get("prompt_token_ids")
        if sent is not None and list(sent) != prompt_ids:
            raise PolicyServerError("the server reports different prompt ids than were sent")
        ids = list(choice.get("token_ids") or [])
        lps = (choice.get("logprobs") or {}).get("token_logprobs") or []
        if len(lps) != len(ids):
            raise PolicyServerError(f"server returned {len(ids)} token ids but {len(lps)} logprobs; "
                                    "is this vLLM with return_token_ids support?")
        return ids, lps, choice.get("finish_reason")

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        if self._session is None:
            self._session = _SharedSession.acquire()
            self._timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_budget_s
        delay, attempt, last = 0.5, 0, ""
        payload = aio.dumps(body)
        while True:
            attempt += 1
            try:
                async with self._session.post(self.base_url + path, data=payload, headers=aio.JSON_HEADERS,
                                              timeout=self._timeout) as r:
                    if r.status == 200:
                        return aio.loads(await r.read())
                    text = (await r.text())[:500]
                    if r.status < 500 and r.status != 429:
                        raise PolicyServerError(f"policy server rejected the request ({r.status}): {text}")
                    last = f"HTTP {r.status}: {text}"
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
                last = f"{type(e).__name__}: {e}"
            if loop.time() + delay > deadline:
                raise PolicyServerError(f"policy server at {self.base_url} unavailable after {attempt} attempts "
                                        f"over {self.retry_budget_s:.0f}s; last error: {last}")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 8.0)

    async def aclose(self) -> None:
        if self._session is not None:
            self._session = None
            await _SharedSession.release()
