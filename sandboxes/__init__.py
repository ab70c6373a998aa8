"""Sandboxes: run agent commands isolated from the host (Docker, or bubblewrap without a daemon).

>>> import asyncio, tempfile
>>> from rowgym.sandboxes import open_sandbox
>>> async def demo():
...     async with open_sandbox(workdir=tempfile.mkdtemp()) as sb:
...         return (await sb.exec(["python3", "-c", "print(6 * 7)"], timeout=10)).stdout
>>> asyncio.run(demo())  # doctest: +SKIP
'42\\n'

Backends are imported lazily so that importing this package never imports ``docker``.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

from rowgym.sandboxes.base import (
    WORKSPACE,
    ExecResult,
    Sandbox,
    SandboxClosed,
    SandboxConfig,
    SandboxError,
    SandboxPathError,
    SandboxQuotaError,
    SandboxUnavailable,
)

Backend = Literal["auto", "docker", "bwrap"]

__all__ = [
    "WORKSPACE",
    "Backend",
    "ExecResult",
    "Sandbox",
    "SandboxClosed",
    "SandboxConfig",
    "SandboxError",
    "SandboxPathError",
    "SandboxQuotaError",
    "SandboxUnavailable",
    "open_sandbox",
    "pick_backend",
]


@functools.cache
def _docker_ok(image: str) -> bool:
    from rowgym.sandboxes.docker_backend import docker_available

    return docker_available(image)


def pick_backend(
    backend: Backend = "auto", config: SandboxConfig | None = None
) -> Literal["docker", "bwrap"]:
    """Resolve ``auto`` to Docker when its daemon answers and the image exists, else bubblewrap.

    ``ROWGYM_SANDBOX`` (``docker`` or ``bwrap``) overrides ``auto``. The Docker probe is
    cached for the life of the process.

    Raises:
        SandboxUnavailable: Neither backend can run here.
    """
    from rowgym.sandboxes.bwrap_backend import bwrap_available

    if backend == "auto":
        backend = os.environ.get("ROWGYM_SANDBOX", "auto")  # type: ignore[assignment]
    if backend in ("docker", "bwrap"):
        return backend  # type: ignore[return-value]
    if backend != "auto":
        raise SandboxError(f"unknown sandbox backend {backend!r}; use 'auto', 'docker' or 'bwrap'")
    if _docker_ok((config or SandboxConfig()).image):
        return "docker"
    if bwrap_available():
        return "bwrap"
    raise SandboxUnavailable(
        "no sandbox backend: the Docker daemon is down and bwrap is missing; run `make env-up`"
    )


def open_sandbox(
    backend: Backend = "auto",
    workdir: str | os.PathLike[str] | None = None,
    config: SandboxConfig | None = None,
) -> Sandbox:
    """Return an unstarted sandbox; use it as ``async with open_sandbox(...) as sb``.

    Args:
        backend: ``docker``, ``bwrap`` or ``auto`` (see ``pick_backend``).
        workdir: Host dir exposed at ``/workspace``; if None, a new temp dir that
            ``close()`` removes.
        config: Limits; defaults are ``SandboxConfig()``.
    """
    from rowgym.sandboxes.cleanup import owned_mkdtemp

    own = workdir is None
    path = owned_mkdtemp("ws") if workdir is None else workdir
    sb: Sandbox
    if pick_backend(backend, config) == "docker":
        from rowgym.sandboxes.docker_backend import DockerSandbox

        sb = DockerSandbox(path, config)
    else:
        from rowgym.sandboxes.bwrap_backend import BwrapSandbox

        sb = BwrapSandbox(path, config)
    sb.remove_workdir = own
    return sb
