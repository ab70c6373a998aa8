"""Owners of sandbox resources, and the sweep that removes what dead owners left behind.

>>> from rowgym.sandboxes.cleanup import Owner, parse_dir_owner
>>> me = Owner.current()
>>> me.alive()
True
>>> parse_dir_owner(f"rowgym-pool-{me.pid}-{me.start}-k2j3") == (me.pid, me.start)
True

Every container carries ``org.rowgym.owner=<hostname>:<pid>:<start>`` (``start``: the
process's start time in clock ticks since boot, so a reused pid is not mistaken for its
owner) and ``org.rowgym.boot=<boot id>``; every temp dir is named
``rowgym-<kind>-<pid>-<start>-<random>`` (see :func:`owned_mkdtemp`). A process killed
with SIGKILL cleans nothing up; the next pool start (and ``make env-up``, through
``python -m rowgym.sandboxes.cleanup``) removes the containers and temp dirs whose owner
is dead, unmounting work-dir quotas (tmpfs) left mounted inside them first.
Containers of other hosts (a shared daemon) and dirs without an owner in their name are
left alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import re
import socket
import tempfile
from pathlib import Path

from rowgym.sandboxes import quota

LABEL = "org.rowgym.sandbox"
OWNER_LABEL = "org.rowgym.owner"
BOOT_LABEL = "org.rowgym.boot"
_DIR_RE = re.compile(r"^rowgym-(?P<kind>[a-z][a-z-]*?)-(?P<pid>\d+)-(?P<start>\d+)-")


@functools.cache
def boot_id() -> str:
    """This boot's id (pids and start times only mean something within one boot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces and parentheses, so split after it.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclasses.dataclass(frozen=True)
class Owner:
    """A process that owns sandbox resources (pid + start time, on a host, in a boot)."""

    host: str
    pid: int
    start: int
    boot: str

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start(pid) or 0, boot_id())

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"

    def labels(self) -> dict[str, str]:
        """Docker labels naming this owner."""
        return {OWNER_LABEL: self.label, BOOT_LABEL: self.boot}

    def alive(self) -> bool:
        """True when the owner process still runs (only answerable for this host and boot)."""
        return self.boot == boot_id() and process_start(self.pid) == self.start

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> Owner | None:
        host, _, rest = labels.get(OWNER_LABEL, "").rpartition(":")
        host, _, pid = host.rpartition(":")
        if not (host and pid.isdigit() and rest.isdigit()):
            return None
        return cls(host, int(pid), int(rest), labels.get(BOOT_LABEL, ""))


def owner_prefix(kind: str) -> str:
    """The temp-dir prefix ``rowgym-<kind>-<pid>-<start>-`` (for ``tempfile.TemporaryDirectory(prefix=...)``)."""
    me = Owner.current()
    return f"rowgym-{kind}-{me.pid}-{me.start}-"


def owned_mkdtemp(kind: str, dir: str | os.PathLike[str] | None = None) -> Path:
    """``tempfile.mkdtemp`` named ``rowgym-<kind>-<pid>-<start>-…`` so a sweep can tell its owner."""
    return Path(tempfile.mkdtemp(prefix=owner_prefix(kind), dir=dir))


def parse_dir_owner(name: str) -> tuple[int, int] | None:
    """``(pid, start)`` from an owned temp dir's name, or None for any other name."""
    m = _DIR_RE.match(name)
    return (int(m["pid"]), int(m["start"])) if m else None


def sweep_dirs(tmpdir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove owned temp dirs whose owner is dead (unmounting quotas inside); return them."""
    root = Path(tmpdir or tempfile.gettempdir())
    removed = []
    for entry in sorted(root.glob("rowgym-*")):
        owner = parse_dir_owner(entry.name)
        if owner is None or process_start(owner[0]) == owner[1]:
            continue
        if entry.is_symlink() or not entry.is_dir():
            continue
        quota.remove_tree(entry)
        removed.append(entry)
    return removed


def sweep_containers(client: object | None = None) -> list[str]:
    """Remove rowgym containers of this host whose owner process is dead; return their ids."""
    if client is None:
        from rowgym.sandboxes.docker_backend import docker_client

        client = docker_client()
    host = socket.gethostname()
    removed = []
    for c in client.containers.list(all=True, filters={"label": LABEL}):  # type: ignore[attr-defined]
        owner = Owner.from_labels(c.labels)
        if owner is None or owner.host != host or owner.alive():
            continue
        try:
            c.remove(force=True)
            removed.append(c.id)
        except Exception:  # already gone (another sweep), or the daemon refused: next sweep
            pass
    return removed


def main(argv: list[str] | None = None) -> int:
    """``python -m rowgym.sandboxes.cleanup``: sweep containers (if Docker answers) and temp dirs."""
    p = argparse.ArgumentParser(prog="python -m rowgym.sandboxes.cleanup", description=main.__doc__)
    p.add_argument("--tmpdir", default=None, help="where the temp dirs live (default: the system temp dir)")
    p.add_argument("--no-docker", action="store_true", help="do not touch containers")
    args = p.parse_args(argv)
    containers: list[str] = []
    if not args.no_docker:
        from rowgym.sandboxes import SandboxUnavailable
        from rowgym.sandboxes.docker_backend import docker_client

        try:
            containers = sweep_containers(docker_client())
        except SandboxUnavailable as e:
            print(f"[cleanup] docker skipped: {e}")
    dirs = sweep_dirs(args.tmpdir)
    print(f"[cleanup] removed {len(containers)} orphaned container(s) and {len(dirs)} temp dir(s) of dead owners")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
