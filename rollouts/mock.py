"""A fixed-latency mock of vLLM's completions endpoint and an 8-turn env, to measure orchestration.

>>> from rowgym.rollouts.mock import CountdownEnv
>>> env = CountdownEnv()
>>> obs, info = env.reset(seed=0)
>>> for _ in range(8):
...     obs, r, terminated, truncated, info = env.step({"name": "tick", "arguments": {}})
>>> truncated, info["verdict"].success
(True, True)

:class:`MockCompletionsServer` answers ``POST /v1/completions`` after ``latency_s`` with a
fixed completion in vLLM's shape (``prompt_token_ids``/``token_ids`` per choice,
``logprobs.token_logprobs``); it echoes the prompt ids and tokenises nothing, so what is
measured is the rollout engine, not the server. Importing this module registers
``rowgym-mock/Countdown-v0`` (a Ray worker imports it through
``CollectConfig.setup_modules``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from pydantic import BaseModel

from rowgym import aio
from rowgym.env import RowEnv
from rowgym.errors import UnknownEnvError
from rowgym.launcher import ManagedProcess, free_port, tcp_ok
from rowgym.registry import register, spec
from rowgym.rows import Check, Verdict
from rowgym.tools import NoArgs, tool

COUNTDOWN_ID = "rowgym-mock/Countdown-v0"
TURNS = 8


class CountdownTask(BaseModel):
    seed: int
    instruction: str


class CountdownEnv(RowEnv[CountdownTask]):
    """Call ``tick`` until the episode is truncated after exactly 8 turns; every episode succeeds."""

    family = "mock-countdown"
    default_max_turns = TURNS
    verifier = "ticks"
    system_prompt = "Call tick."

    def make_task(self, seed: int) -> CountdownTask:
        return CountdownTask(seed=seed, instruction=f"Tick {TURNS} times (task {seed}).")

    async def setup(self, task: CountdownTask) -> str:
        self.ticks = 0
        return task.instruction

    @tool
    async def tick(self, args: NoArgs) -> str:
        """Advance the countdown by one."""
        self.ticks += 1
        return f"{TURNS - self.ticks} left"

    async def grade(self) -> Verdict:
        return self.verdict([Check(name="ticks", passed=self.ticks == TURNS, detail=f"{self.ticks} ticks")])


try:
    spec(COUNTDOWN_ID)
except UnknownEnvError:  # registered once, even if this module is imported under two names
    register(COUNTDOWN_ID, "rowgym.rollouts.mock:CountdownEnv", description="8-turn no-op env for benchmarks and tests")


class MockCompletionsServer:
    """aiohttp server on 127.0.0.1: every completion takes ``latency_s`` and returns ``completion_ids``.

    Use as ``async with MockCompletionsServer(ids, text) as srv: srv.base_url``. ``calls``
    counts the requests answered.
    """

    def __init__(self, completion_ids: list[int], text: str = "", latency_s: float = 0.2, port: int = 0):
        self.completion_ids, self.text, self.latency_s, self.port = list(completion_ids), text, latency_s, port
        self.logprobs = [-0.5] * len(self.completion_ids)
        self.calls = 0
        self.fail_status: int | None = None
        """While set, every request is answered at once with this HTTP status (simulates an outage)."""
        self._runner: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _completions(self, request: Any) -> Any:
        from aiohttp import web

        body = aio.loads(await request.read())
        if self.fail_status is not None:
            return web.json_response({"error": "mock outage"}, status=self.fail_status)
        await asyncio.sleep(self.latency_s)
        self.calls += 1
        n = len(self.completion_ids)
        choice = {"index": 0, "text": self.text, "finish_reason": "stop", "stop_reason": None,
                  "prompt_token_ids": body["prompt"], "token_ids": self.completion_ids,
                  "logprobs": {"tokens": [""] * n, "token_logprobs": self.logprobs,
                               "top_logprobs": None, "text_offset": [0] * n}}
        out = {"id": f"cmpl-{self.calls}", "object": "text_completion", "created": int(time.time()),
               "model": body.get("model"), "choices": [choice],
               "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": n,
                         "total_tokens": len(body["prompt"]) + n}}
        return web.Response(content_type="application/json", body=aio.dumps(out))

    async def start(self) -> MockCompletionsServer:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MockCompletionsServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class MockServerProcess:
    """:class:`MockCompletionsServer` in its own process (like a real policy server), as a context manager."""

    def __init__(self, completion_ids: list[int], text: str = "", latency_s: float = 0.2):
        self.port = free_port()
        spec = json.dumps({"ids": list(completion_ids), "text": text, "latency_s": latency_s, "port": self.port})
        self._launch = ManagedProcess("mock completions server", [sys.executable, "-m", "rowgym.rollouts.mock", spec],
                                      ready=lambda: tcp_ok("127.0.0.1", self.port))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> Any:
        return self._launch.proc

    def __enter__(self) -> MockServerProcess:
        self._launch.start(timeout=60, poll_s=0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._launch.stop(grace=10)


async def _serve_forever(spec: dict[str, Any]) -> None:
    async with MockCompletionsServer(spec["ids"], spec["text"], spec["latency_s"], spec["port"]):
        await asyncio.Event().wait()


if __name__ == "__main__":  # python -m rowgym.rollouts.mock '{"ids": [...], "text": "", "latency_s": 0.2, "port": N}'
    aio.run(_serve_forever(json.loads(sys.argv[1])))
