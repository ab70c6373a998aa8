"""Optional dependencies: import them lazily and say which extra to install when one is missing.

>>> install_hint("playwright")
"pip install 'rowgym[browser]'"
>>> require("json").__name__
'json'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rowgym.errors import MissingDependencyError

EXTRAS = {"playwright": "browser", "fastapi": "shop", "uvicorn": "shop", "httpx": "shop", "jinja2": "shop",
          "docker": "docker", "torch": "train", "trl": "train", "transformers": "train", "accelerate": "train",
          "tokenizers": "train", "matplotlib": "report", "datasets": "datasets", "ray": "ray"}


def install_hint(module: str | None) -> str:
    """What to install for a missing optional module."""
    extra = EXTRAS.get((module or "").split(".")[0])
    return f"pip install 'rowgym[{extra}]'" if extra else f"pip install {module}"


def require(module: str, what: str = "") -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        need = f" for {what}" if what else ""
        raise MissingDependencyError(f"{module} is needed{need}: {install_hint(e.name or module)}") from e
