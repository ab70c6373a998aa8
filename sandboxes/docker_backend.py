"""Docker backend: one locked-down container per sandbox, plus a warm pool.

>>> import asyncio, tempfile
>>> from rowgym.sandboxes.docker_backend import DockerSandbox
>>> async def demo():
...     async with DockerSandbox(tempfile.mkdtemp()) as sb:
...         return (await sb.exec("id -u", timeout=5)).stdout
>>> asyncio.run(demo())  # doctest: +SKIP
'1000\\n'

The container has no network, memory/CPU/pids limits, a read-only root, all
capabilities dropped, ``no-new-privileges``, uid 1000, a tmpfs ``/tmp`` and exactly one
host mount: the episode's work dir at ``/workspace`` (a quota'd tmpfs when we are root,
see :mod:`rowgym.sandboxes.quota`). Its PID 1 is :mod:`rowgym.sandboxes.exec_agent`, which
runs the commands and reaps orphans (so they do not pile up as zombies against the pids
limit). Commands reach it over one ``docker attach`` connection to its stdin and stdout,
kept open for the sandbox's life (:mod:`rowgym.sandboxes.exec_channel`): a command costs a
fork and an exec in the box, not a ``docker exec`` (create, start, inspect). Each command
runs as uid 1000 in its own process group, killed as a group at its timeout, with its
output cut to ``max_output_bytes``; ``exec_channel = False`` on a sandbox runs commands
through ``docker exec`` under ``timeout -s KILL`` instead (the same limits; slower).

Processes do not outlive the ``exec`` that started them: when a command returns (and
no other ``exec`` of the same sandbox is still running), anything left in the container
besides PID 1 (``cmd &``, ``nohup``, ``setsid`` escapees, double forks) is killed with
the container frozen, so a fork bomb cannot outrun the kill. A leftover is noticed
cheaply from the host (the children of PID 1, via ``/proc``; ``docker top`` where that
is not readable), so an ``exec`` that leaves nothing costs no extra call. A background
process that keeps the command's stdout open makes the ``exec`` wait for it until the
timeout, as ``subprocess`` would: redirect it (``server >/dev/null 2>&1 &``).

Every container carries its owner's labels (:mod:`rowgym.sandboxes.cleanup`); the first
pool started in a process removes the containers and temp dirs of dead owners.

The ``docker`` SDK is blocking and imported lazily; its calls run in a dedicated
thread pool (a long ``exec`` holds a thread, and the default executor has only a
handful of threads, which would serialise parallel sandboxes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rowgym.sandboxes import quota
from rowgym.sandboxes.base import (
    WORKSPACE,
    ExecResult,
    OutputBuffer,
    Sandbox,
    SandboxClosed,
    SandboxConfig,
    SandboxError,
    SandboxUnavailable,
    as_argv,
)
from rowgym.sandboxes.cleanup import LABEL, Owner, owned_mkdtemp, sweep_containers, sweep_dirs
from rowgym.sandboxes.exec_channel import AGENT_SOURCE, ExecChannel, output

POOL_LABEL = "org.rowgym.pool"
# Seconds past the command's own timeout before we stop waiting for `docker exec` to
# return (a background process can hold its stdout open) and kill from outside.
HOST_GRACE_S = 2.0

# PID 1 of every sandbox runs the exec agent (commands + reaping orphans). PID 1 cannot be
# killed from inside its namespace, so `kill -9 -1` by the agent does not stop the box.

T = TypeVar("T")
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_client: Any = None


async def _run(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="rowgym-docker")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, lambda: fn(*args, **kw))


def docker_client() -> Any:
    """Return a shared Docker client, or raise SandboxUnavailable with what to do."""
    global _client
    if _client is None:
        try:
            import docker
        except ImportError as e:
            raise SandboxUnavailable("the docker SDK is missing: pip install 'rowgym[docker]'") from e
        try:
            client = docker.from_env(timeout=60, max_pool_size=64)
            client.ping()
        except Exception as e:
            raise SandboxUnavailable(f"the Docker daemon does not answer ({e}); run `make env-up`") from e
        _client = client
    return _client


def docker_available(image: str = SandboxConfig.image) -> bool:
    """True when the daemon answers and the sandbox image exists."""
    try:
        docker_client().images.get(image)
        return True
    except Exception:
        return False


_swept = threading.Lock()
_swept_once: list[bool] = []


def sweep_orphans_once() -> None:
    """Remove containers and temp dirs of dead owners (once per process; errors are ignored)."""
    with _swept:
        if _swept_once:
            return
        _swept_once.append(True)
    try:
        sweep_containers(docker_client())
        sweep_dirs()
    except Exception:  # best effort: a sweep must never stop a pool from starting
        pass


def _create_container(config: SandboxConfig, workdir: Path, labels: dict[str, str]) -> Any:
    import docker

    client = docker_client()
    try:
        client.images.get(config.image)
    except docker.errors.ImageNotFound as e:
        raise SandboxUnavailable(f"image {config.image} is missing; run `make env-up`") from e
    mem = f"{config.memory_mb}m"
    fsize = config.file_size_mb << 20
    return client.containers.run(
        config.image,
        command=["python3", "-c", AGENT_SOURCE],
        detach=True,
        stdin_open=True,  # PID 1's stdin is the exec channel (docker attach)
        log_config={"type": "none"},  # PID 1's stdout carries command output: never log it to disk
        user=f"{config.uid}:{config.uid}",
        network_mode="bridge" if config.network else "none",
        mem_limit=mem,
        memswap_limit=mem,  # no swap: a memory hog is OOM-killed, not slowed down
        nano_cpus=int(config.cpus * 1e9),
        pids_limit=config.pids_limit,
        read_only=True,
        tmpfs={"/tmp": f"rw,nosuid,nodev,size={config.tmpfs_mb}m,mode=1777"},
        shm_size="16m",
        volumes={str(workdir): {"bind": WORKSPACE, "mode": "rw"}},
        working_dir=WORKSPACE,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        ulimits=[
            docker.types.Ulimit(name="fsize", soft=fsize, hard=fsize),
            docker.types.Ulimit(name="core", soft=0, hard=0),
        ],
        environment={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"},
        hostname="sandbox",
        labels={LABEL: "1", **Owner.current().labels(), **labels},
        stop_signal="SIGKILL",
    )


class DockerSandbox(Sandbox):
    """A sandbox backed by one container; see the module docstring for its limits.

    Args:
        workdir: Host dir mounted at ``/workspace`` (created; handed to uid 1000 when root).
        config: Limits and image.
    """

    exec_channel = True
    """Run commands over the exec channel to PID 1 (False: one ``docker exec`` per command)."""

    def __init__(self, workdir: str | os.PathLike[str], config: SandboxConfig | None = None) -> None:
        super().__init__(workdir, config)
        self.container: Any = None
        self._channel: ExecChannel | None = None
        self._on_close: Callable[[DockerSandbox], Any] | None = None
        self._inflight = 0
        self._init_pid: int | None = None

    async def start(self) -> None:
        """Create and start the container (skipped when a pool handed one over)."""
        if self.container is None:
            await _run(self._setup_workdir)
            try:
                self.container = await _run(_create_container, self.config, self.host_workdir, {})
                await _run(self._attach)
            except BaseException:
                if self.container is not None:
                    await _run(self._remove_container)
                await _run(self._release_workdir)
                raise

    def _attach(self) -> None:
        """Open the exec channel to PID 1 (blocking)."""
        if self._channel is not None:
            self._channel.close()
        self._channel = ExecChannel.attach(docker_client(), self.container.id, self.config.max_output_bytes)
        self._init_pid = None  # a restarted container has a new PID 1
        self._container_init_pid()

    def _remove_container(self) -> None:
        """Close the exec channel and remove the container (blocking)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self.container.remove(force=True)

    async def exec(
        self,
        cmd: str | Sequence[str],
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """Run a command in the container; see ``Sandbox.exec``."""
        self._check_open()
        if self.container is None:
            raise SandboxError("sandbox not started; use `async with` or await start()")
        timeout = self.config.default_timeout_s if timeout is None else timeout
        if self.exec_channel and self._channel is not None:
            return await self._exec_channel(as_argv(cmd), timeout, cwd or WORKSPACE, env or {})
        argv = ["timeout", "-s", "KILL", f"{timeout:.3f}", *as_argv(cmd)]
        out, err = OutputBuffer(self.config.max_output_bytes), OutputBuffer(self.config.max_output_bytes)
        t0 = time.monotonic()
        self._inflight += 1
        try:
            fut = asyncio.ensure_future(_run(self._exec_blocking, argv, cwd or WORKSPACE, env or {}, out, err))
            done, _ = await asyncio.wait({fut}, timeout=timeout + HOST_GRACE_S)
            killed_from_outside = not done
            if killed_from_outside:
                await self.kill_all()
                done, _ = await asyncio.wait({fut}, timeout=10)
            exit_code = fut.result() if done else -9
            duration = time.monotonic() - t0
        finally:
            self._inflight -= 1
        # `timeout -s KILL` exits 137 like an OOM kill does; the clock tells them apart.
        timed_out = killed_from_outside or (exit_code in (124, 137) and duration >= timeout)
        if self._inflight == 0 and not self.closed:
            # Nothing the command started may outlive it (see the module docstring).
            await _run(self._kill_leftovers, timed_out)
        return ExecResult(
            stdout=out.text(),
            stderr=err.text(),
            exit_code=exit_code,
            timed_out=timed_out,
            duration_s=round(duration, 4),
            truncated=out.truncated or err.truncated,
        )

    async def _exec_channel(self, argv: list[str], timeout: float, cwd: str, env: dict[str, str]) -> ExecResult:
        """Run one command through PID 1 (see the module docstring); the same limits as ``docker exec``."""
        assert self._channel is not None
        limit = self.config.max_output_bytes
        t0 = time.monotonic()
        self._inflight += 1
        try:
            fut = asyncio.ensure_future(self._channel.run(argv, cwd, env, timeout, limit))
            done, _ = await asyncio.wait({fut}, timeout=timeout + HOST_GRACE_S)
            if not done:  # PID 1 did not answer in time: kill from outside, frozen
                fut.cancel()
                await self.kill_all()
            reply = fut.result() if done else None
            duration = time.monotonic() - t0
        finally:
            self._inflight -= 1
        timed_out = reply is None or reply.timed_out
        if self._inflight == 0 and not self.closed and (timed_out or not self._surely_alone()):
            await _run(self._kill_leftovers, timed_out)
        if reply is None:
            return ExecResult(stdout="", stderr="", exit_code=-9, timed_out=True, duration_s=round(duration, 4))
        out, err = output(reply.out, limit), output(reply.err, limit)
        return ExecResult(stdout=out.text(), stderr=err.text(), exit_code=reply.code, timed_out=timed_out,
                          duration_s=round(duration, 4), truncated=out.truncated or err.truncated)

    def _exec_blocking(
        self, argv: list[str], cwd: str, env: dict[str, str], out: OutputBuffer, err: OutputBuffer
    ) -> int:
        api = docker_client().api
        try:
            eid = api.exec_create(
                self.container.id,
                argv,
                stdout=True,
                stderr=True,
                user=f"{self.config.uid}:{self.config.uid}",
                workdir=cwd,
                environment=env,
            )["Id"]
        except Exception as e:
            # e.g. the pids limit is exhausted and runc cannot start the process.
            err.feed(f"rowgym sandbox: could not start the command: {e}\n".encode())
            return 126
        for o, e in api.exec_start(eid, stream=True, demux=True):
            if o:
                out.feed(o)
            if e:
                err.feed(e)
        code = api.exec_inspect(eid).get("ExitCode")
        return -1 if code is None else int(code)

    def _container_init_pid(self) -> int | None:
        """Host pid of the container's PID 1 when this process can see it in /proc, else None."""
        if self._init_pid is None:
            c = self.container
            c.reload()
            pid = int(c.attrs["State"]["Pid"] or 0)
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    visible = c.id in f.read()
            except OSError:
                visible = False
            self._init_pid = pid if visible else 0
        return self._init_pid or None

    def _surely_alone(self) -> bool:
        """True when /proc shows PID 1 without a live child: a few reads of procfs on the loop, no
        thread and no Docker call (False when that cannot be seen; the full check runs then)."""
        init = self._init_pid
        if not init:
            return False
        try:
            with open(f"/proc/{init}/task/{init}/children") as f:
                children = f.read().split()
        except OSError:
            return False
        return not any(_alive(int(p)) for p in children)

    def _has_leftovers(self) -> bool:
        """Whether any live process besides PID 1 runs in the container (no exec is in flight)."""
        init = self._container_init_pid()
        if init is not None:
            try:
                with open(f"/proc/{init}/task/{init}/children") as f:
                    children = f.read().split()
            except OSError:
                children = None
            if children is not None:
                return any(_alive(int(p)) for p in children)
        top = self.container.top(ps_args="-eo pid,stat")
        col = top["Titles"].index("STAT")
        return sum(1 for row in top["Processes"] or [] if not row[col].startswith("Z")) > 1

    def _kill_leftovers(self, force: bool) -> None:
        if force or self._has_leftovers():
            self._kill_all_blocking()

    async def kill_all(self) -> None:
        """Kill every process in the container except PID 1 (restart it if that fails)."""
        if self.container is not None:
            await _run(self._kill_all_blocking)

    def _kill_all_blocking(self) -> None:
        c = self.container
        try:
            # Freeze first so a fork bomb cannot outrun the kill loop.
            c.pause()
            try:
                c.reload()
                init_pid = c.attrs["State"]["Pid"]
                top = c.top(ps_args="-eo pid")
                col = top["Titles"].index("PID")
                for row in top["Processes"] or []:
                    pid = int(row[col])
                    if pid != init_pid:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            finally:
                c.unpause()
        except Exception:
            # Not allowed to signal (not root, remote daemon) or freezer trouble:
            # restarting kills everything (PID 1 too: reattach); /workspace survives, /tmp does not.
            c.restart(timeout=0)
            if self._channel is not None:
                self._attach()

    async def close(self) -> None:
        """Remove the container and release the work dir (unmount its quota; a pooled one is removed)."""
        if self.closed:
            return
        self.closed = True
        if self._on_close is not None:
            await self._on_close(self)
            return
        try:
            if self.container is not None:
                await _run(self._remove_container)
        finally:
            await _run(self._release_workdir)


def _alive(pid: int) -> bool:
    """False for a zombie (exited, not yet reaped by PID 1) or a vanished pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class DockerPool:
    """Keeps ``size`` started containers ready so an episode skips the cold start.

    Each pooled sandbox gets its own fresh work dir (under ``root``) and is used by
    one episode only: ``close()`` removes its container and work dir, and the pool
    starts a replacement in the background. Isolation between episodes is therefore the
    same as with fresh containers; only the start-up cost moves off the critical path.

    Args:
        size: Containers kept ready.
        config: Limits and image of every sandbox.
        root: Where work dirs are made (a temp dir by default).

    Example:
        >>> async def demo():  # doctest: +SKIP
        ...     async with DockerPool(size=2) as pool:
        ...         async with await pool.acquire() as sb:
        ...             await sb.copy_in("repo/")
        ...             return await sb.exec("python3 -m pytest -q", timeout=60)
    """

    def __init__(self, size: int = 4, config: SandboxConfig | None = None, root: str | None = None) -> None:
        self.size = size
        self.config = config or SandboxConfig()
        self.pool_id = uuid.uuid4().hex[:12]
        self._own_root = root is None
        self.root = Path(root) if root else owned_mkdtemp("pool")
        self._ready: asyncio.Queue[DockerSandbox] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: set[DockerSandbox] = set()
        self.closed = False

    async def __aenter__(self) -> DockerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Sweep orphans of dead owners (first pool of the process), then start ``size`` containers."""
        await _run(docker_client)
        await _run(sweep_orphans_once)
        await asyncio.gather(*(self._add() for _ in range(self.size - self._ready.qsize())))

    async def _new(self) -> DockerSandbox:
        workdir = owned_mkdtemp("ws", dir=self.root)
        sb = DockerSandbox(workdir, self.config)
        sb.remove_workdir = True
        try:
            await _run(sb._setup_workdir)
            sb.container = await _run(_create_container, self.config, workdir, {POOL_LABEL: self.pool_id})
            await _run(sb._attach)
        except BaseException:
            if sb.container is not None:
                await _run(sb._remove_container)
            await _run(sb._release_workdir)
            raise
        sb._on_close = self._release
        self._live.add(sb)
        return sb

    async def _add(self) -> None:
        sb = await self._new()
        if self.closed:
            await self._release(sb)
        else:
            self._ready.put_nowait(sb)

    def _refill(self) -> None:
        task = asyncio.ensure_future(self._add())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def acquire(self) -> DockerSandbox:
        """Return a started sandbox with an empty work dir (cold-starts one if none is ready)."""
        if self.closed:
            raise SandboxClosed("this pool is closed")
        try:
            sb = self._ready.get_nowait()
        except asyncio.QueueEmpty:
            sb = await self._new()
        self._refill()
        return sb

    async def _release(self, sb: DockerSandbox) -> None:
        self._live.discard(sb)
        sb.closed = True
        try:
            await _run(sb._remove_container)
        finally:
            await _run(sb._release_workdir)

    async def close(self) -> None:
        """Remove every container of this pool, ready or in use, and their work dirs."""
        if self.closed:
            return
        self.closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(self._release(sb) for sb in list(self._live)), return_exceptions=True)
        if self._own_root:
            await _run(quota.remove_tree, self.root)

    def close_sync(self) -> None:
        """Remove every container and work dir without an event loop (a pool made on a finished loop)."""
        self.closed = True
        for sb in list(self._live):
            self._live.discard(sb)
            sb.closed = True
            try:
                sb._remove_container()
            except Exception:
                pass
            sb._release_workdir()
        if self._own_root:
            quota.remove_tree(self.root)

    @property
    def ready(self) -> int:
        """Containers started and waiting."""
        return self._ready.qsize()

