"""The lean HTTP client of the vLLM agent (rowgym.agents.http_transport) against a raw socket server:
answer framings, keep-alive connections the server closes, and the same errors and retry rules as the
aiohttp path (each error test runs the agent over both transports and compares)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from rowgym import aio
from rowgym.agents import http_transport, llm
from rowgym.errors import PolicyServerError

pytest.importorskip("transformers", reason="the vllm agent needs the tiny model's tokenizer")

PROMPT = [151644, 8948, 198, 7771, 13, 151645, 198]
SAMPLED = [27, 14172, 151645]
LOGPROBS = [-0.5, -0.25, -0.125]
ANSWER = aio.dumps({"choices": [{"index": 0, "text": "x", "finish_reason": "stop", "token_ids": SAMPLED,
                                 "logprobs": {"token_logprobs": LOGPROBS}}]})


@pytest.fixture(autouse=True)
def _fresh_pools(fresh_server_pools):
    """Every test here starts and ends with no server pools (tests/conftest.py)."""


def length_framed(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
            "\r\n").encode() + body


def chunked(body: bytes, status: str = "200 OK") -> bytes:
    parts = [body[i:i + 7] for i in range(0, len(body), 7)]  # many small chunks
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n")


class RawServer:
    """An HTTP/1.1 server on a raw socket: ``respond(request_no, request_no_on_this_connection)`` gives the
    bytes to send (None: close the connection without answering); ``close_after`` closes each connection
    right after its answer (a server whose keep-alive timeout is zero)."""

    def __init__(self, respond: Callable[[int, int], bytes | None], close_after: bool = False, delay_s: float = 0):
        self.respond, self.close_after, self.delay_s = respond, close_after, delay_s
        self.requests: list[bytes] = []
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        on_conn = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                self.requests.append(body)
                out = self.respond(len(self.requests), on_conn)
                on_conn += 1
                if out is None:
                    break
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(out)
                await writer.drain()
                if self.close_after or b"Connection: close" in out:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()


def agent(url: str, model_dir: Any, **kw: Any) -> llm.VLLMAgent:
    return llm.VLLMAgent(url, model_dir=model_dir, max_tokens=64, **kw)


async def turns(a: llm.VLLMAgent, n: int) -> list[Any]:
    try:
        return [await a.generate(PROMPT + [i], i) for i in range(n)]
    finally:
        await a.aclose()


def failures(url: str) -> int:
    return llm.server_stats().get(url, {"failures": 0})["failures"]


@pytest.mark.parametrize("framing", [length_framed, chunked,
                                     lambda b: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b],
                         ids=["content-length", "chunked", "until-close"])
async def test_each_answer_framing_gives_the_same_turn(tiny_model_dir, framing):
    async with RawServer(lambda n, k: framing(ANSWER)) as srv:
        got = await turns(agent(srv.url, tiny_model_dir), 3)
    assert got == [(SAMPLED, LOGPROBS, "stop")] * 3
    assert len(srv.requests) == 3 and failures(srv.url) == 0
    # keep-alive: the framed answers reuse one connection, an answer that ends with the connection cannot
    assert srv.connections == (3 if "close" in framing(b"").decode() else 1)


async def test_a_gzip_answer_is_decoded(tiny_model_dir):
    import gzip

    async with RawServer(lambda n, k: length_framed(gzip.compress(ANSWER), extra="Content-Encoding: gzip\r\n")) as srv:
        assert await turns(agent(srv.url, tiny_model_dir), 1) == [(SAMPLED, LOGPROBS, "stop")]


async def test_a_server_that_closes_idle_connections_is_not_marked_down(tiny_model_dir):
    async with RawServer(lambda n, k: length_framed(ANSWER), close_after=True) as srv:
        a = agent(srv.url, tiny_model_dir)
        got = [await a.generate(PROMPT, 1)]
        await asyncio.sleep(0.05)  # the close reaches the client while the connection is idle
        got.append(await a.generate(PROMPT, 2))
        await a.aclose()
    assert got == [(SAMPLED, LOGPROBS, "stop")] * 2
    assert srv.connections == 2 and failures(srv.url) == 0


async def test_a_keep_alive_connection_closed_as_the_request_goes_out_is_retried_once_fresh(tiny_model_dir):
    """The race an idle timeout makes: the request goes out on a reused connection, the server closes it
    unanswered. The lean client sends it again on a new connection; the server is not marked down."""
    async with RawServer(lambda n, k: length_framed(ANSWER) if k == 0 else None) as srv:
        got = await turns(agent(srv.url, tiny_model_dir), 3)
    assert got == [(SAMPLED, LOGPROBS, "stop")] * 3
    assert len(srv.requests) == 5 and srv.requests[1] == srv.requests[2]  # turns 2 and 3 sent twice
    assert srv.connections == 3 and failures(srv.url) == 0


async def test_a_fresh_connection_closed_unanswered_is_a_server_failure(tiny_model_dir):
    """Only a reused connection earns the free retry: a new one closed unanswered is the server failing."""
    async with RawServer(lambda n, k: None if n == 1 else length_framed(ANSWER)) as srv:
        got = await turns(agent(srv.url, tiny_model_dir), 1)
    assert got == [(SAMPLED, LOGPROBS, "stop")]
    assert len(srv.requests) == 2 and failures(srv.url) == 1


@pytest.mark.parametrize("framing", [length_framed, chunked], ids=["content-length", "chunked"])
async def test_a_500_then_success_is_retried_with_the_same_bytes(tiny_model_dir, framing):
    async with RawServer(lambda n, k: framing(b'{"error": "busy"}', "500 Internal Server Error") if n == 1
                         else framing(ANSWER)) as srv:
        got = await turns(agent(srv.url, tiny_model_dir), 1)
    assert got == [(SAMPLED, LOGPROBS, "stop")]
    assert len(srv.requests) == 2 and srv.requests[0] == srv.requests[1]
    assert {k: v for k, v in llm.server_stats()[srv.url].items() if "latency" not in k} == {"requests": 1,
                                                                                             "failures": 1}


async def error_of(lean: bool, url: str, model_dir: Any, monkeypatch: Any, **kw: Any) -> str:
    """The PolicyServerError a turn ends with, over the lean client or aiohttp (``lean``)."""
    monkeypatch.setattr(llm.VLLMAgent, "lean_http", lean)
    llm.ServerPool.pools.clear()
    llm.reset_server_stats()
    with pytest.raises(PolicyServerError) as e:
        await turns(agent(url, model_dir, **kw), 1)
    return str(e.value)


async def test_a_4xx_fails_at_once_with_the_same_error_as_over_aiohttp(tiny_model_dir, monkeypatch):
    async with RawServer(lambda n, k: chunked(b'{"error": "prompt too long"}', "400 Bad Request")) as srv:
        msgs = [await error_of(lean, srv.url, tiny_model_dir, monkeypatch) for lean in (True, False)]
        assert failures(srv.url) == 0
    assert msgs[0] == msgs[1] == f'policy server {srv.url} rejected the request (400): {{"error": "prompt too long"}}'
    assert len(srv.requests) == 2  # one each, not retried


async def test_a_dead_port_fails_with_the_same_error_as_over_aiohttp(tiny_model_dir, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    msgs = [await error_of(lean, url, tiny_model_dir, monkeypatch, retry_budget_s=0.2) for lean in (True, False)]
    assert msgs[0] == msgs[1]
    assert msgs[0].startswith(f"policy server at {url} unavailable after 1 attempts over 0s; last error: {url}: "
                              f"ClientConnectorError: Cannot connect to host 127.0.0.1:")


async def test_a_timeout_fails_with_the_same_error_as_over_aiohttp_and_the_next_turn_reconnects(tiny_model_dir,
                                                                                                monkeypatch):
    async with RawServer(lambda n, k: length_framed(ANSWER), delay_s=1.0) as srv:
        msgs = [await error_of(lean, srv.url, tiny_model_dir, monkeypatch, request_timeout_s=0.1,
                               retry_budget_s=0.05) for lean in (True, False)]
        assert msgs[0] == msgs[1] == (f"policy server at {srv.url} unavailable after 1 attempts over 0s; "
                                      f"last error: {srv.url}: TimeoutError: ")
        # a timed-out connection is dropped, not reused: its late answer must not become the next turn's
        monkeypatch.setattr(llm.VLLMAgent, "lean_http", True)
        srv.delay_s = 0.0
        a = agent(srv.url, tiny_model_dir, request_timeout_s=5.0)
        assert await turns(a, 1) == [(SAMPLED, LOGPROBS, "stop")]


async def test_garbage_instead_of_http_is_the_same_error_as_over_aiohttp(tiny_model_dir, monkeypatch):
    async with RawServer(lambda n, k: b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as srv:
        errors = []
        for lean in (True, False):
            monkeypatch.setattr(llm.VLLMAgent, "lean_http", lean)
            with pytest.raises(aiohttp.ClientResponseError) as e:  # not a server outage: not retried
                await turns(agent(srv.url, tiny_model_dir), 1)
            errors.append(e.value.status)
    assert errors == [400, 400] and len(srv.requests) == 2


async def test_only_plain_http_urls_take_the_lean_client(tiny_model_dir, monkeypatch):
    assert http_transport.lean_target("http://h:8000/v1/completions").port == 8000
    assert http_transport.lean_target("http://h/v1/completions").head.startswith(b"POST /v1/completions HTTP/1.1\r\n"
                                                                                 b"Host: h\r\n")
    for url in ("https://h:8000/v1/completions", "http://u:p@h:8000/v1/completions", "http://h:8000/x?q=1"):
        assert http_transport.lean_target(url) is None, url

    lean_posts: list[Any] = []
    aiohttp_posts: list[str] = []
    real_lean, real_aiohttp = http_transport.LeanHTTP.post, aiohttp.ClientSession.post

    def spy_lean(self: Any, target: Any, *a: Any) -> Any:
        lean_posts.append(target)
        return real_lean(self, target, *a)

    def spy_aiohttp(self: Any, url: str, **kw: Any) -> Any:
        aiohttp_posts.append(str(url))
        return real_aiohttp(self, url, **kw)

    monkeypatch.setattr(http_transport.LeanHTTP, "post", spy_lean)
    monkeypatch.setattr(aiohttp.ClientSession, "post", spy_aiohttp)
    async with RawServer(lambda n, k: length_framed(ANSWER)) as srv:
        assert await turns(agent(srv.url, tiny_model_dir), 1) == [(SAMPLED, LOGPROBS, "stop")]
        assert len(lean_posts) == 1 and aiohttp_posts == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        https = f"https://127.0.0.1:{s.getsockname()[1]}"  # nothing listens: fails, but over aiohttp
    with pytest.raises(PolicyServerError, match="ClientConnectorError"):
        await turns(agent(https, tiny_model_dir, retry_budget_s=0.2), 1)
    assert len(lean_posts) == 1 and aiohttp_posts == [https + "/v1/completions"]


async def test_connections_opened_at_once_share_one_name_lookup_and_an_ip_needs_none(monkeypatch):
    lookups: list[str] = []
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def counting(host: str, *a: Any, **kw: Any) -> Any:
        lookups.append(host)
        await asyncio.sleep(0.05)  # still in flight while every other connection asks
        return await real(host, *a, **kw)

    monkeypatch.setattr(loop, "getaddrinfo", counting)
    async with RawServer(lambda n, k: length_framed(ANSWER)) as srv:
        port = srv.url.rsplit(":", 1)[1]
        for host, want in (("localhost", ["localhost"]), ("127.0.0.1", [])):
            lean = http_transport.LeanHTTP()
            target = lean.target(f"http://{host}:{port}/v1/completions")
            try:
                answers = await asyncio.gather(*(lean.post(target, b"{}", 5.0) for _ in range(20)))
            finally:
                lean.close()
            assert answers == [(200, ANSWER)] * 20 and lookups == want, host
            lookups.clear()


async def test_a_failed_name_lookup_fails_every_waiting_connection_with_aiohttps_error():
    lean = http_transport.LeanHTTP()
    target = lean.target("http://no-such-host.invalid:8000/v1/completions")
    try:
        got = await asyncio.gather(*(lean.post(target, b"{}", 5.0) for _ in range(5)), return_exceptions=True)
    finally:
        lean.close()
    assert all(isinstance(e, aiohttp.ClientConnectorError) for e in got), got
    assert not lean.resolving  # nothing left in flight: the next connection looks the name up again
