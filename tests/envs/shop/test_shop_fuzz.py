"""env.step never raises on agent input: 10,000 hostile calls against ShopEnv with a mock page.

The split: this file drives ShopEnv's real code — action parsing, argument validation, every
tool body, the goto URL guard, error observations, host-path scrubbing — with the browser
and the grader client mocked (``shop_mocks.py``): 10,000 calls in seconds. The same
generator (``shop_fuzz.py``) drives a real Chromium against a real shop server for 300
calls in ``test_shop_redteam_browser.py`` (markers ``browser`` and ``redteam``).
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

pytest.importorskip("playwright")

from shop_fuzz import INTERNAL_PATHS, action  # noqa: E402
from shop_mocks import MockShopEnv  # noqa: E402

from rowgym.envs.shop.aria import refs  # noqa: E402
from rowgym.rows import Split  # noqa: E402

N_CALLS = 10_000


def assert_storable(obs: str, env: MockShopEnv) -> None:
    obs.encode("utf-8")  # no lone surrogate: a row with this text can be written
    json.dumps(obs, ensure_ascii=False).encode("utf-8")
    assert "\x00" not in obs
    for root in env._host_paths():
        assert root not in obs, (root, obs[:300])


async def test_ten_thousand_hostile_calls_never_raise():
    env = MockShopEnv(max_turns=50)
    seeds = env.splits.seeds(Split.TRAIN, 20)
    rng = random.Random(1234)
    uncaught: list[str] = []
    kinds: Counter = Counter()
    obs, _ = await env.areset(seed=seeds[0])
    for i in range(N_CALLS):
        act = action(rng, refs(obs))
        try:
            obs, reward, terminated, truncated, info = await env.astep(act)
        except Exception as e:  # the property under test: this never happens
            uncaught.append(f"{type(e).__name__}: {str(e)[:200]} <- {str(act)[:200]!r}")
            obs, _ = await env.areset(seed=seeds[i % len(seeds)])
            continue
        assert isinstance(obs, str) and isinstance(reward, float)
        assert_storable(obs, env)
        kinds[info["error_kind"]] += 1
        if terminated or truncated:
            obs, _ = await env.areset(seed=seeds[i % len(seeds)])
    await env.aclose()
    assert uncaught == [], f"{len(uncaught)} uncaught, e.g. {uncaught[:5]}"
    assert kinds["tool_crash"] == 0, "a shop tool hit an unforeseen exception (see the warning log)"
    # the fuzz really reached the tools, both failing and succeeding, not only the parser
    assert kinds["tool_error"] > 200 and kinds[None] > 200 and kinds["invalid_arguments"] > 200, kinds
    assert sum(kinds.values()) == N_CALLS


@pytest.mark.redteam
@pytest.mark.parametrize("path", INTERNAL_PATHS)
async def test_goto_refuses_every_spelling_of_internal_routes(path):
    env = MockShopEnv()
    await env.areset(seed=env.splits.seeds(Split.TRAIN, 1)[0])
    page = env.page
    before = page.url
    obs, reward, terminated, truncated, info = await env.astep({"name": "goto", "arguments": {"path": path}})
    await env.aclose()
    first = obs.splitlines()[0]
    refused = ("not a shop page", "outside the shop", "control character")
    assert info["bad_call"] and any(r in first for r in refused), first
    assert page.url == before  # nothing was opened


@pytest.mark.redteam
@pytest.mark.parametrize("path, opened", [
    ("/cart", "/cart"), ("/product/P00001", "/product/P00001"), ("/search?q=red+mug", "/search?q=red+mug"),
    ("/%63art", "/cart"), ("/x/../orders", "/orders"), ("//cart", None), ("/static/../../../../etc/passwd", "/etc/passwd"),
])
async def test_goto_opens_the_path_it_checked(path, opened):
    env = MockShopEnv()
    await env.areset(seed=env.splits.seeds(Split.TRAIN, 1)[0])
    obs, *_, info = await env.astep({"name": "goto", "arguments": {"path": path}})
    url = env.page.url
    await env.aclose()
    if opened is None:
        assert info["bad_call"] and "outside the shop" in obs
    else:
        assert not info["bad_call"], obs[:200]
        assert url == "http://127.0.0.1:1" + opened
