"""Fixtures for the sandbox tests: one sandbox per test, parametrised over backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sandbox_helpers import BACKENDS, make_sandbox

from rowgym.sandboxes.base import Sandbox


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sandbox: runs commands in a real sandbox (docker or bubblewrap)")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def sb(backend: str, tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with make_sandbox(backend, tmp_path / "ws") as box:
        yield box
