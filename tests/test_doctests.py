"""Every ``>>>`` example in the package runs (examples that need a server or Docker say ``+SKIP``)."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["rowgym", "envs", "agents", "rollouts", "rewards", "trainers", "sandboxes", "evals"]
RESULTS: dict[str, doctest.TestResults] = {}


def _modules() -> list[str]:
    names = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [] if folder == "rowgym" else [folder]
            parts += [p for p in rel.parts if p != "__init__"]
            if ">>>" in path.read_text():
                names.append(".".join(["rowgym", *parts]))
    return names


@pytest.mark.parametrize("module", _modules())
def test_doctests(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False,
                             report=True)
    RESULTS[module] = result
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {module} failed (output above)"
