"""Helpers shared by the sandbox tests (a uniquely named module, so `import` finds it).

Docker tests skip only when the daemon does not answer (CI runs `make env-up` first,
so there they run for real); bwrap tests skip only when bubblewrap is not installed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rowgym.sandboxes import SandboxConfig, SandboxUnavailable
from rowgym.sandboxes.base import Sandbox

# Small limits keep the hostile tests fast and the machine responsive.
TEST_CONFIG = SandboxConfig(memory_mb=256, pids_limit=64, default_timeout_s=20, max_output_bytes=8192)

BACKENDS = [
    pytest.param("docker", marks=[pytest.mark.docker, pytest.mark.sandbox], id="docker"),
    pytest.param("bwrap", marks=[pytest.mark.sandbox], id="bwrap"),
]


def require_backend(name: str) -> None:
    """Skip when the backend's daemon/binary is absent; anything else must fail loudly."""
    if name == "docker":
        from rowgym.sandboxes.docker_backend import docker_client

        try:
            docker_client()
        except SandboxUnavailable as e:
            pytest.skip(str(e))
    elif shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed; run `make env-up`")


def make_sandbox(name: str, workdir: Path, config: SandboxConfig = TEST_CONFIG) -> Sandbox:
    """Build an unstarted sandbox of the given backend."""
    require_backend(name)
    if name == "docker":
        from rowgym.sandboxes.docker_backend import DockerSandbox

        return DockerSandbox(workdir, config)
    from rowgym.sandboxes.bwrap_backend import BwrapSandbox

    return BwrapSandbox(workdir, config)


def in_docker_container(pid: int | str) -> bool:
    """Whether a host process runs inside a Docker container (by its cgroup)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return "docker" in f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False


def host_pids_of_uid(uid: int, *, skip_containers: bool = False) -> dict[int, str]:
    """Return {pid: cmdline} of every host process running as ``uid``.

    ``skip_containers`` leaves out processes inside Docker containers: a bwrap test must
    not blame bwrap for a container that another test's warm pool starts meanwhile
    (containers run as the same uid).
    """
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}")
            if st.st_uid != uid or (skip_containers and in_docker_container(entry)):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found
