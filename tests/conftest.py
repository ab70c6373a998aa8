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


@pytest.fixture
def fresh_server_pools():
    """No policy-server pool or server statistics carried in from another test, nor out of this one."""
    from rowgym.agents import llm

    llm.ServerPool.pools.clear()
    llm.reset_server_stats()
    yield
    llm.ServerPool.pools.clear()
    llm.reset_server_stats()


@pytest.fixture(autouse=True)
def _no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", os.environ.get("COLUMNS", "200"))


# `make test` (and so CI) sets ROWGYM_REQUIRE_ALL=1 after starting every component: there a
# skipped test means a component failed to come up, so it is reported as a failure, never
# silently counted as passing.
REQUIRE_ALL = os.environ.get("ROWGYM_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_ALL and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped under ROWGYM_REQUIRE_ALL=1 (a component is missing): {rep.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_ALL and rep.skipped:
        rep.outcome = "failed"
        rep.longrepr = f"module skipped under ROWGYM_REQUIRE_ALL=1 (a component is missing): {rep.longrepr}"


# One session-scoped vLLM server for every vllm test (imported here so pytest registers it once).
from vllm_fixtures import tiny_model_dir, vllm_server  # noqa: E402,F401


def pytest_terminal_summary(terminalreporter):
    """Say how many doctest examples ran (tests/test_doctests.py), so a reader sees they are not skipped."""
    results = getattr(sys.modules.get("test_doctests"), "RESULTS", None) or getattr(
        sys.modules.get("tests.test_doctests"), "RESULTS", None)
    if results:
        ran = sum(r.attempted for r in results.values())
        failed = sum(r.failed for r in results.values())
        terminalreporter.write_line(f"doctests: {ran} examples in {len(results)} modules ran, {failed} failed")
