"""The host end of a Docker sandbox's exec channel: PID 1's stdin and stdout via ``docker attach``.

A warm container runs :mod:`rowgym.sandboxes.exec_agent` as PID 1. A command is one JSON
line written to its stdin and one JSON line read back from its stdout, over one attach
connection per sandbox kept open for the sandbox's life: no ``docker exec`` round trips
(create, start, inspect) per command. Only the host can write to that stdin or read that
stdout; see the agent's docstring for why the box cannot tamper with them.

Every reply is checked (``_Reply``, ``extra="forbid"``) and its output cut to the sandbox's
``max_output_bytes`` again on this side; a line longer than any valid reply, a reply that does
not parse or a closed connection ends the channel, and every command waiting on it fails with
:class:`SandboxError`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rowgym.sandboxes.base import OutputBuffer
from rowgym.sandboxes.errors import SandboxError

AGENT_SOURCE = (Path(__file__).with_name("exec_agent.py")).read_text()


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    code: int
    timed_out: bool
    duration: float
    out: tuple[str, str, int]
    err: tuple[str, str, int]


def output(stream: tuple[str, str, int], limit: int) -> OutputBuffer:
    """An :class:`OutputBuffer` holding what the agent kept of one stream (head, tail, total)."""
    buf = OutputBuffer(limit)
    head, tail = base64.b64decode(stream[0]), base64.b64decode(stream[1])
    buf.head += head[: buf.head_limit]
    buf.tail += tail[-buf.tail_limit:] if buf.tail_limit else b""
    buf.total = max(stream[2], len(buf.head) + len(buf.tail))
    return buf


class ExecChannel:
    """One attach connection to a container's PID 1, shared by every ``exec`` of the sandbox.

    Args:
        sock: The attach socket (stdin, stdout and stderr of PID 1, multiplexed by Docker).
        max_output: The sandbox's ``max_output_bytes`` (bounds a valid reply).
    """

    def __init__(self, sock: Any, max_output: int):
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._keep = sock  # docker-py's response object stays referenced with it
        self._sock.settimeout(None)
        self.max_line = 4 * max_output + (1 << 16)  # two base64 streams of at most max_output bytes each
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[_Reply]]] = {}
        self._lock = threading.Lock()
        self.error: str | None = None
        self.agent_stderr = bytearray()
        self._thread = threading.Thread(target=self._read, name="rowgym-exec-channel", daemon=True)
        self._thread.start()

    @classmethod
    def attach(cls, client: Any, container_id: str, max_output: int) -> ExecChannel:
        """Open the channel to a started container (blocking)."""
        sock = client.api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        return cls(sock, max_output)

    async def run(self, argv: list[str], cwd: str, env: dict[str, str], timeout: float,
                  max_output: int) -> _Reply:
        """Send one command and wait for its reply (the caller bounds the wait)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_Reply] = loop.create_future()
        with self._lock:
            if self.error is not None:
                raise SandboxError(f"the sandbox's exec channel is closed: {self.error}")
            rid = next(self._ids)
            self._pending[rid] = (loop, fut)
        req = {"id": rid, "argv": argv, "cwd": cwd, "env": env, "timeout": timeout, "max_output": max_output}
        try:
            try:
                self._sock.sendall((json.dumps(req) + "\n").encode())
            except OSError as e:
                self._fail(f"cannot send: {e}")
            return await fut
        finally:
            with self._lock:
                self._pending.pop(rid, None)

    def close(self) -> None:
        """Close the connection (the reader thread ends; commands still waiting fail)."""
        self._fail("closed")
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    # ---------------------------------------------------------------- reading
    def _exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise EOFError("PID 1 of the sandbox ended (the container stopped)")
            data += chunk
        return bytes(data)

    def _read(self) -> None:
        line = bytearray()
        try:
            while True:
                header = self._exact(8)  # stream type, 3 zero bytes, big-endian length
                data = self._exact(int.from_bytes(header[4:8], "big"))
                if header[0] != 1:  # PID 1's stderr: kept for error messages
                    self.agent_stderr = (self.agent_stderr + data)[-4096:]
                    continue
                line += data
                while (nl := line.find(b"\n")) >= 0:
                    self._deliver(bytes(line[:nl]))
                    del line[: nl + 1]
                if len(line) > self.max_line:
                    raise SandboxError(f"a reply longer than {self.max_line} bytes")
        except (OSError, EOFError, SandboxError, ValueError, ValidationError) as e:
            tail = self.agent_stderr.decode(errors="replace").strip()[-500:]
            self._fail(f"{e}" + (f"; PID 1 said: {tail}" if tail else ""))

    def _deliver(self, raw: bytes) -> None:
        reply = _Reply.model_validate_json(raw)
        with self._lock:
            waiter = self._pending.get(reply.id)
        if waiter is not None:  # else: a command the host gave up on (killed from outside)
            _resolve(waiter, reply, None)

    def _fail(self, why: str) -> None:
        with self._lock:
            if self.error is None:
                self.error = why
            waiters = list(self._pending.values())
        for w in waiters:
            _resolve(w, None, SandboxError(f"the sandbox's exec channel failed: {why}"))


def _resolve(waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]], value: Any,
             exc: BaseException | None) -> None:
    loop, fut = waiter

    def settle() -> None:
        if not fut.done():
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(value)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # that event loop is closed: nobody waits any more
        pass
