"""Work-dir quotas: a size- and inode-limited tmpfs mounted over a sandbox's host work dir.

>>> from rowgym.sandboxes.quota import describe
>>> describe(256, 65536)
'work dir quota 256 MiB, 65536 files'

When we are root, each sandbox's host work dir becomes its own tmpfs
(``size=<workdir_mb>m,nr_inodes=<workdir_inodes>``, owned by the sandbox uid) for the
sandbox's life, so whatever the agent writes (from a command or through the file tools)
stops at the quota with ``ENOSPC`` and never reaches the host's disk; a separate
filesystem also makes hard links to host files impossible. Pages of a tmpfs live in
memory (and swap): files the agent writes from inside a container count against its
memory limit too. Without root (or where mounting is refused) no quota is mounted and
only the per-file limit (RLIMIT_FSIZE) applies; :func:`mount_tmpfs` returns False and the
sandbox records that it runs without a quota.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys
from pathlib import Path

from rowgym.sandboxes.hostfs import rmtree

MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2


_LIBC: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _LIBC


def describe(size_mb: int | None, inodes: int | None) -> str:
    """The quota as the agent is told it."""
    parts = [f"{size_mb} MiB"] if size_mb else []
    parts += [f"{inodes} files"] if inodes else []
    return "work dir quota " + ", ".join(parts) if parts else "no work dir quota"


def can_mount() -> bool:
    """True when this process may mount a tmpfs (root on Linux)."""
    return sys.platform.startswith("linux") and os.geteuid() == 0


def mount_tmpfs(target: Path, *, size_mb: int | None, inodes: int | None, uid: int, mode: int = 0o755) -> bool:
    """Mount a fresh tmpfs on ``target`` (an empty dir); False when not allowed here.

    Raises:
        OSError: The mount failed for another reason than missing privileges.
    """
    if not can_mount() or not (size_mb or inodes):
        return False
    opts = [f"mode={mode:o}", f"uid={uid}", f"gid={uid}"]
    if size_mb:
        opts.append(f"size={int(size_mb)}m")
    if inodes:
        opts.append(f"nr_inodes={int(inodes)}")
    rc = _c().mount(b"tmpfs", os.fsencode(target), b"tmpfs", MS_NOSUID | MS_NODEV, ",".join(opts).encode())
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EPERM, errno.EACCES):
            return False  # e.g. an unprivileged container: run without a quota
        raise OSError(err, f"mounting the work-dir quota failed: {os.strerror(err)}")
    return True


def unmount(target: Path) -> None:
    """Detach the mount at ``target`` (lazily, so a container still holding it cannot block us)."""
    if _c().umount2(os.fsencode(target), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (already gone)
            raise OSError(err, f"unmounting {target} failed: {os.strerror(err)}")


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root`` (deepest first), from this process's mount table."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    base = str(root).rstrip("/")
    found = []
    for line in lines:
        mnt = _unescape(line.split()[4])
        if mnt == base or mnt.startswith(base + "/"):
            found.append(Path(mnt))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(root: Path) -> None:
    """Unmount every mount at or below ``root`` (quotas of killed sandboxes), then remove it."""
    for mnt in mounts_under(root):
        try:
            unmount(mnt)
        except OSError:
            pass
    rmtree(root)  # any depth, errors ignored
