"""One Chromium shared by the shop envs of an event loop: counted, closed by the last user, relaunched when dead.

* The pool's bookkeeping (no browser needed): per loop and options, private browsers, release.
* Envs on one loop share one browser, each episode in a fresh context (no cookie, storage or
  history of the previous one); the spare context gives the same observation as a cold one.
* The browser closes with the last env: no Chromium process of this test process is left
  (``pgrep -f chromium``, restricted to our own descendants: other jobs may run Chromium too).
* A killed Chromium fails the episode in flight with ``ShopBrowserError`` (kind ``env``) at
  once, and the next reset of every env that shared it gets one relaunched browser.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("playwright")

from rowgym.envs.shop.browser import POOL, BrowserPool, ShopBrowserError  # noqa: E402
from rowgym.errors import EnvError  # noqa: E402

needs_chromium = pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium missing")
HANG_GUARD_S = 120  # a hang would fail the test here instead of blocking the suite


# ---------------------------------------------------------------- bookkeeping
async def test_pool_counts_users_per_loop_and_options():
    pool = BrowserPool()
    a = pool.acquire(executable_path="/usr/bin/chromium")
    b = pool.acquire(executable_path="/usr/bin/chromium")
    other = pool.acquire(executable_path="/usr/bin/chromium", headless=False)
    private = pool.acquire(executable_path="/usr/bin/chromium", private=True)
    assert a is b and a.users == 2 and other is not a and private is not a and private.users == 1
    assert set(map(id, pool.shared())) == {id(a), id(other)}  # a private browser is nobody else's
    await pool.release(a)
    assert not a.closed and pool.shared().count(a) == 1
    await pool.release(b)  # the last user: closed and forgotten; the next acquire starts a new one
    assert a.closed and a not in pool.shared()
    assert pool.acquire(executable_path="/usr/bin/chromium") is not a
    with pytest.raises(ShopBrowserError, match="closed"):
        await a.get()


def test_each_loop_gets_its_own_shared_browser():
    pool = BrowserPool()

    async def take():
        return pool.acquire()

    first, second = asyncio.run(take()), asyncio.run(take())
    assert first is not second and first.loop is not second.loop


# ------------------------------------------------------------ with Chromium
def _stat(pid: int) -> tuple[str, int]:
    """A process's state letter and parent pid ("", 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return "", 0
    return fields[0], int(fields[1])


def our_chromium() -> list[int]:
    """``pgrep -f chromium``, keeping the processes that descend from this test process."""
    out = subprocess.run(["pgrep", "-f", "chromium"], capture_output=True, text=True).stdout.split()
    mine, me = [], os.getpid()
    for pid in map(int, out):
        state, p = _stat(pid)
        while p > 1 and p != me:
            p = _stat(p)[1]
        if p == me and state not in ("", "Z"):
            mine.append(pid)
    return mine


async def no_chromium_left() -> list[int]:
    """Our Chromium processes once they had the chance to exit (zombies and exiting children)."""
    for _ in range(100):
        left = our_chromium()
        if not left:
            return []
        await asyncio.sleep(0.1)
    return our_chromium()


def heldout(n: int) -> list[int]:
    from rowgym.envs.shop.env import ShopEnv
    from rowgym.rows import Split

    return ShopEnv.splits.seeds(Split.HELDOUT, n)


@needs_chromium
@pytest.mark.browser
async def test_envs_on_a_loop_share_one_browser_with_a_fresh_context_per_episode(shop_port):
    from rowgym.envs.shop.env import ShopEnv

    envs = [ShopEnv() for _ in range(3)]
    seeds = heldout(4)
    try:
        obs = await asyncio.wait_for(asyncio.gather(*(e.areset(seed=s) for e, s in zip(envs, seeds[:3], strict=True))),
                                     HANG_GUARD_S)
        [shared] = POOL.shared()
        assert shared.users == 3 and shared.launches == 1
        assert envs[0]._browser is envs[1]._browser is envs[2]._browser and envs[0]._browser.is_connected()
        assert len({id(e._context) for e in envs}) == 3  # one context per episode, never shared
        assert our_chromium(), "the shared Chromium should be running"
        for e, o in zip(envs, obs, strict=True):
            assert e.task.instruction in o[0]

        # A second episode of env 0: a new context, and nothing of the first one carries over.
        first_context, first_sid = envs[0]._context, envs[0]._sid
        await envs[0].page.evaluate("localStorage.setItem('left', 'behind')")
        await envs[0].astep({"name": "goto", "arguments": {"path": "/cart"}})
        await envs[0].areset(seed=seeds[3])
        page = envs[0].page
        assert envs[0]._context is not first_context and envs[0]._sid != first_sid
        assert [c["value"].split(".")[0] for c in await envs[0]._context.cookies()] == [envs[0]._sid]
        assert await page.evaluate("localStorage.getItem('left')") is None
        assert await page.evaluate("history.length") == 2  # the blank tab and '/': no page of the last episode
        await asyncio.gather(*envs[0]._closing, return_exceptions=True)
        assert first_context not in envs[0]._browser.contexts

        # Closing two of the three leaves the browser to the third; the last one closes it.
        browser = envs[2]._browser
        await envs[0].aclose()
        await envs[1].aclose()
        assert shared.users == 1 and browser.is_connected()
        _, _, _, _, info = await envs[2].astep({"name": "scroll", "arguments": {"direction": "down"}})
        assert not info["bad_call"]
        await envs[2].aclose()
        assert shared.users == 0 and shared.closed and not browser.is_connected() and POOL.shared() == []
        assert envs[2]._browser is None and envs[2]._pw is None
    finally:
        await asyncio.gather(*(e.aclose() for e in envs))
    assert await no_chromium_left() == []


@needs_chromium
@pytest.mark.browser
async def test_the_spare_context_observes_what_a_cold_one_does(shop_port):
    from rowgym.envs.shop.env import ShopEnv

    warm, cold = ShopEnv(), ShopEnv(spare_context=False, share_browser=False)
    seeds = heldout(2)
    try:
        await warm.areset(seed=seeds[0])
        assert warm._spare is not None  # the next episode's context is on its way
        warm_obs, _ = await warm.areset(seed=seeds[1])
        cold_obs, _ = await cold.areset(seed=seeds[1])
        assert warm_obs == cold_obs and "[ref=e14]" in warm_obs
        assert cold._browser is not warm._browser  # share_browser=False: a Chromium of its own
    finally:
        await warm.aclose()
        await cold.aclose()
    assert await no_chromium_left() == []


def _browser_process(pids: list[int]) -> int:
    """The Chromium browser process (its children, renderers and helpers, carry ``--type=``)."""
    main = [p for p in pids if "--type=" not in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
    assert len(main) == 1, main
    return main[0]


@needs_chromium
@pytest.mark.browser
async def test_a_killed_browser_fails_the_episode_in_flight_and_is_relaunched(shop_port):
    from rowgym.envs.shop.env import ShopEnv

    a, b = ShopEnv(), ShopEnv()
    seeds = heldout(4)
    try:
        await asyncio.gather(a.areset(seed=seeds[0]), b.areset(seed=seeds[1]))
        [shared] = POOL.shared()
        dead = a._browser
        os.kill(_browser_process(our_chromium()), signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(ShopBrowserError, match="Chromium disconnected") as info:
            await asyncio.wait_for(a.astep({"name": "goto", "arguments": {"path": "/cart"}}), HANG_GUARD_S)
        assert isinstance(info.value, EnvError) and info.value.kind == "env"
        with pytest.raises(ShopBrowserError):
            await asyncio.wait_for(b.astep({"name": "scroll", "arguments": {"direction": "down"}}), HANG_GUARD_S)
        assert time.monotonic() - t0 < HANG_GUARD_S

        # The next episodes of both envs run on one new browser.
        obs = await asyncio.wait_for(asyncio.gather(a.areset(seed=seeds[2]), b.areset(seed=seeds[3])), HANG_GUARD_S)
        assert a._browser is b._browser and a._browser is not dead and a._browser.is_connected()
        assert shared.launches == 2 and shared.users == 2 and POOL.shared() == [shared]
        assert all("[ref=e14]" in o for o, _ in obs)
        cart, *_, step = await a.astep({"name": "goto", "arguments": {"path": "/cart"}})
        assert not step["bad_call"] and "URL: /cart" in cart
    finally:
        await asyncio.gather(a.aclose(), b.aclose())
    assert await no_chromium_left() == []
