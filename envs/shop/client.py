"""What an environment uses to talk to the shop's backend (never the browser's view).

>>> import asyncio  # doctest: +SKIP
>>> from rowgym.envs.shop.client import ShopClient  # doctest: +SKIP
>>> async def demo():  # doctest: +SKIP
...     async with ShopClient("http://127.0.0.1:8765") as shop:
...         created = await shop.create_session("buy a red t-shirt", join_link=False)
...         # context.add_cookies([shop.browser_cookie(created)]), then the browser shops...
...         return await shop.report(created.sid)

``report`` returns the session's :class:`~.models.SessionReport`; pass it to
:func:`~.instructions.score` for the final reward.

Every failure is a :class:`~.errors.ShopServerError` (or :class:`~.errors.GraderAuthError`)
whose message names what was being done and the URL, never an empty string: httpx's
``ConnectTimeout`` stringifies to ``''``. Connection errors to the local server (refused,
timed out, pool exhausted: a server busy with 50 episodes) are retried with exponential
backoff before they fail an episode.
"""

from __future__ import annotations

import asyncio
import random
import re

import httpx

from rowgym.envs.shop.errors import GraderAuthError, ShopServerError
from rowgym.envs.shop.models import CreateSession, SessionCreated, SessionReport
from rowgym.envs.shop.secret import HEADER, load_secret

#: Errors that mean the request never reached the server (safe to send again).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Errors of a kept-alive connection the server closed under us (the request was not processed).
_STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_SID_IN_URL = re.compile(r"(/_grader/session/)[^/?#\s]+")


def redact(url: str) -> str:
    """``url`` without the session id (error messages end up in run records)."""
    return _SID_IN_URL.sub(r"\1<sid>", url)


def describe(exc: BaseException) -> str:
    """``Type: message`` with a stand-in for exceptions whose message is empty."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else f"{type(exc).__name__} (no detail from the library)"


class ShopClient:
    """Async client for the shop's grader API.

    Args:
        base_url: e.g. ``ensure_running()``'s return value.
        secret: Grader secret; default :func:`~.secret.load_secret`.
        timeout: Per-request timeout in seconds (reading the answer).
        connect_timeout: Seconds to wait for one connection attempt.
        retries: Extra attempts after a connection error, with exponential backoff from ``backoff_s``.
        backoff_s: The first backoff (doubling, with jitter, capped at 4 s).
        transport: Optional httpx transport (``httpx.ASGITransport(app)`` in tests).
    """

    def __init__(self, base_url: str, *, secret: str | None = None, timeout: float = 30.0,
                 connect_timeout: float = 10.0, retries: int = 6, backoff_s: float = 0.1,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff_s = retries, backoff_s
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=transport,
                                       timeout=httpx.Timeout(timeout, connect=connect_timeout, pool=timeout),
                                       limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                                       headers={HEADER: load_secret(secret)})

    async def __aenter__(self) -> ShopClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def _send(self, what: str, method: str, url: str, **kw: object) -> httpx.Response:
        """Send one request; connection failures are retried, then raised with a full reason.

        uvicorn closes idle keep-alive connections after 5 s; a request that races that close
        fails with "Server disconnected without sending a response". The server never saw it,
        so sending it once more on a fresh connection is safe (once: a second such failure is real).
        """
        stale_retried = False
        for attempt in range(self.retries + 1):
            try:
                return await self._http.request(method, url, **kw)
            except _STALE as e:
                if stale_retried:
                    raise self._error(what, method, url, e, attempt + 1) from e
                stale_retried = True
            except _NOT_SENT as e:
                if attempt == self.retries:
                    raise self._error(what, method, url, e, attempt + 1) from e
                delay = min(4.0, self.backoff_s * 2 ** attempt)
                await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: 50 workers do not retry in step
            except httpx.HTTPError as e:  # timeouts while reading, protocol errors: not safe to resend
                raise self._error(what, method, url, e, attempt + 1) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, what: str, method: str, url: str, e: BaseException, attempts: int) -> ShopServerError:
        return ShopServerError(f"shop server: {what} failed ({method} {redact(self.base_url + url)}, "
                               f"{attempts} attempt(s)): {describe(e)}")

    def _check(self, resp: httpx.Response) -> None:
        if resp.status_code == 403:
            raise GraderAuthError(f"{self.base_url} refused the grader secret: the server was started with "
                                  "another one; stop it (make env-down) or set the same ROWGYM_SHOP_SECRET")
        if resp.status_code >= 400:
            body = resp.text[:200].strip() or "(empty body)"
            raise ShopServerError(f"{resp.request.method} {redact(str(resp.request.url))} -> {resp.status_code}: {body}")

    async def create_session(self, instruction: str | None = None, *, join_link: bool = True) -> SessionCreated:
        """A fresh, empty shop session (optionally showing ``instruction`` on every page).

        ``join_link=False`` issues no single-use join URL: the caller sets :meth:`browser_cookie`.
        """
        body = CreateSession(instruction=instruction, join_link=join_link).model_dump()
        resp = await self._send("creating a session", "POST", "/_grader/sessions", json=body)
        self._check(resp)
        return SessionCreated.model_validate_json(resp.content)

    def start_url(self, created: SessionCreated) -> str:
        """The single-use URL a browser context opens to join the session (sets its cookie)."""
        if created.start_path is None:
            raise ShopServerError("this session was created with join_link=False: use browser_cookie() instead")
        return self.base_url + created.start_path

    def browser_cookie(self, created: SessionCreated) -> dict[str, object]:
        """The session cookie in Playwright's ``BrowserContext.add_cookies`` form."""
        return {"name": created.cookie_name, "value": created.cookie, "url": self.base_url + "/",
                "httpOnly": True, "sameSite": "Lax"}

    async def report(self, sid: str) -> SessionReport:
        """The session's cart and placed orders, as the backend recorded them."""
        resp = await self._send("reading a session's report", "GET", f"/_grader/session/{sid}")
        self._check(resp)
        return SessionReport.model_validate_json(resp.content)
