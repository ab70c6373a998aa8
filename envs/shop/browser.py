"""One Chromium per event loop, shared by every shop environment on that loop.

>>> import asyncio                                                       # doctest: +SKIP
>>> async def demo():                                                    # doctest: +SKIP
...     shared = POOL.acquire(executable_path="/usr/bin/chromium", headless=True)
...     try:
...         browser = await shared.get()          # launched on first use, relaunched if it died
...         context = await browser.new_context()  # one per episode: cookies, storage, history
...         await context.close()
...     finally:
...         await POOL.release(shared)             # the last release closes Chromium and Playwright
>>> asyncio.run(demo())                                                  # doctest: +SKIP

(Skipped in doctests: it needs Chromium; see ``tests/envs/shop/test_shop_browser_pool.py``.)

A rollout worker process runs many environments on one event loop (``rowgym collect
--concurrency N``). Each of them used to launch its own Chromium; now they share one, and
each episode still gets a fresh browser context (separate cookies, storage, cache and
history, as an incognito window), so episodes are as isolated as before.

* **Per event loop.** Playwright's objects belong to the loop that made them, so the pool keys
  a shared browser by the running loop (and the launch options). The sync face of an env runs
  on its own private loop and so gets a browser of its own.
* **Reference-counted.** :meth:`BrowserPool.acquire` counts a user, :meth:`BrowserPool.release`
  uncounts it; the last release closes the browser and stops Playwright's driver, so no
  Chromium process outlives the environments that used it.
* **Relaunched when dead.** :meth:`SharedBrowser.get` returns a connected browser: if Chromium
  crashed or was killed, the next call launches a new one (once, for all waiting callers).
  The episodes in flight on the dead browser fail with :class:`ShopBrowserError` (kind ``env``);
  Playwright rejects their pending calls when the browser's pipe closes, so nothing hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from dataclasses import dataclass
from typing import Any

from rowgym.envs.shop.errors import ShopError
from rowgym.envs.shop.screenshots import CHROMIUM, CHROMIUM_ARGS

#: Chromium's headless shell (Debian's ``chromium-headless-shell``: the same build as ``chromium`` without
#: the desktop browser layer; what Playwright itself runs for headless Chromium). A fresh context's first
#: page load and snapshot cost it about a quarter of the CPU that ``chromium --headless`` spends. The
#: binary itself, not ``/usr/bin/chromium-headless-shell``: that is a shell script which runs it as a
#: child (``sh -e``, no ``exec``), so killing or watching "the browser process" would miss it.
HEADLESS_SHELL = "/usr/lib/chromium/chromium-headless-shell"


def default_executable(headless: bool = True) -> str:
    """The Chromium to launch: the headless shell when running headless and it is installed, else ``chromium``."""
    if headless and os.access(HEADLESS_SHELL, os.X_OK):
        return HEADLESS_SHELL
    return CHROMIUM


class ShopBrowserError(ShopError):
    """Chromium crashed, disconnected or could not be launched (the episode fails with kind 'env')."""


@dataclass(frozen=True)
class LaunchOptions:
    """What makes two browsers interchangeable: same binary, same mode, same flags."""

    executable_path: str = CHROMIUM
    headless: bool = True
    args: tuple[str, ...] = tuple(CHROMIUM_ARGS)


class SharedBrowser:
    """A Chromium (and the Playwright driver that runs it) used by ``users`` environments on one loop."""

    def __init__(self, options: LaunchOptions, loop: asyncio.AbstractEventLoop):
        self.options = options
        self.loop = loop
        self.users = 0
        self.launches = 0
        self.playwright: Any = None
        self.browser: Any = None
        self._lock = asyncio.Lock()
        self.closed = False

    async def get(self, *, replace: Any = None) -> Any:
        """A connected browser, launching one if there is none or the last one died.

        Args:
            replace: A browser the caller found broken (say ``new_context`` failed on it): if it is
                still the current one it is discarded and a new one launched, even if Playwright has
                not yet noticed the disconnection.
        """
        if self.closed:
            raise ShopBrowserError("the shared browser was closed (its last user released it); acquire it again")
        async with self._lock:
            stale = self.browser is not None and (self.browser is replace or not self.browser.is_connected())
            if stale:
                await self._discard_browser()
            if self.browser is None:
                await self._launch()
            return self.browser

    async def _launch(self) -> None:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        for attempt in (1, 2):
            try:
                if self.playwright is None:
                    self.playwright = await async_playwright().start()
                self.browser = await self.playwright.chromium.launch(
                    executable_path=self.options.executable_path, args=list(self.options.args),
                    headless=self.options.headless)
                self.launches += 1
                return
            except (PlaywrightError, OSError) as e:
                await self._stop_playwright()  # the driver itself may be what broke: start a fresh one once
                if attempt == 2:
                    raise ShopBrowserError(f"could not launch Chromium ({self.options.executable_path}): "
                                           f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}") from e

    async def _discard_browser(self) -> None:
        browser, self.browser = self.browser, None
        if browser is not None:
            with contextlib.suppress(Exception):  # already dead: closing only releases Playwright's side
                await asyncio.wait_for(browser.close(), 10)

    async def _stop_playwright(self) -> None:
        pw, self.playwright = self.playwright, None
        if pw is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pw.stop(), 10)

    async def aclose(self) -> None:
        """Close the browser and stop Playwright's driver (the pool calls it on the last release)."""
        self.closed = True
        async with self._lock:
            await self._discard_browser()
            await self._stop_playwright()


class BrowserPool:
    """Shared browsers by event loop and launch options, each counted by its users.

    ``acquire`` is synchronous (called on the loop that will use the browser), so concurrent
    first resets on one loop all get the same :class:`SharedBrowser`, and its lock makes them
    launch one Chromium between them.
    """

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[LaunchOptions, SharedBrowser]] = (
            weakref.WeakKeyDictionary())

    def acquire(self, *, executable_path: str = CHROMIUM, headless: bool = True,
                args: tuple[str, ...] = tuple(CHROMIUM_ARGS), private: bool = False) -> SharedBrowser:
        """Count one more user of the running loop's browser for these options (created on first use).

        Args:
            private: A browser of its own, not shared with anyone (one Chromium per env, as
                before sharing; the benchmark's baseline). It is still closed by :meth:`release`.
        """
        loop = asyncio.get_running_loop()
        options = LaunchOptions(executable_path, headless, tuple(args))
        if private:
            shared = SharedBrowser(options, loop)
        else:
            mine = self._by_loop.setdefault(loop, {})
            shared = mine.get(options)
            if shared is None:
                shared = mine[options] = SharedBrowser(options, loop)
        shared.users += 1
        return shared

    async def release(self, shared: SharedBrowser) -> None:
        """Count one user less; the last one closes the browser (on its own loop, else it is only forgotten)."""
        shared.users -= 1
        if shared.users > 0:
            return
        mine = self._by_loop.get(shared.loop, {})
        if mine.get(shared.options) is shared:
            del mine[shared.options]  # before any await: a concurrent acquire starts a new browser
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is shared.loop:
            await shared.aclose()
        else:  # Playwright objects of another (finished) loop cannot be driven from here
            shared.closed = True

    def shared(self) -> list[SharedBrowser]:
        """The shared browsers of the running loop (for tests and diagnostics)."""
        return list(self._by_loop.get(asyncio.get_running_loop(), {}).values())


#: The process's pool: every :class:`~rowgym.envs.shop.env.ShopEnv` on a loop shares its browser.
POOL = BrowserPool()
