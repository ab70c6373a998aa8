"""The real libraries the synthesizer mutates, and their sdists (downloaded on first use, cached).

>>> [lib.name for lib in LIBRARIES]
['inflection', 'toolz', 'cachetools']

Each is pure Python, ships its test suite in the sdist, and needs nothing beyond
pytest to run it in the sandbox image (checked: 455, 180 and 214 tests, 1-2 s each).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Library:
    name: str
    version: str
    sources: tuple[str, ...]
    """Files (relative to the sdist root) whose functions are mutated."""
    pythonpath: tuple[str, ...] = ()
    max_candidates: int = 300
    """Candidates validated at most (validation is the expensive part)."""

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


LIBRARIES = [
    Library("inflection", "0.5.1", ("inflection/__init__.py",)),
    Library("toolz", "0.12.1", ("toolz/itertoolz.py", "toolz/functoolz.py", "toolz/dicttoolz.py",
                                "toolz/recipes.py"), max_candidates=150),
    Library("cachetools", "5.3.3", ("src/cachetools/__init__.py", "src/cachetools/func.py",
                                    "src/cachetools/keys.py"), pythonpath=("src",),
            max_candidates=70),
]


def cache_root() -> Path:
    return Path(os.environ.get("ROWGYM_CACHE", Path.home() / ".cache" / "rowgym")) / "repopatch"


def source_dir(lib: Library) -> Path:
    """The library's unpacked sdist (downloaded with pip on first use)."""
    dest = cache_root() / "src" / lib.key
    if dest.is_dir():
        return dest
    sdists = cache_root() / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    found = [p for p in sdists.glob("*.tar.gz") if p.name.replace("_", "-").startswith(f"{lib.name}-{lib.version}.")]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-q",
                        "-d", str(sdists), f"{lib.name}=={lib.version}"], check=True)
        found = [p for p in sdists.glob("*.tar.gz")
                 if p.name.replace("_", "-").startswith(f"{lib.name}-{lib.version}.")]
    tmp = dest.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(found[0]) as tf:
        tf.extractall(tmp, filter="data")
    (top,) = list(tmp.iterdir())
    top.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest
