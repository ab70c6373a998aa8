"""A lean keep-alive HTTP/1.1 client for the policy requests to plain ``http://`` servers.

Why: with hundreds of episodes in flight the rollout client is CPU-bound, and aiohttp's request
machinery costs 0.45-0.5 ms of CPU per policy request on a small VM (measured against the bench's
mock; aiosonic 0.41-0.53 ms, h11 under a bare asyncio protocol 0.38-0.47 ms). A bare asyncio
protocol around ``httptools`` — the C HTTP parser (llhttp) uvicorn uses — costs 0.13-0.18 ms.

What it does: ``POST`` of ready JSON bytes, answers framed by Content-Length, chunked or the
connection's end; one pool of idle connections per (host, port) and event loop; one total timeout
per request (connecting included), like aiohttp's ``ClientTimeout(total=...)``. What it does not
(https, proxies, credentials in the URL, redirects) stays with aiohttp: :func:`lean_target` says
which URLs may come here.

Errors are aiohttp's own exception types, raised where aiohttp would raise them, so the agent's
retry and failover rules and its messages do not change with the transport: a refused or failed
connect is ``ClientConnectorError``, a connection lost before the answer ``ServerDisconnectedError``
(``ClientOSError`` with the OS error), a truncated body ``ClientPayloadError``, an answer that is not
HTTP ``ClientResponseError``, the timeout ``TimeoutError``. One difference, on purpose: a reused
keep-alive connection that the server closed just as the request went out (nothing answered) is
retried once on a fresh connection, so an idle-timeout close never counts as a server failure.
"""

from __future__ import annotations

import asyncio
import math
import socket
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohappyeyeballs
import aiohttp
import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = ["LeanHTTP", "lean_target"]

DNS_TTL_S = 300.0
"""How long a host's resolved addresses are reused (the agent's aiohttp connector's ``ttl_dns_cache``)."""
_AI_ADDRCONFIG = getattr(socket, "AI_ADDRCONFIG", 0)
_DNS_ERROR = getattr(aiohttp, "ClientConnectorDNSError", aiohttp.ClientConnectorError)  # aiohttp >= 3.10


@dataclass(frozen=True)
class _ConnKey:
    """What aiohttp's ``ClientConnectorError`` reads of its connection key (host, port, ssl) to print itself."""

    host: str
    port: int
    ssl: bool = True  # aiohttp's "default" TLS setting: the message reads "ssl:default" as aiohttp's does


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    head: bytes  # the request line and headers up to "Content-Length: "


_TARGETS: dict[str, _Target | None] = {}


def lean_target(url: str) -> _Target | None:
    """Where a ``POST`` to ``url`` goes, or None if it is not a plain ``http://`` URL this client serves."""
    if url in _TARGETS:
        return _TARGETS[url]
    t = None
    try:
        u = urlsplit(url)
        port = u.port or 80
    except ValueError:
        u = None
    if u is not None and u.scheme == "http" and u.hostname and not u.username and not u.password \
            and not u.query and not u.fragment and "\r" not in url and "\n" not in url:
        host = u.hostname
        netloc = f"[{host}]" if ":" in host else host
        if u.port is not None:
            netloc += f":{u.port}"
        head = (f"POST {u.path or '/'} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: rowgym\r\nAccept: */*\r\n"
                "Content-Type: application/json\r\nContent-Length: ").encode("latin-1")
        t = _Target(host, port, head)
    if len(_TARGETS) < 1024:
        _TARGETS[url] = t
    return t


def _literal_address(host: str, port: int) -> list[Any] | None:
    """``getaddrinfo``'s answer for an IP literal (None for a name).

    >>> _literal_address("127.0.0.1", 80)[0][4], _literal_address("::1", 80)[0][4], _literal_address("localhost", 80)
    (('127.0.0.1', 80), ('::1', 80, 0, 0), None)
    """
    for family, addr in ((socket.AF_INET, (host, port)), (socket.AF_INET6, (host, port, 0, 0))):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr)]
    return None


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request at a time; httptools frames the answers."""

    def __init__(self, pool: dict[tuple[str, int], list[_Connection]], key: tuple[str, int]):
        self.pool, self.key = pool, key
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.status = 0
        self.framed = False  # the answer has a Content-Length or is chunked (else it ends with the connection)
        self.encoding = b""
        self.received = False  # any byte of the current answer arrived
        self.lost = False

    # -- asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection's state is unknown, drop it
            self.transport.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(self._parse_error(e))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        idle = self.pool.get(self.key)
        if idle and self in idle:
            idle.remove(self)
        w = self.waiter
        if w is None or w.done():
            return
        if self.status and not self.framed and exc is None:
            self._done()  # an answer without length: its end is the connection's end
        elif self.status:
            self._fail(aiohttp.ClientPayloadError(f"Response payload is not completed: {exc!r}"))
        elif isinstance(exc, OSError):
            self._fail(aiohttp.ClientOSError(*exc.args))
        else:
            self._fail(aiohttp.ServerDisconnectedError())

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or name == b"transfer-encoding":
            self.framed = True
        elif name == b"content-encoding":
            self.encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.status, self.body, self.framed, self.encoding = 0, [], False, b""
            return
        self._done()
        if not self.parser.should_keep_alive():
            self.transport.close()

    # -- the client side
    def _done(self) -> None:
        body = b"".join(self.body)
        if self.encoding and self.encoding != b"identity":
            try:  # not asked for (no Accept-Encoding is sent), but aiohttp would decode it too
                body = zlib.decompress(body, wbits=47 if self.encoding in (b"gzip", b"x-gzip") else 15)
            except zlib.error as e:
                self._fail(aiohttp.ClientPayloadError(f"Can not decode content-encoding: {self.encoding!r}: {e}"))
                return
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_result((self.status, body))

    def _fail(self, exc: BaseException) -> None:
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_exception(exc)

    def _parse_error(self, e: Exception) -> Exception:
        if self.status:
            return aiohttp.ClientPayloadError(f"Response payload is not completed: {e!r}")
        url = URL.build(scheme="http", host=self.key[0], port=self.key[1])  # what aiohttp raises for a non-HTTP answer
        info = aiohttp.RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)
        return aiohttp.ClientResponseError(info, (), status=400, message=f"Invalid response: {e}")

    async def request(self, data: bytes) -> tuple[int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.body, self.status, self.framed, self.encoding, self.received = [], 0, False, b"", False
        self.transport.write(data)
        return await self.waiter


class LeanHTTP:
    """Keep-alive connections of one event loop, pooled per (host, port); ``post`` returns (status, body)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.idle: dict[tuple[str, int], list[_Connection]] = {}
        self.addresses: dict[tuple[str, int], tuple[float, list[Any]]] = {}  # resolved, until a time
        self.resolving: dict[tuple[str, int], asyncio.Task[list[Any]]] = {}  # lookups in flight
        self.closed = False

    target = staticmethod(lean_target)

    async def post(self, target: _Target, payload: bytes, timeout_s: float) -> tuple[int, bytes]:
        data = b"%s%d\r\n\r\n%s" % (target.head, len(payload), payload)
        key = (target.host, target.port)
        async with asyncio.timeout(timeout_s):
            idle = self.idle.get(key)
            while idle:
                conn = idle.pop()
                if not conn.lost and not conn.transport.is_closing():
                    try:
                        return await self._exchange(conn, data)
                    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                        if conn.received:
                            raise
                    break  # the server closed this idle connection as the request went out: once more, fresh
            return await self._exchange(await self._connect(key), data)

    async def _exchange(self, conn: _Connection, data: bytes) -> tuple[int, bytes]:
        try:
            answer = await conn.request(data)
        except BaseException:
            conn.transport.abort()  # a timeout or cancel mid-answer: the connection's state is unknown
            raise
        if not conn.lost and not conn.transport.is_closing() and not self.closed:
            self.idle.setdefault(conn.key, []).append(conn)
        return answer

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        """A new connection made as aiohttp makes one (the same resolver call, happy eyeballs, errors)."""
        host, port = key
        try:
            infos = self.addresses.get(key)
            found = infos[1] if infos is not None and self.loop.time() <= infos[0] else await self._resolve(key)
            sock = await aiohappyeyeballs.start_connection(list(found), happy_eyeballs_delay=0.25, loop=self.loop)
            _, conn = await self.loop.create_connection(lambda: _Connection(self.idle, key), sock=sock)
        except aiohttp.ClientConnectorError:
            raise
        except OSError as e:
            raise aiohttp.ClientConnectorError(_ConnKey(host, port), e) from e  # type: ignore[arg-type]
        return conn

    async def _resolve(self, key: tuple[str, int]) -> list[Any]:
        """The addresses of ``key``: an IP literal's own (aiohttp does not look those up either), else one
        ``getaddrinfo`` shared by every connection that waits for it (hundreds open at a collection's start)."""
        literal = _literal_address(*key)
        if literal is not None:
            self.addresses[key] = (math.inf, literal)
            return literal
        lookup = self.resolving.get(key)
        if lookup is None:
            lookup = self.resolving[key] = self.loop.create_task(self._lookup(key))
        return await asyncio.shield(lookup)  # a waiter's timeout does not cancel the others' lookup

    async def _lookup(self, key: tuple[str, int]) -> list[Any]:
        host, port = key
        try:
            found = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=_AI_ADDRCONFIG)
        except socket.gaierror as e:
            raise _DNS_ERROR(_ConnKey(host, port), e) from e  # type: ignore[arg-type]
        finally:
            del self.resolving[key]
        self.addresses[key] = (self.loop.time() + DNS_TTL_S, found)
        return found

    def close(self) -> None:
        self.closed = True
        for conns in self.idle.values():
            for c in conns:
                c.transport.close()
        self.idle.clear()

