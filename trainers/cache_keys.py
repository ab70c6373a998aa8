"""Cache keys that include the code that produced an artefact, and a cache built on them.

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
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

KEY_FILE = "cache_key.json"


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


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose numerics shape a trained artefact."""
    out = {}
    for pkg in ("torch", "transformers", "trl"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def artefact_key(params: dict[str, Any], *, code: Iterable[str] = (), upstream: Iterable[Path] = ()) -> dict[str, Any]:
    """The full key of a :func:`cached` artefact: parameters, the source of the ``code`` modules, the key
    hashes of its ``upstream`` artefacts, library versions; ``hash`` is the digest of all of them."""
    ups = [json.loads((Path(u) / KEY_FILE).read_text())["hash"] for u in upstream]
    key = {"params": params, "code": code_version(*sorted(set(code))), "upstream": ups,
           "versions": library_versions()}
    key["hash"] = cache_key(**key)
    return key


def cached(root: str | Path, name: str, params: dict[str, Any], build: Callable[[Path], Any], *,
           code: Iterable[str] = (), upstream: Iterable[Path] = (), log: Callable[[str], None] | None = None) -> Path:
    """``<root>/<name>-<hash>``, built by ``build(tmp_dir)`` unless a finished build with this key exists.

    ``code`` names the modules (dotted) that produce the artefact. The build happens in a temp dir
    next to the target, renamed into place only when it finished: a killed build never stands in for
    a finished one, and leaves nothing behind.

    >>> root = Path(tempfile.mkdtemp())
    >>> calls = []
    >>> def build(tmp: Path) -> None:
    ...     calls.append(1)
    ...     (tmp / "x.txt").write_text("hi")
    >>> a = cached(root, "thing", {"steps": 3}, build, code=["rowgym.trainers.cache_keys"])
    >>> b = cached(root, "thing", {"steps": 3}, build, code=["rowgym.trainers.cache_keys"])
    >>> a == b, len(calls), (a / "x.txt").read_text()
    (True, 1, 'hi')
    >>> c = cached(root, "thing", {"steps": 4}, build, code=["rowgym.trainers.cache_keys"])
    >>> c != a, len(calls)
    (True, 2)
    """
    key = artefact_key(params, code=code, upstream=upstream)
    out = Path(root) / f"{name}-{key['hash']}"
    if (out / KEY_FILE).exists():
        if log:
            log(f"{name}: cached {out}")
        return out
    with atomic_dir(out) as tmp:
        build(tmp)
        (tmp / KEY_FILE).write_text(json.dumps(key, indent=2, sort_keys=True, default=str) + "\n")
    return out


@contextmanager
def atomic_dir(out: str | Path, mode: int | None = None) -> Iterator[Path]:
    """A temp dir next to ``out`` that replaces ``out`` when the block finishes, and is removed if it raises:
    a killed or failed build never leaves a half-written artefact that a later call would take for a good one.

    >>> root = Path(tempfile.mkdtemp())
    >>> with atomic_dir(root / "model") as tmp:
    ...     _ = (tmp / "w.bin").write_text("1")
    >>> sorted(p.name for p in root.iterdir()), (root / "model" / "w.bin").read_text()
    (['model'], '1')
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    if mode is not None:
        tmp.chmod(mode)
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
