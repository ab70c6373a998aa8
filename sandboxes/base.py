"""The Sandbox protocol: run commands and move files in an isolated, limited box.

>>> import asyncio, tempfile
>>> from rowgym.sandboxes import open_sandbox
>>> async def demo():
...     async with open_sandbox(workdir=tempfile.mkdtemp()) as sb:
...         await sb.write_file("hello.py", "print('hi')")
...         return (await sb.exec("python3 hello.py", timeout=10)).stdout
>>> asyncio.run(demo())  # doctest: +SKIP
'hi\\n'

Every backend exposes the episode's host work dir at ``/workspace`` (writable) and
nothing else of the host. File operations on ``/workspace`` go through the host side of
that bind (fast, no exec) with race-free primitives (:mod:`rowgym.sandboxes.hostfs`):
paths are walked one component at a time from a directory fd with ``O_NOFOLLOW``, so
nothing the agent plants or swaps in concurrently (symlinks to ``/etc/shadow``
included) makes us read or write outside the work dir, and a symlink on a path is an
error. When we are root the work dir is a tmpfs with a size and file-count quota
(:mod:`rowgym.sandboxes.quota`) for the sandbox's life: what the sandbox leaves there
is dropped at ``close()`` (``copy_out`` what you need first).
"""

from __future__ import annotations

import abc
import asyncio
import base64
import dataclasses
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict

from rowgym.sandboxes import quota
from rowgym.sandboxes.errors import (
    SandboxClosed,
    SandboxError,
    SandboxPathError,
    SandboxQuotaError,
    SandboxUnavailable,
)
from rowgym.sandboxes.hostfs import WORKSPACE, WorkdirFS, rel_parts, rmtree

__all__ = [
    "WORKSPACE",
    "ExecResult",
    "OutputBuffer",
    "Sandbox",
    "SandboxClosed",
    "SandboxConfig",
    "SandboxError",
    "SandboxPathError",
    "SandboxQuotaError",
    "SandboxUnavailable",
    "as_argv",
]


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    """Limits and defaults of one sandbox.

    Attributes:
        image: Docker image (built by ``make env-up``).
        memory_mb: Memory limit for everything running in the sandbox (bwrap: per process address space).
        cpus: CPU quota (Docker only; bwrap cannot cap CPU without cgroups).
        pids_limit: Most processes/threads at once (bwrap: RLIMIT_NPROC).
        network: Allow network access. Off by default; tasks never need it.
        default_timeout_s: Timeout of ``exec`` when none is given.
        max_output_bytes: Bytes kept per stream; beyond it the middle is dropped.
        file_size_mb: Largest file a command may write (RLIMIT_FSIZE).
        tmpfs_mb: Size of the writable ``/tmp``.
        max_copy_out_mb: Most bytes ``copy_out`` will copy back to the host.
        uid: Unprivileged uid (and gid) the commands run as.
        workdir_mb: Size quota of the work dir (a tmpfs; only when we are root; None: no quota).
        workdir_inodes: Most files and dirs in the work dir (same tmpfs).
    """

    image: str = "rowgym-sandbox:py311"
    memory_mb: int = 512
    cpus: float = 1.0
    pids_limit: int = 128
    network: bool = False
    default_timeout_s: float = 60.0
    max_output_bytes: int = 64 * 1024
    file_size_mb: int = 256
    tmpfs_mb: int = 64
    max_copy_out_mb: int = 512
    uid: int = 1000
    workdir_mb: int | None = 256
    workdir_inodes: int | None = 65536


class ExecResult(BaseModel):
    """What one command did. A failing command is a result, never an exception."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool
    duration_s: float
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its timeout."""
        return self.exit_code == 0 and not self.timed_out


class OutputBuffer:
    """Keeps the head and tail of a stream, dropping the middle past a byte limit.

    The tail is kept because that is where pytest and compilers print the summary.
    """

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        """Add a chunk of output."""
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.tail_limit:
                del self.tail[: len(self.tail) - self.tail_limit]

    @property
    def truncated(self) -> bool:
        """True when bytes were dropped."""
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        """Return the kept output as text, with a marker where bytes were dropped."""
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        dropped = self.total - len(self.head) - len(self.tail)
        return (
            self.head.decode("utf-8", "replace")
            + f"\n... [{dropped} bytes of output truncated] ...\n"
            + self.tail.decode("utf-8", "replace")
        )


def as_argv(cmd: str | Sequence[str]) -> list[str]:
    """Turn a shell string into ``sh -c`` argv; pass a list through unchanged."""
    if isinstance(cmd, str):
        return ["/bin/sh", "-c", cmd]
    argv = list(cmd)
    if not argv:
        raise SandboxError("empty command")
    return argv


class Sandbox(abc.ABC):
    """An isolated box with a writable ``/workspace`` backed by a host work dir.

    Subclasses implement ``start``, ``exec`` and ``close``; they call ``_setup_workdir``
    before the box first sees the work dir and ``_release_workdir`` after it is gone.
    File operations default to the host side of the work dir; paths may be relative
    (to ``/workspace``) or absolute. Use as ``async with``; ``close()`` is idempotent.
    """

    def __init__(self, workdir: str | os.PathLike[str], config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.host_workdir = Path(workdir).resolve()
        self.closed = False
        self.quota_mounted = False
        self.remove_workdir = False  # set by whoever made a temp work dir for this sandbox alone
        self.fs = WorkdirFS(self.host_workdir, self.config.uid,
                            quota.describe(self.config.workdir_mb, self.config.workdir_inodes))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def start(self) -> None:
        """Make the sandbox ready for ``exec``."""

    @abc.abstractmethod
    async def exec(
        self,
        cmd: str | Sequence[str],
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """Run a command; when it ends, nothing it started is left running.

        Args:
            cmd: A shell string (run by ``/bin/sh -c``) or an argv list.
            timeout: Seconds before the process tree is killed (config default if None).
            cwd: Working dir inside the sandbox (default ``/workspace``).
            env: Extra environment variables.

        Returns:
            The result; output is truncated to ``config.max_output_bytes`` per stream.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Kill everything left in the sandbox and release it."""

    # -- the work dir ------------------------------------------------------------------

    def _setup_workdir(self) -> None:
        """Create the work dir, mount its quota (when root), hand it to the sandbox uid. Blocking."""
        d, cfg = self.host_workdir, self.config
        d.mkdir(parents=True, exist_ok=True)
        if not self.quota_mounted:
            before = os.open(d, os.O_RDONLY | os.O_DIRECTORY)  # the dir under the mount, if any
            try:
                self.quota_mounted = quota.mount_tmpfs(d, size_mb=cfg.workdir_mb, inodes=cfg.workdir_inodes,
                                                       uid=cfg.uid)
                if self.quota_mounted and os.listdir(before):
                    # A caller's non-empty dir: its contents are the sandbox's starting state.
                    self.fs.copy_in(f"/proc/self/fd/{before}")
            finally:
                os.close(before)
        if os.geteuid() == 0:
            for _, dirnames, filenames, dfd in os.fwalk(d):
                os.chown(dfd, cfg.uid, cfg.uid)
                for n in dirnames + filenames:
                    os.chown(n, cfg.uid, cfg.uid, dir_fd=dfd, follow_symlinks=False)

    def _release_workdir(self) -> None:
        """Unmount the quota (dropping what the box left) and remove an owned work dir. Blocking."""
        if self.quota_mounted:
            quota.unmount(self.host_workdir)
            self.quota_mounted = False
        if self.remove_workdir:
            rmtree(self.host_workdir)  # any depth (shutil.rmtree recurses per level)

    # -- files -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise SandboxClosed("this sandbox is closed; open a new one")

    async def read_file(self, path: str) -> bytes:
        """Return a file's bytes. Paths outside ``/workspace`` are read from inside the box.

        Raises:
            FileNotFoundError: No such file.
            SandboxPathError: A component of the path is a symlink (never followed).
        """
        self._check_open()
        norm = posixpath.normpath(posixpath.join(WORKSPACE, path))
        if norm != WORKSPACE and not norm.startswith(WORKSPACE + "/"):
            # base64 keeps binary files intact through the text-decoded output stream.
            res = await self.exec(["base64", "-w0", "--", norm], timeout=30)
            if res.exit_code != 0:
                raise FileNotFoundError(f"{norm} (in the sandbox): {res.stderr.strip()}")
            if res.truncated:
                raise SandboxError(f"{norm} is larger than the output limit; copy it into {WORKSPACE} first")
            return base64.b64decode(res.stdout)
        return await asyncio.to_thread(self.fs.read, path)

    async def write_file(self, path: str, data: str | bytes) -> None:
        """Write a file under ``/workspace``, creating parent dirs.

        Raises:
            SandboxQuotaError: The work dir's quota is full.
            SandboxPathError: The path is outside ``/workspace`` or passes through a symlink.
        """
        self._check_open()
        payload = data.encode() if isinstance(data, str) else data
        await asyncio.to_thread(self.fs.write, path, payload)

    async def list_files(self, path: str = ".", *, skip_dirs: Sequence[str] = (), limit: int | None = None
                         ) -> list[str] | None:
        """Files (non-directories) under ``path``, relative to it; None when it is a file. Links are not followed."""
        self._check_open()
        return await asyncio.to_thread(self.fs.list_files, path, skip_dirs=skip_dirs, limit=limit)

    async def copy_in(self, local_dir: str | os.PathLike[str], remote_dir: str = WORKSPACE) -> None:
        """Copy a host directory's contents into ``remote_dir`` (under ``/workspace``)."""
        self._check_open()
        await asyncio.to_thread(self.fs.copy_in, local_dir, remote_dir)

    async def copy_out(self, remote_dir: str, local_dir: str | os.PathLike[str]) -> None:
        """Copy ``remote_dir`` (under ``/workspace``) to a host directory.

        Only regular files, dirs and symlinks that stay inside the copy are kept;
        fifos, devices and links pointing out are skipped, and nothing is followed while
        copying, so that neither we nor whatever reads the copy later can be tricked
        into reading host files.
        """
        self._check_open()
        await asyncio.to_thread(self.fs.copy_out, remote_dir, local_dir, self.config.max_copy_out_mb << 20)


def sandbox_relpath(path: str) -> str:
    """``path`` relative to ``/workspace`` (lexically normalised), or SandboxPathError if outside."""
    return "/".join(rel_parts(path)) or "."
