"""Cache keys that include the code that produced an artefact.

A cached pretrained model, dataset or per-seed result is reused only when everything that
produced it is the same: its config **and** the source of the modules that built it. A
stale cache (made by older code with the same config) then misses instead of standing in
for a fresh run.

>>> v = code_version("rowgym.trainers.cache_keys")
>>> len(v), v == code_version("rowgym.trainers.cache_keys")
(16, True)
>>> code_version("rowgym.trainers.cache_keys") != code_version("rowgym.trainers.cache_keys", "rowgym.splits")
True
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any


def code_version(*modules: str) -> str:
    """A short sha256 over the source files of ``modules`` (dotted names; a package counts all its ``.py``)."""
    h = hashlib.sha256()
    for name in modules:
        mod = importlib.import_module(name)
        root = Path(mod.__file__ or "")
        files = sorted(root.parent.rglob("*.py")) if root.name == "__init__.py" else [root]
        for f in files:
            h.update(f"{name}:{f.relative_to(root.parent)}\n".encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_key(**parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (configs, code versions, input hashes).

    >>> cache_key(a=1, b=[2, 3]) == cache_key(b=[2, 3], a=1)
    True
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
