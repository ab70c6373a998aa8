"""Red team: the shop's local shaping paid without task-specific work (markers ``browser`` and ``redteam``).

* ``valid_call@1`` paid +0.02 for every browser action: scrolling up and down until the step cap
  earned more than an efficient purchase's valid calls. ``valid_call@2`` pays an action's first
  success (tool, arguments, page) only, at most ``VALID_CALL_CAP`` an episode.
* The ``search`` subgoal paid a query sharing one word with the goal: one fixed query stuffed with
  every product noun of the shop paid it for every goal. Now the query must name the goal's noun and
  be at least half goal words.
* The ``options`` subgoal paid any right radio that was ever checked: clicking every radio of a group
  collected it while leaving the wrong option selected. Now only the first option checked in a group counts.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote_plus

import pytest

pytest.importorskip("playwright")
if not Path("/usr/bin/chromium").exists():  # pragma: no cover - CI installs it (make setup)
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

import rowgym  # noqa: E402
from rowgym.envs.shop.env import VALID_CALL_CAP, ShopEnv  # noqa: E402
from rowgym.envs.shop.expert import ShopExpert  # noqa: E402
from rowgym.envs.shop.instructions import all_goals  # noqa: E402
from rowgym.rollouts.episode import EpisodeKey, play_episode  # noqa: E402
from rowgym.rows import Split  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.redteam, pytest.mark.usefixtures("shop_port")]
EPS = 1e-9
STUFFED = "/search?q=" + quote_plus(" ".join(sorted({g.product_type for g in all_goals()})))
RADIO = re.compile(r'radio "([^"]+)"[^\n]*\[ref=([a-z0-9]+)\]')


@pytest.fixture(scope="module")
def env(shop_port):
    e = rowgym.make("rowgym/Shop-v0")
    yield e
    e.close()


def subgoal(info: dict) -> float:
    return info["reward_breakdown"]["subgoal_progress@1"]


def test_a_stuffed_search_pays_no_subgoal_and_a_goal_search_does(env):
    for seed in ShopEnv.splits.seeds(Split.HELDOUT, 4):
        env.reset(seed=seed)
        goal = env.task
        *_, info = env.step({"name": "goto", "arguments": {"path": STUFFED}})
        assert not info["bad_call"] and subgoal(info) == 0.0, (seed, "a query of every noun paid 'search'")
        words = " ".join([*goal.attributes, goal.product_type])  # what the expert types
        *_, info = env.step({"name": "goto", "arguments": {"path": "/search?q=" + quote_plus(words)}})
        assert subgoal(info) > 0, seed
        env.reset(seed=seed)
        *_, info = env.step({"name": "goto", "arguments": {"path": "/search?q=" + quote_plus(goal.product_type)}})
        assert subgoal(info) > 0, seed  # the noun alone is a relevant search


def test_clicking_every_radio_pays_no_option(env):
    tried = 0
    for seed in range(200):
        goal = ShopEnv().make_task(seed)
        if not goal.options:
            continue
        obs, _ = env.reset(seed=seed)
        obs, *_ = env.step({"name": "goto", "arguments": {"path": "/product/" + goal.product_id}})
        radios = RADIO.findall(obs)
        name, want = next(iter(goal.options.items()))
        if not radios or radios[0][0].lower() == want.lower():
            continue  # the first radio is the right one: clicking it first is a right choice
        farmed = 0.0
        for _label, ref in radios:
            *_, info = env.step({"name": "click", "arguments": {"ref": ref}})
            assert not info["bad_call"]
            farmed += subgoal(info)
        checked = env._run(env.page.evaluate(
            "() => Array.from(document.querySelectorAll('input[type=radio]:checked')).map(e => [e.name, e.value])"))
        assert any(goal.options.get(n, "").lower() != v.lower() for n, v in checked)  # a wrong option is left
        assert farmed == 0.0, (seed, farmed, goal.options)
        tried += 1
        if tried == 3:
            break
    assert tried == 3


async def test_stalling_earns_at_most_the_cap_and_no_more_than_the_expert(shop_port):
    env = rowgym.make("rowgym/Shop-v0")
    try:
        seed = ShopEnv.splits.seeds(Split.HELDOUT, 1)[0]
        ep = await play_episode(env, ShopExpert(), EpisodeKey("t", seed))
        assert ep.success
        expert_valid = sum(s.reward_breakdown["valid_call@2"] for s in ep.steps)
        expert_local = sum(s.reward for s in ep.steps)
        assert expert_valid == pytest.approx(0.02 * min(len(ep.steps), VALID_CALL_CAP))
        await env.areset(seed=seed)
        scroll = [{"name": "scroll", "arguments": {"direction": d}} for d in ("down", "up")]
        total = 0.0
        for i in range(env.max_turns):
            *_, info = await env.astep(scroll[i % 2])
            total += info["local_reward"]
        assert total <= 0.04 + EPS, total  # two distinct actions, however long
        await env.areset(seed=seed)
        total = 0.0
        for i in range(env.max_turns):  # a different page every time
            *_, info = await env.astep({"name": "goto", "arguments": {"path": f"/search?q=zz{i}"}})
            total += info["local_reward"]
        assert total <= 0.02 * VALID_CALL_CAP + EPS and total <= expert_local + EPS, (total, expert_local)
    finally:
        await env.aclose()
