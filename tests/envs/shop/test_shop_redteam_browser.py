"""Red team through a real Chromium (markers ``browser`` and ``redteam``).

* The agent's navigation tool refuses every spelling of a harness-only route; and when the
  env's guard is skipped (the agent's own browser context opening the URL directly), the
  server itself refuses: the agent's browser has no grader secret.
* Two concurrent episodes: the one that knows the other's session id cannot see its
  instruction or cart by any route.
* 300 hostile tool calls through the real browser and server: no exception, every
  observation storable, no host path in any observation.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("playwright")
if not Path("/usr/bin/chromium").exists():  # pragma: no cover - CI installs it (make setup)
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

from shop_fuzz import INTERNAL_PATHS, action  # noqa: E402

from rowgym.envs.shop.aria import refs  # noqa: E402
from rowgym.envs.shop.env import ShopEnv  # noqa: E402
from rowgym.rows import Split  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.redteam, pytest.mark.usefixtures("shop_port")]
N_BROWSER_CALLS = 300


def seeds(n: int) -> list[int]:
    return ShopEnv.splits.seeds(Split.HELDOUT, n)


async def test_other_session_is_unreachable_by_tool_and_by_direct_navigation(shop_port):
    victim, attacker = ShopEnv(), ShopEnv()
    try:
        await victim.areset(seed=seeds(2)[0])
        obs, _ = await attacker.areset(seed=seeds(2)[1])
        secret_instruction, sid = victim.task.instruction, victim._sid
        assert sid not in obs and secret_instruction not in obs
        cookie = (await attacker._context.cookies())[0]["value"]
        assert cookie.startswith(attacker._sid + ".") and attacker._sid not in obs  # signed, and never on the page
        targets = [p.replace("sid=abc", f"sid={sid}").replace("session/x", f"session/{sid}") for p in INTERNAL_PATHS]
        targets += [f"/_grader/session/{sid}", f"/%5Fgrader/session/{sid}", f"/session/start?sid={sid}"]
        for target in targets:
            obs, *_, info = await attacker.astep({"name": "goto", "arguments": {"path": target}})
            assert info["bad_call"] and secret_instruction not in obs, (target, obs[:200])
        page = attacker.page
        for target in targets:  # skip the env's guard: the agent's browser itself asks the server
            if "\t" in target or target.startswith(("//", "/\\")):
                continue  # not a path on this host (another host, or dropped by the URL parser)
            response = await page.goto(attacker.base_url + target)
            assert response is not None and response.status in (403, 404), (target, response.status)
            if response.status == 404:
                assert "join" in target.lower()  # the join route wants a valid single-use token
            text = await page.content()
            assert secret_instruction not in text and sid not in text, target
        report = await victim._client.report(sid)  # the victim's session is untouched
        assert report.instruction == secret_instruction and report.cart == [] and report.orders == []
    finally:
        await victim.aclose()
        await attacker.aclose()


async def test_three_hundred_hostile_calls_through_the_real_browser(shop_port):
    env = ShopEnv(max_turns=60, action_timeout_ms=2_000, navigation_timeout_ms=10_000)
    rng = random.Random(7)
    uncaught, crashes, kinds = [], [], set()
    try:
        obs, _ = await env.areset(seed=seeds(3)[2])
        host_paths = env._host_paths()
        for i in range(N_BROWSER_CALLS):
            act = action(rng, refs(obs))
            try:
                obs, _, terminated, truncated, info = await env.astep(act)
            except Exception as e:  # the property under test: never
                uncaught.append(f"{type(e).__name__}: {str(e)[:200]} <- {str(act)[:120]!r}")
                obs, _ = await env.areset(seed=seeds(5)[i % 5])
                continue
            obs.encode("utf-8")
            assert "\x00" not in obs and not any(root in obs for root in host_paths), obs[:300]
            kinds.add(info["error_kind"])
            if info["error_kind"] == "tool_crash":
                crashes.append(info.get("tool_crash"))
            if terminated or truncated:
                obs, _ = await env.areset(seed=seeds(5)[i % 5])
    finally:
        await env.aclose()
    assert uncaught == [] and crashes == [], (uncaught[:5], crashes[:5])
    assert {None, "tool_error", "invalid_arguments"} <= kinds  # tools ran, failed as designed, and refused input
