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
that bind (fast, no exec), with every path resolved and checked to stay inside the work
dir, because the agent controls what lies there (symlinks to ``/etc/shadow`` included).
"""

from __future__ import annotations

import abc
import asyncio
import base64
import dataclasses
import os
import posixpath
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict

from rowgym.errors import RowgymError

WORKSPACE = "/workspace"


class SandboxError(RowgymError):
    """Base class of sandbox errors (setup and programming errors, not command failures)."""

    failure_kind = "sandbox"  # how the rollout engine attributes an episode this error ends


class SandboxUnavailable(SandboxError):
    """No sandbox backend can run here (daemon down, image or rootfs missing)."""


class SandboxClosed(SandboxError):
    """The sandbox was used after close()."""


class SandboxPathError(SandboxError):
    """A path escapes the work dir, or is not allowed for that operation."""


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

    Subclasses implement ``start``, ``exec`` and ``close``. File operations default to
    the host side of the work dir; paths may be relative (to ``/workspace``) or absolute.
    Use as ``async with``; ``close()`` is idempotent.
    """

    def __init__(self, workdir: str | os.PathLike[str], config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.host_workdir = Path(workdir).resolve()
        self.closed = False

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
        """Run a command; on timeout kill its whole process tree.

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

    # -- files -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise SandboxClosed("this sandbox is closed; open a new one")

    def host_path(self, path: str, *, must_exist: bool = False) -> Path:
        """Map a sandbox path under ``/workspace`` to the host, refusing escapes.

        Symlinks are resolved on the host and the result must stay inside the work
        dir, so a link the agent planted cannot make us read or write host files.

        Raises:
            SandboxPathError: The path is outside ``/workspace`` or resolves outside it.
        """
        norm = posixpath.normpath(posixpath.join(WORKSPACE, path))
        if norm != WORKSPACE and not norm.startswith(WORKSPACE + "/"):
            raise SandboxPathError(f"{path!r} is outside {WORKSPACE}; only the work dir is reachable")
        rel = norm[len(WORKSPACE) :].lstrip("/")
        host = self.host_workdir / rel
        real = Path(os.path.realpath(host))
        if real != self.host_workdir and self.host_workdir not in real.parents:
            raise SandboxPathError(f"{path!r} resolves outside {WORKSPACE} (symlink?)")
        if must_exist and not real.exists():
            raise FileNotFoundError(f"{path} (in the sandbox)")
        return real

    async def read_file(self, path: str) -> bytes:
        """Return a file's bytes. Paths outside ``/workspace`` are read from inside the box.

        Raises:
            FileNotFoundError: No such file.
            SandboxPathError: The path leads out of the work dir through a symlink.
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
        host = self.host_path(path, must_exist=True)
        return await asyncio.to_thread(_read_regular, host)

    async def write_file(self, path: str, data: str | bytes) -> None:
        """Write a file under ``/workspace``, creating parent dirs."""
        self._check_open()
        host = self.host_path(path)
        payload = data.encode() if isinstance(data, str) else data
        await asyncio.to_thread(_write_regular, host, payload, self.host_workdir, self.config.uid)

    async def copy_in(self, local_dir: str | os.PathLike[str], remote_dir: str = WORKSPACE) -> None:
        """Copy a host directory's contents into ``remote_dir`` (under ``/workspace``)."""
        self._check_open()
        dest = self.host_path(remote_dir)
        await asyncio.to_thread(_copy_in, Path(local_dir), dest, self.host_workdir, self.config.uid)

    async def copy_out(self, remote_dir: str, local_dir: str | os.PathLike[str]) -> None:
        """Copy ``remote_dir`` (under ``/workspace``) to a host directory.

        Only regular files, dirs and symlinks that stay inside ``remote_dir`` are
        copied; fifos, devices and links pointing out are skipped, so that whatever
        reads the copy later cannot be tricked into reading host files.
        """
        self._check_open()
        src = self.host_path(remote_dir, must_exist=True)
        limit = self.config.max_copy_out_mb << 20
        await asyncio.to_thread(_copy_out, src, Path(local_dir), limit)


# -- host-side file helpers (run in threads) --------------------------------------------


def _read_regular(host: Path) -> bytes:
    fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SandboxPathError(f"{host.name} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def _chown(path: Path, uid: int) -> None:
    # Commands run as `uid`; when we are root the files we create must be theirs,
    # else the agent could not edit what we copied in.
    if os.geteuid() == 0:
        os.lchown(path, uid, uid)


def _mkdirs(d: Path, root: Path, uid: int) -> None:
    missing = []
    while not d.exists():
        missing.append(d)
        d = d.parent
    for m in reversed(missing):
        m.mkdir()
        _chown(m, uid)


def _write_regular(host: Path, data: bytes, root: Path, uid: int) -> None:
    _mkdirs(host.parent, root, uid)
    # O_NOFOLLOW: a link swapped in after host_path() checked it is refused, not followed.
    fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    _chown(host, uid)


def _copy_in(src: Path, dest: Path, root: Path, uid: int) -> None:
    if not src.is_dir():
        raise SandboxError(f"copy_in: {src} is not a directory")
    _mkdirs(dest, root, uid)
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(dest):
            os.lchown(dirpath, uid, uid)
            for n in dirnames + filenames:
                os.lchown(os.path.join(dirpath, n), uid, uid)


def _copy_out(src: Path, dest: Path, limit: int) -> None:
    if not src.is_dir():
        raise SandboxError(f"copy_out: {src} is not a directory")
    dest.mkdir(parents=True, exist_ok=True)
    copied = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dest / rel).mkdir(exist_ok=True)
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(p)
                real = Path(os.path.realpath(p))
                if src == real or src in real.parents:
                    (dest / rel / n).symlink_to(target)
                    if n in dirnames:
                        dirnames.remove(n)  # copied as a link; do not walk it twice
            elif stat.S_ISREG(st.st_mode):
                copied += st.st_size
                if copied > limit:
                    raise SandboxError(f"copy_out: more than {limit >> 20} MiB; raise max_copy_out_mb")
                shutil.copyfile(p, dest / rel / n, follow_symlinks=False)
