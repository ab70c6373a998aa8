"""Helpers shared by the remote env tests (a uniquely named module: test dirs have no __init__.py)."""

from __future__ import annotations

import asyncio
import threading

from rowgym.envs.remote.server import EnvServer

TOKEN = "test-token-123"


class ThreadServer:
    """An EnvServer on its own event loop in a thread (so blocking client calls cannot deadlock)."""

    def __init__(self, env_id: str, **kw):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.srv = self.call(EnvServer(env_id, token=TOKEN, **kw).start())

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.srv.port}"

    def close(self):
        self.call(self.srv.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
