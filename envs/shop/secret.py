"""The grader secret shared by the shop server and the environment process, never the browser.

>>> import os
>>> os.environ["ROWGYM_SHOP_SECRET"] = "s3cret"
>>> load_secret()
's3cret'
>>> del os.environ["ROWGYM_SHOP_SECRET"]

Resolution order: an explicit argument (constructor), ``$ROWGYM_SHOP_SECRET``, then a
file in the shop cache dir, created once with mode 0600. The file is what lets a
server started by ``make env-up`` and an environment started later agree on the
secret without either passing it on a command line (visible in ``ps``).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from rowgym.envs.shop.catalog import cache_dir

ENV_VAR = "ROWGYM_SHOP_SECRET"
HEADER = "X-Grader-Secret"


def secret_file() -> Path:
    """Path of the shared secret file."""
    return cache_dir() / "grader-secret"


def load_secret(explicit: str | None = None) -> str:
    """The grader secret (see module docstring for where it comes from)."""
    if explicit:
        return explicit
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    path = secret_file()
    try:
        # O_EXCL: of two processes racing to create it, exactly one writes.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    for _ in range(100):
        text = path.read_text().strip()
        if text:
            return text
        time.sleep(0.01)  # the creator has not written yet
    raise RuntimeError(f"grader secret file {path} is empty; delete it and retry")
