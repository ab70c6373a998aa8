"""A corpus repo-patch env with a warm sandbox, one per test module (skipped with the reason if no backend runs)."""

import pytest

from rowgym.envs.repopatch.families import CorpusEnv
from rowgym.sandboxes import SandboxError


@pytest.fixture(scope="module")
def env():
    try:
        e = CorpusEnv(pool_size=1)
        e.reset(seed=0)
    except SandboxError as exc:
        pytest.skip(f"no sandbox backend: {exc}")
    yield e
    e.close()
