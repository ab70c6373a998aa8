"""Serve one environment id over HTTP: many concurrent, isolated sessions (one per episode).

    ROWGYM_ENV_TOKEN=secret rowgym env serve rowgym/ToolAPI-Retail-v0 --port 8100
    # elsewhere:  ROWGYM_ENV_TOKEN=secret rowgym collect http://host:8100/rowgym/ToolAPI-Retail-v0 ...

>>> srv = EnvServer("rowgym/ToolAPI-Retail-v0", token="t")
>>> srv.info()["env_id"], len(srv.info()["tools"]) > 0
('rowgym/ToolAPI-Retail-v0', True)

Each session owns its own env instance (``rowgym.make(env_id, **env_kwargs)``), built by
the ``POST /v1/sessions`` that resets it and closed by ``DELETE``, by the next session of
the same client (``replaces``), or by the reaper once idle for ``idle_timeout_s``. Calls
on one session are serialised; sessions run concurrently on one event loop (the envs'
async twins). Every request needs the bearer token: a missing or wrong one gets
``401 Unauthorized`` with no body beyond that (compared in constant time), whatever the
path. The protocol is described in :mod:`rowgym.envs.remote.protocol`.

**Privileged resets.** Scripted experts read the task itself. A session created with
``privileged: true`` gets the task's JSON in the reset answer (``GET /v1/sessions/ID/task``
asks for it later); the server counts these (``/v1/health``) and logs each one (seed and
session). ``allow_privileged=False``
(``--no-privileged``) refuses them with 403, for a server that only policies may use.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

import rowgym
from rowgym.envs.remote import protocol as P

log = logging.getLogger(__name__)

CLOSED_IDS_KEPT = 65_536
"""Closed (or replaced before they existed) session ids remembered, so they are never opened again."""


@dataclass
class _Session:
    env: Any
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EnvServer:
    """An aiohttp app serving ``env_id``.

    Args:
        env_id: A registered environment id.
        token: The bearer token clients must send (required: generate one with ``secrets.token_urlsafe``).
        env_kwargs: Keyword arguments for every session's env.
        idle_timeout_s: A session unused this long is closed.
        max_sessions: More open sessions than this are refused with 503.
        allow_privileged: Serve the task to privileged resets (scripted experts).
    """

    def __init__(self, env_id: str, *, token: str, env_kwargs: dict[str, Any] | None = None,
                 idle_timeout_s: float = 600.0, max_sessions: int = 4096, allow_privileged: bool = True):
        if not token:
            raise rowgym.RowgymError("an env server needs a token (--token or $ROWGYM_ENV_TOKEN)")
        self.env_id, self.token = env_id, token
        self.env_kwargs = dict(env_kwargs or {})
        self.idle_timeout_s, self.max_sessions, self.allow_privileged = idle_timeout_s, max_sessions, allow_privileged
        self.sessions: dict[str, _Session] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self.privileged_resets = 0
        self.expired = 0
        self._probe = rowgym.make(env_id, **self.env_kwargs)  # info, splits and task hashes
        self._info = self._make_info()
        self._runner: Any = None
        self._reaper: asyncio.Task | None = None
        self.port: int | None = None

    def _make_info(self) -> dict[str, Any]:
        env = self._probe
        return {"protocol": P.PROTOCOL_VERSION, "env_id": env.env_id, "version": str(env.version),
                "system_prompt": env.system_prompt, "tools": env.tools, "reward_versions": env.reward_versions(),
                "max_turns": int(getattr(env, "max_turns", 0) or 0), "allow_privileged": self.allow_privileged}

    def info(self) -> dict[str, Any]:
        return self._info

    # ------------------------------------------------------------------ app
    def app(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
            got = request.headers.get("Authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {self.token}".encode()):
                return web.Response(status=401, text="401: Unauthorized")
            return await handler(request)

        app = web.Application(middlewares=[auth], client_max_size=P.MAX_BODY_BYTES)
        app.router.add_get("/v1/info", self._get_info)
        app.router.add_get("/v1/health", self._health)
        app.router.add_post("/v1/splits", self._splits)
        app.router.add_post("/v1/task_hashes", self._task_hashes)
        app.router.add_post("/v1/sessions", self._create)
        app.router.add_post("/v1/sessions/{sid}", self._step)
        app.router.add_get("/v1/sessions/{sid}/task", self._task)
        app.router.add_delete("/v1/sessions/{sid}", self._delete)
        return app

    @staticmethod
    def _json(obj: Any, status: int = 200) -> Any:
        from aiohttp import web

        return web.Response(status=status, body=P.dumps(obj), content_type="application/json")

    def _bad(self, message: str, status: int = 400, kind: str = "usage") -> Any:
        return self._json({"error": {"kind": kind, "type": "BadRequest", "message": message}}, status)

    async def _body(self, request: Any, model: type[BaseModel]) -> BaseModel:
        return model.model_validate(P.loads(await request.read()))

    async def _get_info(self, request: Any) -> Any:
        return self._json(self._info)

    async def _health(self, request: Any) -> Any:
        return self._json({"ok": True, "sessions": len(self.sessions), "privileged_resets": self.privileged_resets,
                           "expired": self.expired})

    async def _splits(self, request: Any) -> Any:
        try:
            b = await self._body(request, P.SplitsBody)
            splits = self._probe.splits
            if b.seeds is not None:
                return self._json({"splits": [splits.split_of(s).value for s in b.seeds]})
            return self._json({"seeds": splits.seeds(b.split, b.n, start=b.start)})
        except (ValidationError, ValueError, rowgym.RowgymError) as e:
            return self._bad(str(e))

    async def _task_hashes(self, request: Any) -> Any:
        try:
            b = await self._body(request, P.HashesBody)
            return self._json({"hashes": [self._probe.task_hash(s) for s in b.seeds]})
        except (ValidationError, ValueError) as e:
            return self._bad(str(e))

    async def _create(self, request: Any) -> Any:
        try:
            b = await self._body(request, P.CreateSession)
        except (ValidationError, ValueError) as e:
            return self._bad(str(e))
        if b.privileged and not self.allow_privileged:
            return self._bad("this server does not serve tasks to privileged agents", 403)
        for old in b.replaced():
            await self._close(old)
        sid = b.session_id or uuid.uuid4().hex
        if sid in self.sessions or sid in self._closed:
            return self._bad(f"session {sid!r} exists or was closed already: propose a new id", 409)
        if len(self.sessions) >= self.max_sessions:
            return self._bad(f"{len(self.sessions)} sessions open, the server's limit", 503, kind="env")
        try:
            env = rowgym.make(self.env_id, **self.env_kwargs)
        except Exception as e:
            return self._error(e)
        sess = self.sessions[sid] = _Session(env)
        try:
            async with sess.lock:
                obs, info = await env.areset(seed=b.seed, options=b.options)
                out: dict[str, Any] = {"session_id": sid, "observation": obs, **P.encode_info(info)}
                if b.privileged:
                    out["task"] = self._serve_task(sid, sess)
                sess.last_used = time.monotonic()
        except BaseException as e:  # closed after the lock is released: _close takes it too
            await self._close(sid)
            if not isinstance(e, Exception):
                raise
            log.warning("reset of session %s (seed %s) failed: %s: %s", sid, b.seed, type(e).__name__, e)
            return self._error(e)
        return self._json(out)

    def _error(self, e: BaseException) -> Any:
        """The answer for an exception of the served env: 400 for a usage error (a bad seed), else 500."""
        body = P.error_body(e)
        return self._json(body, 400 if body["error"]["kind"] == "usage" else 500)

    def _serve_task(self, sid: str, sess: _Session) -> Any:
        self.privileged_resets += 1
        log.info("privileged: task of session %s (seed %s) served", sid, sess.env.episode_seed)
        task = sess.env.task
        return task.model_dump(mode="json") if isinstance(task, BaseModel) else task

    async def _task(self, request: Any) -> Any:
        sid = request.match_info["sid"]
        sess = self.sessions.get(sid)
        if sess is None:
            return self._bad(f"no session {sid[:40]!r}", 404, kind="env")
        if not self.allow_privileged:
            return self._bad("this server does not serve tasks to privileged agents", 403)
        sess.last_used = time.monotonic()
        return self._json({"task": self._serve_task(sid, sess)})

    async def _step(self, request: Any) -> Any:
        sess = self.sessions.get(request.match_info["sid"])
        if sess is None:
            return self._bad(f"no session {request.match_info['sid'][:40]!r} (closed, or expired after "
                             f"{self.idle_timeout_s:.0f}s idle)", 404, kind="env")
        try:
            b = await self._body(request, P.StepBody)
            action = P.decode_action(b.action)
        except (ValidationError, ValueError) as e:
            return self._bad(str(e))
        async with sess.lock:
            sess.last_used = time.monotonic()
            try:
                obs, reward, terminated, truncated, info = await sess.env.astep(action)
            except Exception as e:
                return self._error(e)
            finally:
                sess.last_used = time.monotonic()
        return self._json({"observation": obs, "reward": reward, "terminated": terminated, "truncated": truncated,
                           **P.encode_info(info)})

    async def _delete(self, request: Any) -> Any:
        found = await self._close(request.match_info["sid"])
        return self._json({"closed": found}, 200 if found else 404)

    async def _close(self, sid: str) -> bool:
        """Close session ``sid``; False if there is none. The id is remembered either way, so a create
        still in flight for it (its client gave up waiting and has since replaced it) is refused."""
        self._closed[sid] = None
        while len(self._closed) > CLOSED_IDS_KEPT:
            self._closed.popitem(last=False)
        sess = self.sessions.pop(sid, None)
        if sess is None:
            return False
        async with sess.lock:
            try:
                await sess.env.aclose()
            except Exception:  # a session's teardown must not take the server down
                log.warning("closing session %s failed", sid, exc_info=True)
        return True

    async def reap(self) -> int:
        """Close sessions idle longer than ``idle_timeout_s``; returns how many."""
        now = time.monotonic()
        stale = [sid for sid, s in self.sessions.items()
                 if now - s.last_used > self.idle_timeout_s and not s.lock.locked()]
        for sid in stale:
            await self._close(sid)
        self.expired += len(stale)
        return len(stale)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(self.idle_timeout_s / 4, 5.0)))
            await self.reap()

    # ------------------------------------------------------------- lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> EnvServer:
        from aiohttp import web

        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=2048)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._reaper = asyncio.create_task(self._reap_forever())
        return self

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for sid in list(self.sessions):
            await self._close(sid)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._probe.close()

    async def __aenter__(self) -> EnvServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def new_token() -> str:
    return secrets.token_urlsafe(24)


async def serve_forever(env_id: str, *, host: str, port: int, token: str, **kw: Any) -> None:
    """Serve until cancelled (the CLI's ``rowgym env serve``)."""
    srv = await EnvServer(env_id, token=token, **kw).start(host, port)
    try:
        log.info("serving %s on http://%s:%s/%s", env_id, host, srv.port, env_id)
        await asyncio.Event().wait()
    finally:
        await srv.close()


if __name__ == "__main__":  # python -m rowgym.envs.remote.server ENV_ID PORT [setup_module ...]; token in $ROWGYM_ENV_TOKEN
    import importlib
    import os
    import sys

    from rowgym import aio

    for mod in sys.argv[3:]:
        importlib.import_module(mod)
    aio.run(serve_forever(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), token=os.environ[P.TOKEN_ENV]))
