"""An LLM agent over any OpenAI-compatible completions server (vLLM first), token-in token-out.

    rowgym collect rowgym/ToolAPI-Retail-v0 --agent vllm --base-url http://127.0.0.1:8000 \
        --model-dir ~/.cache/rowgym/models/tiny-qwen3 --group-size 4 --concurrency 16

Each turn posts the episode's prompt as **token ids** to ``/v1/completions`` with
``return_token_ids`` and ``logprobs``, so what is stored (prompt ids, sampled ids, their
logprobs, the policy mask) is exactly what the server received and returned; the next
turn appends only the new observation's ids (see :mod:`rowgym.agents.chat_tokens`).
The completion text is decoded locally and handed to the environment, which parses the
tool call: malformed output becomes a ``bad_call`` row, not a crash.

HTTP to a plain ``http://`` server goes through a lean keep-alive client (:mod:`rowgym.agents.http_transport`,
httptools' C parser: ~0.2 ms of CPU per request against aiohttp's 0.4-0.5 ms, which counts with hundreds of episodes in
flight on a small machine), anything else (https) through one shared aiohttp session per event loop; both
post lean JSON (the OpenAI SDK costs about 5 ms of CPU per call). Connection errors and 5xx/429
answers are retried with exponential backoff for up to ``retry_budget_s`` seconds — long
enough to ride out a server restart — after which the episode fails with kind
``policy`` and the reason.

**Several servers** (``base_url`` a list, ``--policy-url`` repeated): a :class:`ServerPool`
per URL list and process routes each episode's first turn to the healthy server with the
fewest outstanding requests (servers with equal loads take turns), and keeps the episode's
later turns on that server while it stays healthy (its prefix cache holds the conversation
so far; ``VLLMAgent.locality = False`` routes every turn by load instead). A request that
fails by connection or 5xx marks its server down and is retried at once on another healthy
one (the turn's prompt ids are the same, so the stored tokens do not change); a down server
is probed (``GET /health``, any answer below 500) after a cool-down that doubles up to 30 s,
and rejoins when it answers. Only when no server is healthy does the backoff above apply,
within the same retry budget.
:func:`server_stats` gives each server's requests, failures and latency (the collect
summary prints them).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rowgym import aio
from rowgym.agents.chat_tokens import TokenConversation
from rowgym.agents.token_policy import TokenPolicy
from rowgym.errors import AgentError, PolicyServerError
from rowgym.rows import PolicyInfo
from rowgym.store.shards import all_finite, first_non_finite

__all__ = ["PolicyServerError", "ServerPool", "VLLMAgent", "load_tokenizer", "server_stats"]


def load_tokenizer(model_dir: str | Path) -> Any:
    """The model's tokenizer (transformers, from the ``train`` extra), cached per directory."""
    hit = _TOKENIZERS.get(model_dir)  # the directory as given (an agent per episode asks with the same one)
    if hit is not None:
        return hit
    key = str(Path(model_dir).expanduser())
    if key not in _TOKENIZERS:
        try:
            from transformers import AutoTokenizer
        except ImportError as e:
            raise AgentError("LLM agents need transformers: pip install 'rowgym[train]'") from e
        _TOKENIZERS[key] = AutoTokenizer.from_pretrained(key)
    _TOKENIZERS[model_dir] = _TOKENIZERS[key]
    return _TOKENIZERS[key]


_TOKENIZERS: dict[str | Path, Any] = {}


class _SharedSession:
    """One aiohttp session and one lean HTTP pool per event loop, reference-counted by the agents using them."""

    sessions: dict[int, tuple[Any, Any, int]] = {}

    @classmethod
    def acquire(cls) -> tuple[Any, Any]:
        import aiohttp

        from rowgym.agents.http_transport import LeanHTTP

        loop = asyncio.get_running_loop()
        key = id(loop)
        sess, lean, n = cls.sessions.get(key, (None, None, 0))
        if sess is None or sess.closed:
            sess = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
        if lean is None or lean.closed or lean.loop is not loop:
            lean = LeanHTTP()
        cls.sessions[key] = (sess, lean, n + 1)
        return sess, lean

    @classmethod
    async def release(cls) -> None:
        key = id(asyncio.get_running_loop())
        sess, lean, n = cls.sessions.get(key, (None, None, 0))
        if sess is None:
            return
        if n <= 1:
            cls.sessions.pop(key, None)
            lean.close()
            await sess.close()
        else:
            cls.sessions[key] = (sess, lean, n - 1)


@dataclass
class ServerStats:
    """What one policy server did for this process (summed over the episodes of every agent)."""

    requests: int = 0
    """Requests answered with 200."""
    failures: int = 0
    """Requests that failed by connection, timeout or 5xx/429 (then retried on another server or later)."""
    latency_s: float = 0.0
    """Summed latency of the answered requests."""
    latencies: list[float] = field(default_factory=list, repr=False)
    """A bounded sample of latencies, for percentiles."""

    def add(self, dt: float) -> None:
        self.requests += 1
        self.latency_s += dt
        if len(self.latencies) < 20_000:
            self.latencies.append(dt)

    def as_dict(self) -> dict[str, float | int]:
        lat = sorted(self.latencies)
        p50 = lat[len(lat) // 2] if lat else 0.0
        p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))] if lat else 0.0
        return {"requests": self.requests, "failures": self.failures,
                "mean_latency_s": round(self.latency_s / self.requests, 4) if self.requests else 0.0,
                "p50_latency_s": round(p50, 4), "p95_latency_s": round(p95, 4)}


_STATS: dict[str, ServerStats] = {}


def _stats(url: str) -> ServerStats:
    st = _STATS.get(url)
    if st is None:
        st = _STATS[url] = ServerStats()
    return st


def server_stats() -> dict[str, dict[str, float | int]]:
    """Per policy server URL: requests, failures, mean/p50/p95 latency, for this process."""
    return {url: st.as_dict() for url, st in sorted(_STATS.items())}


def reset_server_stats() -> None:
    _STATS.clear()


def merge_server_stats(other: dict[str, dict[str, Any]], latencies: dict[str, list[float]] | None = None) -> None:
    """Add another process's :func:`raw_server_stats` (a Ray actor's) into this process's table."""
    for url, d in other.items():
        st = _STATS.setdefault(url, ServerStats())
        st.requests += int(d["requests"])
        st.failures += int(d["failures"])
        st.latency_s += float(d["latency_s"])
        st.latencies.extend((latencies or {}).get(url, [])[: max(0, 20_000 - len(st.latencies))])


def raw_server_stats() -> tuple[dict[str, dict[str, Any]], dict[str, list[float]]]:
    """This process's counters in a form :func:`merge_server_stats` adds up."""
    return ({u: {"requests": s.requests, "failures": s.failures, "latency_s": s.latency_s} for u, s in _STATS.items()},
            {u: list(s.latencies) for u, s in _STATS.items()})


@dataclass(eq=False)
class _Server:
    url: str
    outstanding: int = 0
    healthy: bool = True
    down_until: float = 0.0
    cooldown_s: float = 1.0
    probing: bool = False


class ServerPool:
    """Several policy servers behind one agent option: least-loaded healthy routing, health probes, failover.

    One pool per URL list per process, shared by every agent (so ``outstanding`` counts the
    requests of all episodes in flight). Routing state is plain counters: no locks needed on
    one event loop.
    """

    pools: dict[tuple[str, ...], ServerPool] = {}
    MAX_COOLDOWN_S = 30.0

    def __init__(self, urls: tuple[str, ...]):
        self.servers = [_Server(u) for u in urls]
        self._next = 0  # where the next tie on load starts looking: ties go round-robin, not by chance

    @classmethod
    def of(cls, urls: tuple[str, ...]) -> ServerPool:
        if urls not in cls.pools:
            cls.pools[urls] = cls(urls)
        return cls.pools[urls]

    def healthy(self) -> list[_Server]:
        return [s for s in self.servers if s.healthy]

    def pick(self, prefer: _Server | None, session: Any) -> _Server:
        """``prefer`` if healthy (prefix locality), else the healthy server with fewest outstanding requests
        (equals in turn), else (none healthy) the one that went down first. Starts health probes of
        cooled-down servers."""
        now = time.monotonic()
        for s in self.servers:
            if not s.healthy and not s.probing and now >= s.down_until:
                s.probing = True
                asyncio.get_running_loop().create_task(self._probe(s, session))
        if prefer is not None and prefer.healthy:
            return prefer
        up = self.healthy()
        if up:
            # min keeps the first of equals: rotating the start makes equal loads take turns
            start, self._next = self._next % len(up), self._next + 1
            return min(up[start:] + up[:start], key=lambda s: s.outstanding)
        return min(self.servers, key=lambda s: s.down_until)

    def failed(self, s: _Server) -> None:
        _stats(s.url).failures += 1
        if s.healthy:
            s.healthy, s.cooldown_s = False, 1.0
        else:
            s.cooldown_s = min(s.cooldown_s * 2, self.MAX_COOLDOWN_S)
        s.down_until = time.monotonic() + s.cooldown_s

    def answered(self, s: _Server, dt: float) -> None:
        _stats(s.url).add(dt)
        s.healthy, s.cooldown_s = True, 1.0

    async def _probe(self, s: _Server, session: Any) -> None:
        import aiohttp

        try:
            async with session.get(s.url + "/health", timeout=aiohttp.ClientTimeout(total=2.0)) as r:
                ok = r.status < 500
        except (TimeoutError, aiohttp.ClientError, OSError):
            ok = False
        except asyncio.CancelledError:
            s.probing = False
            raise
        s.probing = False
        if ok:
            s.healthy, s.cooldown_s = True, 1.0
        else:
            self.failed(s)
            _STATS[s.url].failures -= 1  # a failed probe is not a failed request


def policy_urls(base_url: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Normalise one URL, a comma-separated list or a list (``/v1`` suffixes dropped, order kept, no repeats).

    >>> policy_urls("http://a:8000/v1, http://b:8000")
    ('http://a:8000', 'http://b:8000')
    """
    items = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    out: list[str] = []
    for u in items:
        u = str(u).strip().rstrip("/").removesuffix("/v1")
        if u and u not in out:
            out.append(u)
    if not out:
        raise AgentError("no policy server URL given")
    return tuple(out)


def default_model_dir() -> Path:
    """The tiny model's directory (``rowgym.agents.serving.default_model_dir``), cached per
    ``ROWGYM_CACHE``/``HOME`` (an agent is built per worker; the path arithmetic showed in profiles)."""
    key = (os.environ.get("ROWGYM_CACHE"), os.environ.get("HOME"))
    hit = _DEFAULT_DIRS.get(key)
    if hit is None:
        from rowgym.agents.serving import default_model_dir as d

        hit = _DEFAULT_DIRS[key] = Path(d())
    return hit


_DEFAULT_DIRS: dict[tuple[str | None, str | None], Path] = {}


def model_revision(model_dir: Path) -> str | None:
    """The ``params_hash`` of ``model_dir/rowgym_build.json`` (None without one), re-read only when
    the file changes (its size or modification time)."""
    meta = model_dir / "rowgym_build.json"
    try:
        st = os.stat(meta)
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    hit = _REVISIONS.get(meta)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        rev = json.loads(meta.read_text()).get("params_hash")
    except (OSError, ValueError):
        rev = None
    _REVISIONS[meta] = (key, rev)
    return rev


_REVISIONS: dict[Path, tuple[tuple[int, int], str | None]] = {}


_RETRIABLE: tuple[type[BaseException], ...] = ()


def _retriable() -> tuple[type[BaseException], ...]:
    """The errors a request is retried after (aiohttp imported once, not on every request)."""
    global _RETRIABLE
    if not _RETRIABLE:
        import aiohttp

        _RETRIABLE = (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
    return _RETRIABLE


def _same_ids(sent: Any, prompt_ids: list[int], payload: bytes, at: int) -> bool:
    """Whether the prompt ids a server echoed (``sent``, parsed JSON) equal ``prompt_ids``, whose JSON
    starts at offset ``at`` of the request's ``payload``: the same answer as ``list(sent) == prompt_ids``.

    Cheaper for the usual faithful echo: the echo is encoded once and its bytes compared with the
    request's (a memcmp, against a Python comparison per id). Equal bytes mean equal lists: a JSON
    array's text ends where its brackets close, so a match at ``at`` is the whole prompt, and no other
    JSON value encodes like an int. Anything else (different bytes, an echo that cannot be encoded) is
    decided by the plain list comparison.
    """
    if type(sent) is list and len(sent) == len(prompt_ids) and at > 0:
        try:
            if payload.startswith(aio.dumps(sent), at):
                return True
        except (TypeError, ValueError, OverflowError):
            pass
    return (sent if isinstance(sent, list) else list(sent)) == prompt_ids


class VLLMAgent(TokenPolicy):
    """A policy served over HTTP; samples one completion per turn from the token-id prompt."""

    name = "vllm"
    locality: bool = True
    """Keep an episode's turns on one server while it is healthy (its prefix cache); False routes each turn
    by load. A class attribute, not an option: it changes where a turn runs, never what is sampled."""
    lean_http: bool = True
    """Plain ``http://`` servers through the lean client (:mod:`rowgym.agents.http_transport`); False sends
    every request through aiohttp. Same requests, answers and errors either way: only the CPU differs."""

    def __init__(self, base_url: str | list[str] = "http://127.0.0.1:8000", model: str | None = None,
                 model_dir: str | Path | None = None, temperature: float = 1.0, top_p: float = 1.0,
                 max_tokens: int = 256, request_timeout_s: float = 120.0, retry_budget_s: float = 180.0,
                 seed: int | None = None):
        from rowgym.agents.serving import DEFAULT_SERVED_NAME

        # one URL or several; each as http://host:port or the OpenAI-style http://host:port/v1
        self.base_urls = policy_urls(base_url)
        self.base_url = self.base_urls[0] if len(self.base_urls) == 1 else ",".join(self.base_urls)
        self.pool = ServerPool.of(self.base_urls)
        self._server: _Server | None = None
        self.model_dir = Path(model_dir).expanduser() if model_dir else default_model_dir()
        self.model = model or DEFAULT_SERVED_NAME
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.request_timeout_s, self.retry_budget_s = request_timeout_s, retry_budget_s
        self.seed = seed
        self.tokenizer = load_tokenizer(self.model_dir)
        self.conv: TokenConversation | None = None
        self._session: Any = None
        self._lean: Any = None
        self._revision = self._read_revision()
        self._offset: tuple[str, int] | None = None

    def _read_revision(self) -> str | None:
        return model_revision(self.model_dir)

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
        payload = aio.dumps(body)
        data = await self._post("/v1/completions", payload)
        choice = data["choices"][0]
        sent = data.get("prompt_token_ids") or choice.get("prompt_token_ids")
        if sent is not None and not _same_ids(sent, prompt_ids, payload, self._prompt_offset()):
            raise PolicyServerError("the server reports different prompt ids than were sent")
        ids = choice.get("token_ids") or []
        if type(ids) is not list:
            ids = list(ids)
        lps = (choice.get("logprobs") or {}).get("token_logprobs") or []
        if len(lps) != len(ids):
            raise PolicyServerError(f"server returned {len(ids)} token ids but {len(lps)} logprobs; "
                                    "is this vLLM with return_token_ids support?")
        if not all_finite(lps):  # null (what JSON writers make of NaN and the infinities): unusable, unstorable
            raise PolicyServerError(f"server returned a logprob that is not a finite number "
                                    f"({first_non_finite(lps)!r}) for one of {len(ids)} sampled tokens")
        return ids, lps, choice.get("finish_reason")

    def _prompt_offset(self) -> int:
        """Where the prompt's JSON starts in a request body (right after the model's name); 0 if unknown."""
        hit = self._offset
        if hit is None or hit[0] != self.model:
            head = aio.dumps({"model": self.model, "prompt": []})
            at = len(head) - 3 if head.endswith(b'"prompt":[]}') else 0
            hit = self._offset = (self.model, at)
        return hit[1]

    async def reset(self, ctx: Any) -> None:
        self._server = None  # a new conversation: routed by load, then kept on its server
        await super().reset(ctx)

    async def _post(self, path: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
        if self._session is None:
            import aiohttp

            self._session, self._lean = _SharedSession.acquire()
            self._timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        retriable = _RETRIABLE or _retriable()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_budget_s
        delay, attempt, last = 0.5, 0, ""
        payload = body if isinstance(body, bytes) else aio.dumps(body)
        while True:
            attempt += 1
            server = self.pool.pick(self._server if self.locality else None, self._session)
            server.outstanding += 1
            t0 = time.perf_counter()
            try:
                target = self._lean.target(server.url + path) if self.lean_http else None
                if target is not None:
                    status, raw = await self._lean.post(target, payload, self.request_timeout_s)
                else:
                    status, raw = await self._aiohttp_post(server.url + path, payload)
                if status == 200:
                    try:
                        data = aio.loads(raw)
                    except ValueError as e:  # e.g. a NaN literal, which is not JSON: the policy's failure, not the env's
                        raise PolicyServerError(f"policy server {server.url} answered with invalid JSON: {e}") from None
                    self.pool.answered(server, time.perf_counter() - t0)
                    self._server = server
                    return data
                text = (raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))[:500]
                if status < 500 and status != 429:
                    raise PolicyServerError(f"policy server {server.url} rejected the request ({status}): {text}")
                last = f"{server.url}: HTTP {status}: {text}"
            except retriable as e:
                last = f"{server.url}: {type(e).__name__}: {e}"
            finally:
                server.outstanding -= 1
            self.pool.failed(server)
            if self.pool.healthy() and loop.time() < deadline:
                continue  # fail over at once: another server is healthy
            if loop.time() + delay > deadline:
                where = self.base_url if len(self.base_urls) == 1 else f"{len(self.base_urls)} servers"
                raise PolicyServerError(f"policy server at {where} unavailable after {attempt} attempts "
                                        f"over {self.retry_budget_s:.0f}s; last error: {last}")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 8.0)

    async def _aiohttp_post(self, url: str, payload: bytes) -> tuple[int, bytes | str]:
        """(status, body): the bytes of a 200, else the answer's text."""
        async with self._session.post(url, data=payload, headers=aio.JSON_HEADERS, timeout=self._timeout) as r:
            return (200, await r.read()) if r.status == 200 else (r.status, await r.text())

    async def aclose(self) -> None:
        if self._session is not None:
            self._session = self._lean = None
            await _SharedSession.release()
