"""The browser shop environment: contract, bad calls, expert, 8 concurrent episodes, the checker."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

pytest.importorskip("playwright")
if not Path("/usr/bin/chromium").exists():  # pragma: no cover - CI installs it (make setup)
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

import rowgym  # noqa: E402
from rowgym.envs.shop.aria import parse  # noqa: E402
from rowgym.envs.shop.env import SUBGOALS, ShopEnv  # noqa: E402
from rowgym.envs.shop.expert import ShopExpert  # noqa: E402
from rowgym.rollouts.episode import EpisodeKey, play_episode  # noqa: E402
from rowgym.rows import Split  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("shop_port")]  # a private shop server


@pytest.fixture(scope="module")
def env(shop_port):
    """One env (one Chromium) shared by the sync-face tests of this module."""
    e = rowgym.make("rowgym/Shop-v0")
    yield e
    e.close()
    assert e._browser is None and e._pw is None


def heldout(n: int) -> list[int]:
    return ShopEnv.splits.seeds(Split.HELDOUT, n)


def url_of(obs: str) -> str:
    return re.search(r"^URL: (.*)$", obs, re.M).group(1)


def ref_of(obs: str, role: str, name: str | None = None) -> str:
    return next(n.ref for n in parse(obs) if n.role == role and n.ref and (name is None or n.name == name))


def test_reset_observation_and_tools(env):
    obs, info = env.reset(seed=heldout(1)[0])
    assert info["split"] == "heldout" and info["instruction"] == env.task.instruction
    assert obs.startswith("URL: /\nTitle: Home")
    assert env.task.instruction in obs and "[ref=e14]" in obs and "[cursor=pointer]" not in obs
    names = [t["function"]["name"] for t in env.tools]
    assert names == ["click", "type", "select", "scroll", "back", "goto", "finish"]
    assert env.tools[1]["function"]["parameters"]["required"] == ["ref", "text"]


@pytest.mark.parametrize("action, words", [
    ({"name": "click", "arguments": {"ref": "e9999"}}, "Unknown element reference"),
    ({"name": "type", "arguments": {"ref": "zz", "text": "socks"}}, "Unknown element reference"),
    ({"name": "goto", "arguments": {"path": "https://example.com/"}}, "outside the shop"),
    ({"name": "goto", "arguments": {"path": "//example.com/x"}}, "outside the shop"),
    ({"name": "goto", "arguments": {"path": "/_grader/sessions"}}, "not a shop page"),
    ({"name": "goto", "arguments": {"path": "/new-session"}}, "not a shop page"),
    ({"name": "goto", "arguments": {"path": "cart"}}, "not a path"),
    ({"name": "back", "arguments": {}}, "no earlier page"),
    ({"name": "click", "arguments": {}}, "Invalid arguments"),
])
def test_bad_calls_are_observations(env, action, words):
    env.reset(seed=heldout(1)[0])
    obs, reward, terminated, truncated, info = env.step(action)
    assert info["bad_call"] and obs.startswith("Error:") and words in obs, obs
    assert reward < 0 and not terminated and not truncated
    obs, *_ , info = env.step({"name": "goto", "arguments": {"path": "/cart"}})  # the page still works
    assert not info["bad_call"] and url_of(obs) == "/cart"


def test_stale_ref_is_a_bad_call(env):
    obs, _ = env.reset(seed=heldout(1)[0])
    orders = ref_of(obs, "link", "Orders")
    env.step({"name": "click", "arguments": {"ref": orders}})  # a new page: new refs
    obs, *_, info = env.step({"name": "click", "arguments": {"ref": orders}})
    assert info["bad_call"] and "Unknown element reference" in obs


def test_select_and_type_by_ref(env):
    obs, _ = env.reset(seed=heldout(1)[0])
    box = ref_of(obs, "searchbox", "Search products")
    obs, *_, info = env.step({"name": "type", "arguments": {"ref": box, "text": env.task.product_type,
                                                             "submit": True}})
    assert url_of(obs).startswith("/search?q=") and info["reward_breakdown"]["subgoal_progress@1"] > 0
    combo = ref_of(obs, "combobox", "Category")
    obs, *_, info = env.step({"name": "select", "arguments": {"ref": combo, "option": "No such category"}})
    assert info["bad_call"] and "has no option" in obs and "T-shirts" in obs
    obs, *_, info = env.step({"name": "select", "arguments": {"ref": combo, "option": "Mugs"}})
    assert not info["bad_call"]
    price = ref_of(obs, "spinbutton", "Max price ($)")
    obs, *_, info = env.step({"name": "type", "arguments": {"ref": price, "text": "20", "submit": True}})
    assert "category=mugs" in url_of(obs) and "max_price=20" in url_of(obs)


def test_radio_group_select_and_finish_grades_from_backend(env):
    seed = next(s for s in heldout(20) if ShopEnv().make_task(s).options)
    env.reset(seed=seed)
    goal = env.task
    obs, *_ = env.step({"name": "goto", "arguments": {"path": f"/product/{goal.product_id}"}})
    name, value = next(iter(goal.options.items()))
    group = ref_of(obs, "group", name.capitalize())
    obs, *_, info = env.step({"name": "select", "arguments": {"ref": group, "option": value}})
    assert not info["bad_call"], obs
    assert info["reward_breakdown"]["subgoal_progress@1"] > 0  # a right option of a target product
    # Claiming success in text earns nothing: the grader reads the backend (nothing was bought).
    obs, reward, terminated, truncated, info = env.step({"name": "finish", "arguments": {}})
    assert terminated and not truncated
    verdict = info["verdict"]
    assert verdict.reward == 0.0 and not verdict.success and verdict.verifier == "shop_match"
    assert {c.name for c in verdict.checks} >= {"purchased", "options", "price", "finished"}


def test_step_cap_truncates(shop_port):
    env = ShopEnv(max_turns=2)
    try:
        env.reset(seed=heldout(1)[0])
        assert env.step({"name": "scroll", "arguments": {"direction": "down"}})[3] is False
        _, _, terminated, truncated, info = env.step({"name": "scroll", "arguments": {"direction": "up"}})
        assert truncated and not terminated and info["verdict"].reward == 0.0
    finally:
        env.close()


def test_screenshots_are_files_not_text(shop_port, tmp_path):
    env = ShopEnv(screenshot_dir=tmp_path)
    try:
        obs, info = env.reset(seed=heldout(1)[0])
        shot = Path(info["screenshot"])
        assert shot.read_bytes()[:4] == b"\x89PNG" and str(tmp_path) not in obs
        _, *_, info = env.step({"name": "scroll", "arguments": {"direction": "down"}})
        assert Path(info["screenshot"]).exists() and info["screenshot"] != str(shot)
    finally:
        env.close()


async def test_expert_solves_heldout_seeds(shop_port):
    env = rowgym.make("rowgym/Shop-v0")
    try:
        for seed in heldout(3):
            ep = await play_episode(env, ShopExpert(), EpisodeKey("t", seed))
            assert ep.failure is None and ep.success and ep.final_reward == 1.0, ep.verdict
            assert not any(s.bad_call for s in ep.steps)
            progress = sum(s.reward_breakdown["subgoal_progress@1"] for s in ep.steps)
            full = 0.5 * sum(SUBGOALS.values())  # each subgoal paid once (options: shared among the groups)
            assert full - 0.5 * SUBGOALS["options"] - 1e-6 <= progress <= full + 1e-6
    finally:
        await env.aclose()
    assert env._browser is None


async def test_eight_concurrent_episodes_do_not_cross(shop_port):
    seeds = heldout(8)
    envs = [rowgym.make("rowgym/Shop-v0") for _ in seeds]
    try:
        eps = await asyncio.gather(*(play_episode(e, ShopExpert(), EpisodeKey("c8", s))
                                     for e, s in zip(envs, seeds, strict=True)))
        reports = await asyncio.gather(*(e._client.report(e._sid) for e in envs))
    finally:
        await asyncio.gather(*(e.aclose() for e in envs))
    assert len({r.sid for r in reports}) == 8
    for ep, env, report in zip(eps, envs, reports, strict=True):
        assert ep.failure is None and ep.success, (ep.seed, ep.verdict)
        goal = env.task
        assert report.instruction == goal.instruction and report.cart == []
        [order] = report.orders  # exactly this episode's own order, nobody else's
        [line] = order.lines
        assert line.product_id in goal.target_product_ids and line.options == goal.options
        assert all(goal.instruction in s.next_observation for s in ep.steps[:-1])


def test_checker_passes(shop_port):
    from rowgym.evals.checker import check_env

    report = check_env("rowgym/Shop-v0", n_seeds=1, random_episodes=4)
    assert report.ok, "\n".join(f"{r.name}: {r.detail}" for r in report.failed())
