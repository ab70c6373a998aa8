"""What makes the shop's reset fast, without loosening episode isolation.

* The spare context's page is warmed with one snapshot of the blank page (Playwright's injected
  script compiled in its renderer) and nothing else: no navigation, request, cookie or history.
* The last episode's context is closed after the new episode's first observation, never before,
  and never reused; aclose closes it if no reset follows.
* ``default_executable``: the headless shell when headless and installed, else ``chromium``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

pytest.importorskip("playwright")

from shop_mocks import BASE, MockBrowser, MockClient, MockContext, MockPage, MockShopEnv  # noqa: E402

from rowgym.envs.shop import browser as browser_mod  # noqa: E402
from rowgym.envs.shop.env import ShopEnv  # noqa: E402
from rowgym.envs.shop.screenshots import CHROMIUM  # noqa: E402

HANG_GUARD_S = 120


class LoggingPage(MockPage):
    def __init__(self, context: LoggingContext) -> None:
        super().__init__()
        self.context = context

    async def goto(self, url: str) -> None:
        self.context.log.append(("goto", self.context.n, url))
        await super().goto(url)

    async def aria_snapshot(self, mode: str = "ai") -> str:
        self.context.log.append(("snapshot", self.context.n, self.url))
        return await super().aria_snapshot(mode)


class LoggingContext(MockContext):
    def __init__(self, log: list, n: int) -> None:
        super().__init__()
        self.log, self.n, self.closed = log, n, 0

    async def new_page(self) -> LoggingPage:
        return LoggingPage(self)

    async def add_cookies(self, cookies: list[dict]) -> None:
        self.log.append(("cookie", self.n, None))
        await super().add_cookies(cookies)

    async def close(self) -> None:
        self.closed += 1
        self.log.append(("close", self.n, None))


class LoggingBrowser(MockBrowser):
    def __init__(self) -> None:
        self.log: list = []
        self.contexts: list[LoggingContext] = []

    async def new_context(self, **kw) -> LoggingContext:
        self.contexts.append(LoggingContext(self.log, len(self.contexts)))
        return self.contexts[-1]


class LoggingEnv(MockShopEnv):
    async def _ensure_browser(self) -> None:
        if self._browser is None:
            self._browser, self._client = LoggingBrowser(), MockClient()
        await super()._ensure_browser()

    async def _close_browser(self) -> None:
        self.closed_browser = self._browser
        await ShopEnv._close_browser(self)  # the real one: spare, retired and closing contexts (no pool here)


async def _settle(env: LoggingEnv) -> None:
    if env._spare is not None:
        await asyncio.wait_for(asyncio.shield(env._spare), HANG_GUARD_S)
    await asyncio.gather(*env._closing, return_exceptions=True)


async def test_the_spare_page_is_warmed_without_loading_anything():
    env = LoggingEnv()
    try:
        await env.areset(seed=1)
        await _settle(env)
        browser = env._browser
        spare = browser.contexts[1]
        assert [e for e in browser.log if e[1] == 1] == [("snapshot", 1, "about:blank")]  # no goto, no cookie
        assert spare.cookies == [] and spare.closed == 0

        await env.areset(seed=2)
        assert env._context is spare  # the warmed context is the episode's, and it starts at '/'
        assert [e[0] for e in browser.log if e[1] == 1] == ["snapshot", "cookie", "goto", "snapshot"]
        assert ("goto", 1, BASE + "/") in browser.log
    finally:
        await env.aclose()


async def test_the_last_context_closes_after_the_next_first_observation_and_only_once():
    env = LoggingEnv()
    try:
        for seed in (1, 2, 3):
            await env.areset(seed=seed)
            await _settle(env)
        browser = env._browser
        log = browser.log
        for old, new in ((0, 1), (1, 2)):
            first_obs = log.index(("goto", new, BASE + "/"))
            first_obs = next(i for i, e in enumerate(log) if i > first_obs and e[:2] == ("snapshot", new))
            assert log.index(("close", old, None)) > first_obs
            assert browser.contexts[old].closed == 1
        assert env._context is browser.contexts[2] and browser.contexts[2].closed == 0
        assert len({id(c) for c in browser.contexts}) == len(browser.contexts)  # no context ever reused
    finally:
        await env.aclose()
    await asyncio.sleep(0)


async def test_aclose_closes_the_episode_and_spare_contexts_without_a_next_reset():
    env = LoggingEnv()
    await env.areset(seed=1)
    await env.aclose()
    episode, spare = env.closed_browser.contexts
    assert episode.closed == 1 and spare.closed == 1 and env._retired == [] and not env._closing


def test_default_executable_prefers_the_headless_shell(tmp_path, monkeypatch):
    shell = tmp_path / "chromium-headless-shell"
    shell.write_text("#!/bin/sh\n")
    shell.chmod(0o755)
    monkeypatch.setattr(browser_mod, "HEADLESS_SHELL", str(shell))
    assert browser_mod.default_executable(headless=True) == str(shell)
    assert browser_mod.default_executable(headless=False) == CHROMIUM  # the shell has no window
    shell.chmod(0o644)
    assert browser_mod.default_executable(headless=True) == CHROMIUM  # present but not runnable
    monkeypatch.setattr(browser_mod, "HEADLESS_SHELL", str(tmp_path / "missing"))
    assert browser_mod.default_executable(headless=True) == CHROMIUM


needs_chromium = pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium missing")


@needs_chromium
@pytest.mark.browser
async def test_the_warmed_spare_context_has_no_cookie_request_or_history(shop_port):
    env = ShopEnv()
    try:
        await asyncio.wait_for(env.areset(seed=5), HANG_GUARD_S)
        context, page = await asyncio.wait_for(asyncio.shield(env._spare), HANG_GUARD_S)
        assert env.executable_path == browser_mod.default_executable()
        assert page.url == "about:blank" and await context.cookies() == []
        assert await page.evaluate("history.length") == 1
        assert await page.evaluate("performance.getEntriesByType('resource').length") == 0
        obs, _ = await asyncio.wait_for(env.areset(seed=6), HANG_GUARD_S)
        assert env._context is context and "[ref=e14]" in obs
        assert [c["value"].split(".")[0] for c in await context.cookies()] == [env._sid]
        assert await page.evaluate("history.length") == 2  # the blank tab and '/'
    finally:
        await env.aclose()
    assert os.environ.get("ROWGYM_SHOP_PORT") == str(shop_port)
