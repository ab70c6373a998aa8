"""Event loop and JSON helpers for the HTTP-heavy async paths (rollouts, the mock policy server).

>>> from rowgym.aio import dumps, loads, run
>>> loads(dumps({"prompt": [1, 2, 3]}))
{'prompt': [1, 2, 3]}
>>> async def two(): return 2
>>> run(two())
2

``run`` uses uvloop's event loop when it is installed (a core dependency; measured in
benchmarks/bench_rollouts.py it cuts the per-turn CPU of hundreds of concurrent episodes),
and falls back to asyncio's own loop. ``dumps``/``loads`` use orjson when installed:
policy requests carry the whole token-id prompt every turn, and the stdlib encoder is
several times slower on long integer lists.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
JSON_HEADERS = {"Content-Type": "application/json"}
"""Headers for a request whose body is :func:`dumps` bytes."""

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a core dependency
    _orjson = None

try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvloop is a core dependency (not on Windows)
    _uvloop = None


def dumps(obj: Any) -> bytes:
    """JSON bytes of ``obj`` (compact)."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    return _orjson.loads(data) if _orjson is not None else json.loads(data)


def loop_factory() -> Any:
    """uvloop's loop factory if installed, else None (asyncio's default loop)."""
    return _uvloop.new_event_loop if _uvloop is not None else None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the fastest available event loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
