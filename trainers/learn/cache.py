"""Cached intermediate artefacts, keyed by everything that produced them, the code included.

>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> calls = []
>>> def build(tmp: Path) -> None:
...     calls.append(1)
...     (tmp / "x.txt").write_text("hi")
>>> a = cached(root, "thing", {"steps": 3}, build, code=["trainers/learn/cache.py"])
>>> b = cached(root, "thing", {"steps": 3}, build, code=["trainers/learn/cache.py"])
>>> a == b, len(calls), (a / "x.txt").read_text()
(True, 1, 'hi')
>>> c = cached(root, "thing", {"steps": 4}, build, code=["trainers/learn/cache.py"])
>>> c != a, len(calls)
(True, 2)

An artefact lives in ``<root>/<name>-<key hash>/`` with ``cache_key.json`` beside it. The key is
the caller's parameters, the hashes of its ``upstream`` artefacts, a sha256 over the source files
named in ``code`` (paths inside the rowgym package) and the versions of torch, transformers and
trl. A build happens in a temp dir next to the target and is renamed into place only when it
finished, so a killed build never stands in for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

KEY_FILE = "cache_key.json"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (``trainers/learn/cache.py`` -> root): ``code`` paths are relative to it."""


def code_hash(paths: Iterable[str]) -> str:
    """sha256 over the named source files (a directory: every ``*.py`` under it), in sorted order."""
    h = hashlib.sha256()
    for rel in sorted(set(paths)):
        p = PACKAGE_ROOT / rel
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(PACKAGE_ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "transformers", "trl"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def cache_key(params: dict[str, Any], *, code: Iterable[str] = (), upstream: Iterable[Path] = ()) -> dict[str, Any]:
    """The full key: parameters, code hash, upstream artefacts' key hashes, library versions."""
    ups = [json.loads((Path(u) / KEY_FILE).read_text())["hash"] for u in upstream]
    key = {"params": params, "code": code_hash(code), "upstream": ups, "versions": _versions()}
    key["hash"] = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return key


def cached(root: str | Path, name: str, params: dict[str, Any], build: Callable[[Path], Any], *,
           code: Iterable[str] = (), upstream: Iterable[Path] = (), log: Callable[[str], None] | None = None) -> Path:
    """``<root>/<name>-<hash>``, built by ``build(tmp_dir)`` unless a finished build with this key exists."""
    key = cache_key(params, code=code, upstream=upstream)
    root = Path(root)
    out = root / f"{name}-{key['hash']}"
    if (out / KEY_FILE).exists():
        if log:
            log(f"{name}: cached {out}")
        return out
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        build(tmp)
        (tmp / KEY_FILE).write_text(json.dumps(key, indent=2, sort_keys=True, default=str) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
