"""Shared fixtures. Component-bound tests carry markers (docker, browser, vllm, train) and
still run in CI, because .ci/run starts those components first."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rowgym_cli() -> list[str]:
    """The command that runs the CLI of the rowgym under test."""
    return [sys.executable, "-m", "rowgym.cli"]


@pytest.fixture(autouse=True)
def _no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", os.environ.get("COLUMNS", "200"))
