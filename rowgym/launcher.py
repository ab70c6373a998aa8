"""One launcher for rowgym's server processes: the vLLM policy server, the web shop, the mock policy.

>>> import sys
>>> proc = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], ready=lambda: True)
>>> with proc.start(timeout=10):
...     proc.alive()
True
>>> proc.alive()
False

A :class:`ManagedProcess` starts its command in a process group of its own (so stopping it
reaches the workers it forks), writes its output to a log file, polls a readiness check
until it passes, and when the process dies during start-up raises with the end of its log.
``stop()`` sends SIGTERM to the group, then SIGKILL after a grace period.

A *detached* server outlives the process that started it (``make env-up``, ``rowgym serve
up``): :meth:`ManagedProcess.detach` records it in a JSON pidfile, and
:func:`stop_recorded` stops it later, after checking that the pid still runs our command
(a recycled pid is never signalled).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from rowgym.errors import RowgymError


class LaunchError(RowgymError):
    """A server process could not be started or did not become ready; the message has its log tail."""


def log_tail(path: Path | None, n: int = 40) -> str:
    """The last ``n`` lines of a log file (or a note that there is none)."""
    if path is None:
        return "(no log)"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def http_ok(url: str, timeout: float = 2.0, check: Callable[[bytes], bool] | None = None) -> bool:
    """True when ``url`` answers 200 (and ``check(body)`` holds, if given)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200 and (check is None or check(r.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tcp_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def kill_group(pgid: int, grace: float, waiter: subprocess.Popen | None = None) -> None:
    """SIGTERM process group ``pgid``, then SIGKILL whatever is left after ``grace`` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if waiter is not None:
            waiter.poll()  # reap our child so the group can empty
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if waiter is not None:
        waiter.wait(timeout=10)


def runs_command(pid: int, marker: str) -> bool:
    """True if ``pid`` is alive and its command line contains ``marker`` (not a recycled pid)."""
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class ManagedProcess:
    """A server process in its own process group, with a log, a readiness check and a clean stop.

    Args:
        name: What it is, for messages ("vLLM server", "shop server").
        argv: The command.
        ready: Returns True once the server serves (polled during start-up).
        env: Environment of the process (default: ours).
        log_path: Where stdout and stderr go (default: a temp file).
        marker: One argument of its command line that identifies it in ``/proc`` (default: the module
            after ``-m``, else the program); pidfiles use it to never signal a recycled pid.
        error: The exception class raised on failure (a subclass of :class:`RowgymError`).
    """

    def __init__(self, name: str, argv: Sequence[str], *, ready: Callable[[], bool],
                 env: dict[str, str] | None = None, log_path: str | os.PathLike[str] | None = None,
                 marker: str | None = None, error: type[RowgymError] = LaunchError) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready = ready
        self.env = env
        self.log_path = Path(log_path) if log_path else None
        self.marker = marker or (self.argv[self.argv.index("-m") + 1] if "-m" in self.argv[:-1] else self.argv[0])
        self.error = error
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 60.0, poll_s: float = 0.1) -> Self:
        """Launch the process and wait until ``ready()``; raises ``error`` with the log tail if it dies."""
        if self.proc is not None:
            raise self.error(f"{self.name} already started")
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="rowgym-launch-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout, poll_s)
        return self

    def wait_ready(self, timeout: float, poll_s: float = 0.1) -> None:
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise self.error(f"{self.name} exited with code {code} during start-up "
                                 f"(log {self.log_path}):\n{log_tail(self.log_path)}")
            if self.ready():
                return
            time.sleep(poll_s)
        tail = log_tail(self.log_path)
        self.stop()
        raise self.error(f"{self.name} was not ready after {timeout:.0f} s (log {self.log_path}):\n{tail}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        """Stop the whole process group (idempotent)."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            kill_group(proc.pid, grace, waiter=proc)

    close = stop

    def detach(self, pidfile: str | os.PathLike[str], **info: Any) -> dict[str, Any]:
        """Let the process outlive us: record it (pid, marker, log, ``info``) in ``pidfile`` atomically."""
        assert self.proc is not None, "start() first"
        record = {"pid": self.proc.pid, "name": self.name, "marker": self.marker, "log": str(self.log_path), **info}
        path = Path(pidfile)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, path)
        self.proc = None  # no longer ours to stop
        return record

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_recorded(pidfile: str | os.PathLike[str], marker: str | None = None) -> dict[str, Any] | None:
    """A detached server's record, with ``alive`` (its pid still runs our command); None if there is none.

    ``marker`` is used for a pidfile that holds only a pid (as older rowgym versions wrote them).
    """
    try:
        text = Path(pidfile).read_text()
        record = {"pid": int(text)} if text.strip().isdigit() else json.loads(text)
    except (OSError, ValueError):
        return None
    record["alive"] = runs_command(int(record.get("pid", 0)), record.get("marker") or marker or "\0")
    return record


def stop_recorded(pidfile: str | os.PathLike[str], grace: float = 15.0, marker: str | None = None) -> bool:
    """Stop the detached server recorded in ``pidfile`` and remove the file; False if none was running."""
    record = read_recorded(pidfile, marker)
    Path(pidfile).unlink(missing_ok=True)
    if record is None or not record["alive"]:
        return False
    kill_group(int(record["pid"]), grace)
    return True
