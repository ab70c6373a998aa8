"""One writer per run directory: an exclusive ``flock`` on ``<run>/.lock`` naming its holder.

>>> import tempfile
>>> from pathlib import Path
>>> lock = RunLock(Path(tempfile.mkdtemp()))
>>> lock.acquire(); lock.held
True
>>> lock.release(); lock.held
False
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rowgym.errors import StoreError
from rowgym.store.files import LOCK_FILE


class RunLockedError(StoreError):
    """Another process is writing this run directory."""


class RunLock:
    """An exclusive advisory ``flock`` on ``<run>/.lock``; the file records the holder.

    The kernel drops the lock when the holder dies, so a crashed writer never blocks a resume.
    """

    def __init__(self, root: Path):
        self.path = root / LOCK_FILE
        self._f: Any = None

    def acquire(self) -> None:
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = _parse_holder(f.read())
            f.close()
            raise RunLockedError(
                f"{self.path.parent} is being written by pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} (since {holder.get('started', '?')}); one writer per run "
                f"directory: wait for it to finish or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": datetime.now(UTC).isoformat(timespec="seconds")}) + "\n")
        f.flush()
        self._f = f

    def release(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            self._f.close()
            self._f = None

    @property
    def held(self) -> bool:
        return self._f is not None


def _parse_holder(text: str) -> dict[str, Any]:
    try:
        d = json.loads(text)
        return d if isinstance(d, dict) else {}
    except ValueError:
        return {}
