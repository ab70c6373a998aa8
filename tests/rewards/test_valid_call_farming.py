"""Red team: per-step reward farming on the tool-API envs (valid_call).

``valid_call@1`` paid +0.02 for every successful call, uncapped, so with the default credit
settings (``local_coef`` 1, ``gamma`` 1) the same success was worth more the longer the agent
padded it, and a policy that never attempted the task out-earned one that tried and failed.
``valid_call@2`` pays a (tool, canonical arguments) pair only on its first success in the
episode, and at most as many calls as the gold plan has distinct calls. These tests play
episodes through ``env.step`` (the rewards a rollout stores) and compare undiscounted returns.
"""

from __future__ import annotations

import json

import pytest

import rowgym
from rowgym.envs.toolapi.home import ROOMS, TEMPS, goal_of
from rowgym.rewards.base import StepOutcome
from rowgym.rewards.credit import discounted_returns
from rowgym.rewards.local import DEFAULT_LOCAL, TOOLAPI_LOCAL, VALID_CALL, VALID_CALL_V2

pytestmark = pytest.mark.redteam

ENVS = ["rowgym/ToolAPI-Retail-v0", "rowgym/ToolAPI-Airline-v0", "rowgym/ToolAPI-Home-v0"]
SEEDS = range(12)
STEP = 0.02
EPS = 1e-9


def play(env, seed: int, calls: list) -> tuple[float, list[float], object]:
    """Undiscounted return (the sum of ``step()`` rewards), the local rewards, and the verdict."""
    env.reset(seed=seed)
    total, local, info = 0.0, [], {}
    for c in calls[:env.max_turns]:
        _, r, term, trunc, info = env.step(c)
        total += r
        local.append(info["local_reward"])
        if term or trunc:
            break
    verdict = info.get("verdict")
    # the credit module's undiscounted return of the same episode is the same number
    final = verdict.reward if verdict is not None else 0.0
    assert discounted_returns(local, gamma=1.0, final_reward=final)[0] == pytest.approx(total)
    return total, local, verdict


def _calc(i: int) -> dict:
    return {"name": "calculate", "arguments": {"expression": f"{i} + {i}"}}


def distinct_reads(env, n: int, exclude: list) -> list[dict]:
    """``n`` distinct, successful calls that change nothing the verifier looks at."""
    gold = {(c.name, json.dumps(json.loads(c.arguments), sort_keys=True)) for c in exclude}
    if env.family == "toolapi-home":  # no read tools: toggle a device the goal leaves alone, and back
        initial = env.task.facts["initial"]
        goal_devices = {a.get("room") for _, a in goal_of(env.task.seed)}
        out: list[dict] = []
        for room in ROOMS:  # whole groups only (set, set, back), so every device ends as it started
            if room in goal_devices:
                continue
            was = initial[f"thermostat:{room}"]
            group = [{"name": "set_thermostat", "arguments": {"room": room, "celsius": t}}
                     for t in TEMPS if t != was][:2]
            group.append({"name": "set_thermostat", "arguments": {"room": room, "celsius": was}})
            if len(out) + len(group) > n:
                break
            out += group
        return out
    calls = [{"name": "list_products" if env.family == "toolapi-retail" else "list_airports", "arguments": {}}]
    calls += [_calc(i) for i in range(1, n + 1)]
    calls = [c for c in calls if (c["name"], json.dumps(c["arguments"], sort_keys=True)) not in gold]
    return calls[:n]


def repeated_read(env) -> dict:
    """One successful call that changes nothing the verifier looks at (Home: set a free light as it is)."""
    if env.family == "toolapi-home":
        room = next(r for r in ROOMS if r not in {a.get("room") for _, a in goal_of(env.task.seed)})
        return {"name": "set_light", "arguments": {"room": room, "on": env.task.facts["initial"][f"light:{room}"]}}
    return {"name": "list_products" if env.family == "toolapi-retail" else "list_airports", "arguments": {}}


@pytest.mark.parametrize("env_id", ENVS)
def test_padding_a_success_never_pays_more_than_the_gold_plan(env_id):
    env = rowgym.make(env_id)
    for seed in SEEDS:
        env.reset(seed=seed)
        gold = list(env.task.gold)
        pad = env.max_turns - len(gold)
        gold_ret, gold_local, v = play(env, seed, gold)
        assert v.success
        # the gold plan still earns +0.02 per distinct call (the credit docs' R = 1.6 on Retail seed 0)
        assert sum(gold_local) == pytest.approx(STEP * len(gold) + 0.5, abs=1e-5)
        padded = {
            "first gold call repeated": [gold[0]] * (pad + 1) + gold[1:],
            "gold + a repeated read": gold[:-1] + [repeated_read(env)] * pad + gold[-1:],
        }
        env.reset(seed=seed)
        padded["gold + distinct valid calls"] = gold[:-1] + distinct_reads(env, pad, gold) + gold[-1:]
        if env.family == "toolapi-home":  # Home's repeated read: toggling one free light back and forth
            room = next(r for r in ROOMS if r not in {a.get("room") for _, a in goal_of(seed)})
            was = env.task.facts["initial"][f"light:{room}"]
            flip = [{"name": "set_light", "arguments": {"room": room, "on": not was}},
                    {"name": "set_light", "arguments": {"room": room, "on": was}}]
            padded["gold + a repeated read"] = gold[:-1] + flip * (pad // 2) + gold[-1:]
        for what, calls in padded.items():
            ret, _, v = play(env, seed, calls)
            assert v is not None and v.success, (env_id, seed, what)
            assert ret <= gold_ret + EPS, f"{env_id} seed {seed}: {what} returned {ret} > gold {gold_ret}"
    env.close()


@pytest.mark.parametrize("env_id", ENVS)
def test_stalling_earns_at_most_a_few_valid_calls(env_id):
    env = rowgym.make(env_id)
    for seed in SEEDS:
        env.reset(seed=seed)
        n_gold = len(env.task.gold)
        stall_same, _, v = play(env, seed, [repeated_read(env)] * env.max_turns)
        assert not v.success
        assert stall_same <= STEP + EPS, (env_id, seed, stall_same)  # one valid call, however long
        env.reset(seed=seed)
        calls = distinct_reads(env, env.max_turns, [])
        calls += [repeated_read(env)] * (env.max_turns - len(calls))  # until truncation
        stall_distinct, _, v = play(env, seed, calls)
        assert not v.success
        assert stall_distinct <= STEP * n_gold + EPS, (env_id, seed, stall_distinct)  # capped at the plan's size
        assert stall_distinct <= 0.12 + EPS
        give_up, _, _ = play(env, seed, [{"name": "finish", "arguments": {"answer": "I can't"}}])
        assert stall_same <= give_up + EPS  # never trying is no better than trying and failing at once
    env.close()


def test_the_old_version_is_kept_and_the_toolapi_envs_use_the_new_one():
    # stored runs keep their meaning: valid_call@1 is still importable and scores as it did
    assert VALID_CALL.key == "valid_call@1" and VALID_CALL(StepOutcome()) == 0.02
    assert VALID_CALL(StepOutcome(bad_call=True)) == 0.0
    assert VALID_CALL_V2.key == "valid_call@2" and VALID_CALL_V2.signals == ("first_success",)
    assert VALID_CALL_V2(StepOutcome()) == 0.0  # a repeat (no first-success signal) pays nothing
    assert VALID_CALL_V2(StepOutcome(signals={"first_success": 1.0})) == 0.02
    assert VALID_CALL_V2(StepOutcome(bad_call=True, signals={"first_success": 1.0})) == 0.0
    assert DEFAULT_LOCAL.versions()["valid_call"] == "1"
    assert TOOLAPI_LOCAL.versions() == {"valid_call": "2", "bad_call_penalty": "1", "subgoal_progress": "2"}
    for env_id in ENVS:
        env = rowgym.make(env_id)
        assert env.reward_versions()["valid_call"] == "2", env_id
        env.reset(seed=0)
        _, _, _, _, info = env.step(env.task.gold[0])
        assert info["reward_breakdown"]["valid_call@2"] == 0.02
        _, _, _, _, info = env.step(env.task.gold[0])
        assert info["reward_breakdown"]["valid_call@2"] == 0.0  # the same call again
        env.close()


def test_a_failed_call_does_not_use_up_its_first_success():
    env = rowgym.make("rowgym/ToolAPI-Retail-v0")
    env.reset(seed=0)
    _, r, *_, info = env.step({"name": "get_order_details", "arguments": {"order_id": "#Wnope"}})
    assert info["bad_call"] and r == pytest.approx(-0.1)
    _, _, *_, info = env.step({"name": "calculate", "arguments": {"expression": "1 +"}})
    assert info["bad_call"]
    _, _, *_, info = env.step({"name": "calculate", "arguments": {"expression": "1 + 1"}})
    assert info["reward_breakdown"]["valid_call@2"] == 0.02
    # the arguments are compared after validation, so key order and spacing of the JSON do not matter
    _, _, *_, info = env.step('{"arguments": {"expression": "1 + 1"}, "name": "calculate"}')
    assert info["reward_breakdown"]["valid_call@2"] == 0.0
    env.close()


@pytest.mark.parametrize("env_id", ENVS)
def test_finish_before_the_task_is_done_is_not_progress(env_id):
    """``finish`` is the gold plan's last step; matched whenever it came, it paid its share of the plan
    (0.1-0.27) to an agent that gave up at once or after a few harmless calls. Now it counts only as the last
    step left (``subgoal_progress@2``); the gold plan's return is unchanged."""
    env = rowgym.make(env_id)
    try:
        for seed in SEEDS:
            env.reset(seed=seed)
            gold = [{"name": c.name, "arguments": json.loads(c.arguments)} for c in env.task.gold]
            if gold[-1]["name"] != "finish":
                continue
            gold_return, _, verdict = play(env, seed, gold)
            assert verdict.success
            given_up, local, v = play(env, seed, [gold[-1]])
            if v.success:
                continue  # a task that finishing at once solves (nothing to change): that is no giving up
            assert given_up <= STEP + EPS, (env_id, seed, local)  # one valid call, no progress
            skipped, local, _ = play(env, seed, gold[:1] + [gold[-1]]) if len(gold) > 2 else (0.0, [], None)
            assert skipped <= gold_return - 1.0, (env_id, seed, local)
    finally:
        env.close()
    assert "subgoal_progress" in TOOLAPI_LOCAL.versions() and TOOLAPI_LOCAL.versions()["subgoal_progress"] == "2"
