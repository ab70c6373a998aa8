"""Race-free host-side file operations on a sandbox's work dir.

>>> import tempfile
>>> from rowgym.sandboxes.hostfs import WorkdirFS
>>> tmp = tempfile.TemporaryDirectory()
>>> fs = WorkdirFS(tmp.name)
>>> fs.write("pkg/mod.py", b"x = 1\\n")
>>> fs.read("/workspace/pkg/mod.py")
b'x = 1\\n'
>>> fs.list_files(".")
['pkg/mod.py']
>>> tmp.cleanup()

The agent owns the work dir and may change it *while* we operate on it (a background
loop that swaps a directory with a symlink to a host directory using ``renameat2``), so
no path string under the work dir is ever handed to the kernel whole. Every operation
starts from an ``O_DIRECTORY`` fd of the work dir and opens one component at a time
with ``O_NOFOLLOW`` relative to the previous fd (``openat``); whatever the agent swaps
in between, each step either opens the very entry it names inside the tree or fails.
A symlink anywhere on a path is an error (``a path component is a symbolic link``),
never followed; fifos and devices are refused (``O_NONBLOCK`` keeps a swapped-in fifo
from blocking us). Error messages name sandbox-relative paths only, never the host dir.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Collection
from pathlib import Path

from rowgym.sandboxes.errors import (
    SandboxCopyDepth,
    SandboxCopyLimit,
    SandboxError,
    SandboxPathError,
    SandboxQuotaError,
)

WORKSPACE = "/workspace"
MAX_DEPTH = 128
"""Deepest dir level ``copy_out`` copies and ``list_files`` lists (walks are iterative; the agent can nest
dirs thousands deep with one command, past Python's recursion limit and PATH_MAX)."""
LINK_ERROR = "a path component is a symbolic link"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20


def rel_parts(path: str) -> list[str]:
    """Components of ``path`` (relative to ``/workspace``, or absolute under it), ``..`` resolved lexically.

    Lexical ``..`` is exact here because no component is ever a followed symlink.

    Raises:
        SandboxPathError: The path is outside ``/workspace`` or holds a NUL byte.
    """
    if "\x00" in path:
        raise SandboxPathError("paths must not contain NUL characters")
    norm = posixpath.normpath(posixpath.join(WORKSPACE, path))
    if norm != WORKSPACE and not norm.startswith(WORKSPACE + "/"):
        raise SandboxPathError(f"{path!r} is outside {WORKSPACE}; only the work dir is reachable")
    return [p for p in norm[len(WORKSPACE) :].split("/") if p]


def _rel(parts: list[str]) -> str:
    return "/".join(parts) or "."


def _is_link(dfd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dfd).st_mode)
    except OSError:
        return False


def _error(e: OSError, rel: str) -> Exception:
    """Map an OSError of one step onto a message that names only the sandbox path."""
    if e.errno == errno.ELOOP:
        return SandboxPathError(f"{LINK_ERROR} ({rel})")
    if e.errno == errno.ENOENT:
        return FileNotFoundError(errno.ENOENT, "no such file or directory", rel)
    if e.errno == errno.ENOTDIR:
        return NotADirectoryError(errno.ENOTDIR, "not a directory", rel)
    if e.errno == errno.EISDIR:
        return IsADirectoryError(errno.EISDIR, "is a directory", rel)
    if e.errno == errno.ENXIO:
        return SandboxPathError(f"{rel} is not a regular file")
    return SandboxError(f"{rel}: {os.strerror(e.errno or 0)}")


class WorkdirFS:
    """File operations confined to one host work dir (see the module docstring).

    Args:
        root: The host work dir (trusted: its own path is not under the agent's control).
        uid: Owner given to what we create when we are root (the sandbox's uid); None keeps ours.
        quota: How the quota is described in a "no space left" error.
    """

    def __init__(self, root: str | os.PathLike[str], uid: int | None = None, quota: str = "") -> None:
        self.root = Path(root)
        self.uid = uid if os.geteuid() == 0 else None
        self.quota = quota

    # -- steps ---------------------------------------------------------------------------

    def _chown(self, fd: int) -> None:
        if self.uid is not None:
            os.fchown(fd, self.uid, self.uid)

    def _full(self, rel: str) -> SandboxQuotaError:
        why = f" ({self.quota})" if self.quota else ""
        return SandboxQuotaError(f"No space left on device{why}")

    def _open_root(self) -> int:
        return os.open(self.root, _DIR)

    def _openat(self, dfd: int, name: str, flags: int, rel: str, mode: int = 0o644) -> int:
        try:
            return os.open(name, flags, mode, dir_fd=dfd)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self._full(rel) from None
            if e.errno == errno.ENOTDIR and _is_link(dfd, name):
                e.errno = errno.ELOOP  # O_DIRECTORY on a link says ENOTDIR; the link is the reason
            raise _error(e, rel) from None

    def _open_dir(self, parts: list[str], *, create: bool = False) -> int:
        """An fd of the directory ``parts`` (made, with its parents, when ``create``)."""
        fd = self._open_root()
        try:
            for i, name in enumerate(parts):
                rel = _rel(parts[: i + 1])
                if create:
                    try:
                        os.mkdir(name, 0o755, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        made = False  # what is there is checked by the open below
                    except OSError as e:
                        if e.errno in (errno.ENOSPC, errno.EDQUOT):
                            raise self._full(rel) from None
                        raise _error(e, rel) from None
                nfd = self._openat(fd, name, _DIR, rel)
                os.close(fd)
                fd = nfd
                if create and made:
                    self._chown(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- operations ------------------------------------------------------------------------

    def read(self, path: str) -> bytes:
        """Bytes of a regular file.

        Raises:
            FileNotFoundError, IsADirectoryError, NotADirectoryError: As for ``open``.
            SandboxPathError: A component is a symlink, or the file is a fifo/device.
        """
        parts = rel_parts(path)
        rel = _rel(parts)
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "is a directory", rel)
        dfd = self._open_dir(parts[:-1])
        try:
            fd = self._openat(dfd, parts[-1], _READ, rel)
        finally:
            os.close(dfd)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory", rel)
            raise SandboxPathError(f"{rel} is not a regular file")
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def write(self, path: str, data: bytes) -> None:
        """Create or overwrite a regular file, creating parent dirs.

        Raises:
            SandboxQuotaError: The work dir's quota is full (the file may be partly written).
            SandboxPathError: A component is a symlink, or the target is a fifo/device.
        """
        parts = rel_parts(path)
        rel = _rel(parts)
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "is a directory", rel)
        dfd = self._open_dir(parts[:-1], create=True)
        try:
            fd = self._openat(dfd, parts[-1], _WRITE, rel)
        finally:
            os.close(dfd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SandboxPathError(f"{rel} is not a regular file")
            self._chown(fd)
            os.ftruncate(fd, 0)
            self._write_all(fd, data, rel)
        finally:
            os.close(fd)

    def _write_all(self, fd: int, data: bytes | memoryview, rel: str) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view[:_CHUNK])
                view = view[n:]
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self._full(rel) from None
            raise _error(e, rel) from None

    def copy_in(self, src: str | os.PathLike[str], remote_dir: str = ".") -> None:
        """Copy a (trusted) host directory's contents into ``remote_dir``, keeping modes and links."""
        src = Path(src)
        if not src.is_dir():
            raise SandboxError(f"copy_in: {src} is not a directory")
        parts = rel_parts(remote_dir)
        dfd = self._open_dir(parts, create=True)
        try:
            self._copy_in_dir(src, dfd, parts)
        finally:
            os.close(dfd)

    def _copy_in_dir(self, src: Path, dfd: int, parts: list[str]) -> None:
        with os.scandir(src) as it:
            entries = list(it)
        for e in entries:
            rel = _rel([*parts, e.name])
            if e.is_symlink():
                try:
                    os.symlink(os.readlink(e.path), e.name, dir_fd=dfd)
                    if self.uid is not None:
                        os.chown(e.name, self.uid, self.uid, dir_fd=dfd, follow_symlinks=False)
                except OSError as err:
                    if err.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise self._full(rel) from None
                    raise _error(err, rel) from None
            elif e.is_dir(follow_symlinks=False):
                try:
                    os.mkdir(e.name, 0o755, dir_fd=dfd)
                except FileExistsError:
                    pass
                except OSError as err:
                    raise (self._full(rel) if err.errno in (errno.ENOSPC, errno.EDQUOT) else _error(err, rel)) from None
                cfd = self._openat(dfd, e.name, _DIR, rel)
                try:
                    self._chown(cfd)
                    self._copy_in_dir(Path(e.path), cfd, [*parts, e.name])
                finally:
                    os.close(cfd)
            elif e.is_file(follow_symlinks=False):
                fd = self._openat(dfd, e.name, _WRITE, rel, 0o644)
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        raise SandboxPathError(f"{rel} is not a regular file")
                    os.ftruncate(fd, 0)
                    with open(e.path, "rb") as f:
                        while chunk := f.read(_CHUNK):
                            self._write_all(fd, chunk, rel)
                    os.fchmod(fd, e.stat(follow_symlinks=False).st_mode & 0o755)
                    self._chown(fd)
                finally:
                    os.close(fd)

    def copy_out(self, remote_dir: str, dest: str | os.PathLike[str], limit: int,
                 max_depth: int = MAX_DEPTH) -> None:
        """Copy ``remote_dir`` to the host dir ``dest``: regular files, dirs, and links that stay inside.

        Entries are opened one by one with ``O_NOFOLLOW`` from their parent's fd; an
        entry swapped for a link or a fifo meanwhile is skipped. Symlinks are re-created
        as links (never read through), then every link of the copy that resolves outside
        ``dest`` is removed, so whatever reads the copy later cannot reach host files.
        The walk is iterative (one dir fd open at a time besides the stack of names).

        Raises:
            SandboxCopyLimit: More than ``limit`` bytes.
            SandboxCopyDepth: A dir nested more than ``max_depth`` levels deep (what is copied so far
                stays in ``dest``, no deeper than that).
        """
        parts = rel_parts(remote_dir)
        dest = Path(dest)
        sfd = self._open_dir(parts)
        links: list[Path] = []
        budget = [0, limit]
        # One frame per open dir: (its fd, its host copy, its subdirs still to copy); depth = frames - 1.
        stack: list[tuple[int, Path, list[str]]] = []
        try:
            dest.mkdir(parents=True, exist_ok=True)
            stack.append((sfd, dest, self._copy_out_entries(sfd, dest, budget, links)[::-1]))
            while stack:
                dfd, target_dir, todo = stack[-1]
                if not todo:
                    os.close(stack.pop()[0])
                    continue
                name = todo.pop()
                if len(stack) > max_depth:
                    raise SandboxCopyDepth(f"copy_out: dirs nested more than {max_depth} levels deep")
                try:
                    cfd = os.open(name, _DIR, dir_fd=dfd)
                except OSError:
                    continue  # swapped for a link or removed meanwhile
                try:
                    (target_dir / name).mkdir(exist_ok=True)
                    sub = self._copy_out_entries(cfd, target_dir / name, budget, links)[::-1]
                except OSError:
                    os.close(cfd)
                    continue
                except BaseException:
                    os.close(cfd)
                    raise
                stack.append((cfd, target_dir / name, sub))
        except BaseException:
            if not stack:
                os.close(sfd)
            for fd, _, _ in stack:
                os.close(fd)
            raise
        _prune_escaping_links(dest, links)

    def _copy_out_entries(self, sfd: int, dest: Path, budget: list[int], links: list[Path]) -> list[str]:
        """Copy the files and links of one dir; return its subdirs' names (sorted)."""
        with os.scandir(sfd) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            name, target = e.name, dest / e.name
            try:
                if e.is_symlink():
                    os.symlink(os.readlink(name, dir_fd=sfd), target)
                    links.append(target)
                elif e.is_dir(follow_symlinks=False):
                    subdirs.append(name)
                else:
                    fd = os.open(name, _READ, dir_fd=sfd)
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        os.close(fd)
                        continue  # a dir swapped in, fifo, socket, device: reading one could hang or leak
                    with os.fdopen(fd, "rb") as f:
                        data = f.read(budget[1] - budget[0] + 1)
                        budget[0] += len(data)
                        if budget[0] > budget[1]:
                            raise SandboxCopyLimit(f"copy_out: more than {budget[1] >> 20} MiB; raise max_copy_out_mb")
                        target.write_bytes(data)
            except (OSError, ValueError):
                continue  # swapped or removed while we looked (ELOOP, ENOTDIR, ENOENT, EINVAL): skip it
        return subdirs

    def list_files(self, path: str = ".", *, skip_dirs: Collection[str] = (), limit: int | None = None,
                   max_depth: int = MAX_DEPTH) -> list[str] | None:
        """Non-directory entries under ``path`` (relative to it, sorted, links not followed).

        Returns None when ``path`` is itself a regular file. At most ``limit + 1`` entries
        are returned (so a caller can tell that more exist). Dirs more than ``max_depth``
        levels below ``path`` are not listed.
        """
        parts = rel_parts(path)
        try:
            dfd = self._open_dir(parts)
        except NotADirectoryError:
            try:
                self.read(path)  # raises unless it is a readable regular file
            except IsADirectoryError:
                raise SandboxPathError(f"{_rel(parts)} changed while it was being listed") from None
            return None
        out: list[str] = []
        self._list(dfd, out, set(skip_dirs), limit, max_depth)
        return out

    def _list(self, root_fd: int, out: list[str], skip: set[str], limit: int | None, max_depth: int) -> None:
        """Files of a dir, then its subdirs' (in name order), walked iteratively with one open fd per level;
        dirs more than ``max_depth`` levels deep are not entered. Closes ``root_fd``."""
        def full() -> bool:
            return limit is not None and len(out) > limit

        def scan(dfd: int, parts: list[str]) -> list[str]:
            with os.scandir(dfd) as it:
                entries = sorted(it, key=lambda e: e.name)
            dirs = []
            for e in entries:
                if full():
                    break
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if not is_dir:
                    out.append(_rel([*parts, e.name]))
                elif e.name not in skip and len(parts) < max_depth:
                    dirs.append(e.name)
            return dirs[::-1]

        stack: list[tuple[int, list[str], list[str]]] = []
        try:
            stack.append((root_fd, [], scan(root_fd, [])))
            while stack:
                dfd, parts, todo = stack[-1]
                if not todo or full():
                    os.close(stack.pop()[0])
                    continue
                name = todo.pop()
                try:
                    cfd = os.open(name, _DIR, dir_fd=dfd)
                except OSError:
                    continue  # swapped for a link or removed meanwhile
                try:
                    sub = scan(cfd, [*parts, name])
                except BaseException:
                    os.close(cfd)
                    raise
                stack.append((cfd, [*parts, name], sub))
        except BaseException:
            if not stack:
                os.close(root_fd)
            for fd, _, _ in stack:
                os.close(fd)
            raise


def rmtree(path: str | os.PathLike[str]) -> None:
    """Remove a host dir tree of any depth, ignoring errors (``shutil.rmtree`` recurses once per level,
    so a tree nested ~1000 deep raises RecursionError even with ``ignore_errors``).

    Subdirs are first moved up to ``path`` itself (no path ever gets long), then everything is removed
    flat. Symlinks are removed, never followed; a mount point below (another file system) is removed with
    ``shutil.rmtree`` where it is.
    """
    import shutil

    root = Path(path)
    if root.is_symlink() or not root.is_dir():
        try:
            root.unlink()
        except OSError:
            pass
        return
    todo, dirs, n = [root], [], 0
    while todo:
        d = todo.pop()
        dirs.append(d)
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    n += 1
                    flat = root / f".rowgym-rm-{n}"
                    try:
                        os.rename(e.path, flat)
                    except OSError:  # another file system (EXDEV) or gone: not deep through us
                        shutil.rmtree(e.path, ignore_errors=True)
                        continue
                    todo.append(flat)
                else:
                    os.unlink(e.path)
            except OSError:
                continue
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except OSError:
            pass


def _prune_escaping_links(dest: Path, links: list[Path]) -> None:
    """Remove links of the (host-owned, now static) copy that resolve outside it, until none does."""
    root = os.path.realpath(dest)
    remaining = list(links)
    while True:
        bad = [p for p in remaining if os.path.lexists(p)
               and os.path.commonpath([root, os.path.realpath(p)]) != root]
        if not bad:
            return
        for p in bad:
            p.unlink()
        remaining = [p for p in remaining if p not in bad]
