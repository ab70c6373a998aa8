"""What an environment uses to talk to the shop's backend (never the browser's view).

>>> import asyncio  # doctest: +SKIP
>>> from rowgym.envs.shop.client import ShopClient  # doctest: +SKIP
>>> async def demo():  # doctest: +SKIP
...     async with ShopClient("http://127.0.0.1:8765") as shop:
...         created = await shop.create_session("buy a red t-shirt")
...         # the browser context opens shop.start_url(created), then shops...
...         return await shop.report(created.sid)

``report`` returns the session's :class:`~.models.SessionReport`; pass it to
:func:`~.instructions.score` for the final reward.
"""

from __future__ import annotations

import httpx

from rowgym.envs.shop.errors import GraderAuthError, ShopServerError
from rowgym.envs.shop.models import CreateSession, SessionCreated, SessionReport
from rowgym.envs.shop.secret import HEADER, load_secret


class ShopClient:
    """Async client for the shop's grader API.

    Args:
        base_url: e.g. ``ensure_running()``'s return value.
        secret: Grader secret; default :func:`~.secret.load_secret`.
        timeout: Per-request timeout in seconds.
        transport: Optional httpx transport (``httpx.ASGITransport(app)`` in tests).
    """

    def __init__(self, base_url: str, *, secret: str | None = None, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport,
                                       headers={HEADER: load_secret(secret)})

    async def __aenter__(self) -> ShopClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def _send(self, method: str, url: str, **kw: object) -> httpx.Response:
        # uvicorn closes idle keep-alive connections after 5 s; a request that races that close
        # fails with "Server disconnected without sending a response". The server never saw it,
        # so sending it once more on a fresh connection is safe.
        try:
            return await self._http.request(method, url, **kw)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return await self._http.request(method, url, **kw)

    def _check(self, resp: httpx.Response) -> None:
        if resp.status_code == 403:
            raise GraderAuthError(f"{self.base_url} refused the grader secret: the server was started with "
                                  "another one; stop it (make env-down) or set the same ROWGYM_SHOP_SECRET")
        if resp.status_code >= 400:
            raise ShopServerError(f"{resp.request.method} {resp.request.url} -> {resp.status_code}: {resp.text[:200]}")

    async def create_session(self, instruction: str | None = None) -> SessionCreated:
        """A fresh, empty shop session (optionally showing ``instruction`` on every page)."""
        resp = await self._send("POST", "/_grader/sessions", json=CreateSession(instruction=instruction).model_dump())
        self._check(resp)
        return SessionCreated.model_validate_json(resp.content)

    def start_url(self, created: SessionCreated) -> str:
        """The URL a browser context opens to join the session (sets its cookie)."""
        return self.base_url + created.start_path

    async def report(self, sid: str) -> SessionReport:
        """The session's cart and placed orders, as the backend recorded them."""
        resp = await self._send("GET", f"/_grader/session/{sid}")
        self._check(resp)
        return SessionReport.model_validate_json(resp.content)
