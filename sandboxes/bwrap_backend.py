"""Bubblewrap backend: the no-daemon fallback.

>>> import asyncio, tempfile
>>> from rowgym.sandboxes.bwrap_backend import BwrapSandbox
>>> async def demo():
...     async with BwrapSandbox(tempfile.mkdtemp()) as sb:
...         return (await sb.exec("echo hi", timeout=5)).stdout
>>> asyncio.run(demo())  # doctest: +SKIP
'hi\\n'

Each ``exec`` is one ``bwrap`` run in fresh user, pid, network, ipc and uts namespaces
(``--unshare-all``) with the sandbox rootfs (built by ``make env-up``; the host's
``/usr`` if it is missing) bound read-only at ``/``, the work dir at ``/workspace`` and a
per-sandbox dir at ``/tmp``. When we are root, bwrap itself runs as the unprivileged
host uid 1000 (``setpriv``), so the box never holds host-root credentials, and resource
limits come from rlimits (``prlimit``): address space for memory, RLIMIT_NPROC for
processes, file size, no core dumps.

Process trees: the command is pid 1's child in its own pid namespace; when the
namespace's init dies (its command ended, or we killed bwrap's process group on
timeout, and ``--die-with-parent`` carries that inside) the kernel kills everything
left in the namespace, ``setsid`` escapees and ``nohup`` included: no process outlives
the ``exec`` that started it.

Disk: when we are root the work dir is a quota'd tmpfs (:mod:`rowgym.sandboxes.quota`)
and so is the box's ``/tmp`` (``tmpfs_mb``); without root both are plain host dirs
limited only per file (RLIMIT_FSIZE).

Limits compared with Docker: no CPU quota, memory is per process (RLIMIT_AS) rather
than for the whole box, and RLIMIT_NPROC counts every process of the host uid, so
sandboxes running in parallel share one process budget.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from rowgym.sandboxes import quota
from rowgym.sandboxes.base import (
    WORKSPACE,
    ExecResult,
    OutputBuffer,
    Sandbox,
    SandboxConfig,
    SandboxError,
    SandboxUnavailable,
    as_argv,
)
from rowgym.sandboxes.cleanup import owned_mkdtemp
from rowgym.sandboxes.image import rootfs_dir

_PATH = "/usr/local/bin:/usr/bin:/bin"
# Run as root inside `unshare --mount`: bind rootfs, work dir and /tmp dir ($1..$3) onto
# $4/{root,work,tmp}, then exec the rest (setpriv ... bwrap ...). The mounts vanish with
# that private namespace; the host's mount table never changes.
_BIND_SH = 'mount --rbind "$1" "$4/root" && mount --bind "$2" "$4/work" && mount --bind "$3" "$4/tmp" && shift 4 && exec "$@"'


def bwrap_available() -> bool:
    """True when ``bwrap`` is installed (user namespaces are checked on first use)."""
    return shutil.which("bwrap") is not None


class BwrapSandbox(Sandbox):
    """A sandbox made of bubblewrap namespaces; see the module docstring.

    Args:
        workdir: Host dir bound at ``/workspace`` (created; handed to uid 1000 when root).
        config: Limits (``image`` and ``cpus`` are ignored here).
        rootfs: Root filesystem dir; default the cached one from ``make env-up``.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        config: SandboxConfig | None = None,
        rootfs: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(workdir, config)
        self.rootfs = Path(rootfs) if rootfs else rootfs_dir()
        self._tmp: Path | None = None
        self._mnt: Path | None = None
        self._procs: set[asyncio.subprocess.Process] = set()

    async def start(self) -> None:
        """Prepare the work dir and ``/tmp``; check that bwrap runs here."""
        if not bwrap_available():
            raise SandboxUnavailable("bubblewrap is missing; run `make env-up` (apt-get install bubblewrap)")
        await asyncio.to_thread(self._setup_dirs)
        probe = await self.exec(["true"], timeout=10)
        if probe.exit_code != 0:
            await self.close()
            raise SandboxUnavailable(f"bwrap cannot create namespaces here: {probe.stderr.strip()}")

    def _setup_dirs(self) -> None:
        self._setup_workdir()
        self._tmp = owned_mkdtemp("bwrap-tmp")
        os.chmod(self._tmp, 0o700)
        mounted = quota.mount_tmpfs(self._tmp, size_mb=self.config.tmpfs_mb, inodes=None, uid=self.config.uid,
                                    mode=0o700)
        if not mounted and os.geteuid() == 0:
            os.chown(self._tmp, self.config.uid, self.config.uid)
        if os.geteuid() == 0:
            self._mnt = owned_mkdtemp("bwrap-mnt")
            for n in ("root", "work", "tmp"):
                (self._mnt / n).mkdir()
            os.chmod(self._mnt, 0o755)

    def _argv(self, argv: list[str], cwd: str, env: dict[str, str]) -> list[str]:
        cfg = self.config
        pre: list[str] = [
            "prlimit",
            f"--as={cfg.memory_mb << 20}",
            f"--nproc={cfg.pids_limit}",
            f"--fsize={cfg.file_size_mb << 20}",
            "--core=0",
            "--",
        ]
        rootfs, work, tmp = str(self.rootfs), str(self.host_workdir), str(self._tmp)
        if os.geteuid() == 0:
            # Never let the box hold host root, even mapped: bwrap runs as the sandbox
            # uid. That uid may not be able to traverse the parents of our dirs (the
            # cache lives under /root), so we first bind them, in a private mount
            # namespace of our own, onto world-traversable mount points.
            assert self._mnt is not None
            rootfs, work, tmp = (str(self._mnt / n) for n in ("root", "work", "tmp"))
            binds = [
                str(self.rootfs) if self.rootfs.is_dir() else "/var/empty",
                str(self.host_workdir),
                str(self._tmp),
                str(self._mnt),
            ]
            pre += [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                _BIND_SH,
                "sh",
                *binds,
                "setpriv",
                f"--reuid={cfg.uid}",
                f"--regid={cfg.uid}",
                "--clear-groups",
                "--",
            ]
        if self.rootfs.is_dir():
            root = ["--ro-bind", rootfs, "/"]
        else:
            # No rootfs built: the host's /usr, read-only, and nothing else of the host.
            root = [
                "--ro-bind",
                "/usr",
                "/usr",
                "--symlink",
                "usr/bin",
                "/bin",
                "--symlink",
                "usr/lib",
                "/lib",
                "--symlink",
                "usr/lib64",
                "/lib64",
                "--symlink",
                "usr/sbin",
                "/sbin",
                "--ro-bind-try",
                "/etc/alternatives",
                "/etc/alternatives",
                "--ro-bind-try",
                "/etc/ld.so.cache",
                "/etc/ld.so.cache",
            ]
        bw = [
            "bwrap",
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            *root,
            "--bind",
            work,
            WORKSPACE,
            "--bind",
            tmp,
            "/tmp",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--uid",
            str(cfg.uid),
            "--gid",
            str(cfg.uid),
            "--hostname",
            "sandbox",
            "--chdir",
            cwd,
            "--clearenv",
            "--setenv",
            "PATH",
            _PATH,
            "--setenv",
            "HOME",
            "/tmp",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--setenv",
            "PYTHONDONTWRITEBYTECODE",
            "1",
        ]
        if cfg.network:
            bw.append("--share-net")
        if not self.rootfs.is_dir():
            bw += ["--remount-ro", "/"]
        for k, v in env.items():
            bw += ["--setenv", k, v]
        return pre + bw + ["--", *argv]

    async def exec(
        self,
        cmd: str | Sequence[str],
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """Run a command in fresh namespaces; see ``Sandbox.exec``."""
        self._check_open()
        if self._tmp is None:
            raise SandboxError("sandbox not started; use `async with` or await start()")
        timeout = self.config.default_timeout_s if timeout is None else timeout
        out, err = OutputBuffer(self.config.max_output_bytes), OutputBuffer(self.config.max_output_bytes)
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *self._argv(as_argv(cmd), cwd or WORKSPACE, env or {}),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so one killpg takes bwrap and all
        )
        self._procs.add(proc)
        pump = asyncio.gather(_drain(proc.stdout, out), _drain(proc.stderr, err), proc.wait())
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.shield(pump), timeout)
        except TimeoutError:
            timed_out = True
            _killpg(proc.pid)
            await asyncio.wait_for(pump, 10)
        finally:
            self._procs.discard(proc)
        return ExecResult(
            stdout=out.text(),
            stderr=err.text(),
            exit_code=proc.returncode if proc.returncode is not None else -9,
            timed_out=timed_out,
            duration_s=round(time.monotonic() - t0, 4),
            truncated=out.truncated or err.truncated,
        )

    async def close(self) -> None:
        """Kill running commands, remove the sandbox's ``/tmp`` and release the work dir."""
        if self.closed:
            return
        self.closed = True
        for proc in list(self._procs):
            _killpg(proc.pid)
        await asyncio.to_thread(self._release_dirs)

    def _release_dirs(self) -> None:
        for d in (self._tmp, self._mnt):
            if d is not None:
                quota.remove_tree(d)
        self._release_workdir()


async def _drain(stream: asyncio.StreamReader | None, buf: OutputBuffer) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        buf.feed(chunk)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
