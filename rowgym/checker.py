"""The environment checker: what a user needs to trust an environment before training on it.

>>> from rowgym.checker import check_env
>>> report = check_env("rowgym/ToolAPI-Retail-v0", n_seeds=3)
>>> report.ok
True

Checks, each a row of the report:

* ``gymnasium_api`` — Gymnasium's own ``check_env`` (reset/step signatures, spaces, seeding);
* ``determinism`` — the same seed gives the same first observation, task hash and step result;
* ``expert_solves`` — the scripted expert scores full final reward on every checked seed;
* ``trivial_fails`` — doing nothing (calling the terminal tool at once) never succeeds;
* ``random_fails`` — a random agent's success rate is at most ``random_max``;
* ``splits_disjoint`` — train/dev/heldout seeds and task content hashes do not overlap;
* ``malformed_actions`` — unknown tools, broken JSON, invalid arguments and plain text are
  ``bad_call`` observations, never exceptions.

This module sits in the core for discoverability but imports agents and rollouts
lazily, inside the functions that play episodes.
"""

from __future__ import annotations

import asyncio
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rowgym
from rowgym.rows import Split


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class CheckReport:
    env_id: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]


MALFORMED: list[tuple[str, Any]] = [
    ("unknown tool", {"name": "definitely_not_a_tool", "arguments": {}}),
    ("broken JSON", {"name": "finish", "arguments": '{"answer": '}),
    ("arguments not an object", {"name": "finish", "arguments": "[1, 2]"}),
    ("plain text", "I think I am done here."),
    ("empty", ""),
    ("hermes tag, broken", "<tool_call>{not json}</tool_call>"),
]


def check_env(env_id: str, n_seeds: int = 5, random_episodes: int = 20, random_max: float = 0.05,
              seeds: list[int] | None = None) -> CheckReport:
    """Run every check on ``env_id``; ``seeds`` overrides the seeds checked (default: first dev seeds)."""
    report = CheckReport(env_id)
    env = rowgym.make(env_id)
    try:
        seeds = seeds or env.splits.seeds(Split.DEV, n_seeds)
        for name, fn in _checks():
            try:
                passed, detail = fn(env_id, env, seeds, random_episodes, random_max)
            except Exception as e:  # a check that crashes is a failed check, with its traceback
                passed, detail = False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
            report.results.append(CheckResult(name, passed, detail))
    finally:
        env.close()
    return report


def _checks() -> list[tuple[str, Callable[..., tuple[bool, str]]]]:
    return [("gymnasium_api", _gymnasium_api), ("determinism", _determinism), ("expert_solves", _expert),
            ("trivial_fails", _trivial), ("random_fails", _random), ("splits_disjoint", _splits),
            ("malformed_actions", _malformed)]


def _gymnasium_api(env_id, env, seeds, *_):
    from gymnasium.utils.env_checker import check_env as gym_check

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check(env, skip_render_check=True, skip_close_check=True)
    serious = [str(w.message) for w in caught if "seed" in str(w.message).lower()
               or "determin" in str(w.message).lower()]
    return not serious, "; ".join(serious) or "Gymnasium's check_env passed"


def _determinism(env_id, env, seeds, *_):
    seed = seeds[0]
    a, ia = env.reset(seed=seed)
    step_a = env.step({"name": "definitely_not_a_tool", "arguments": {}})[0]
    b, ib = env.reset(seed=seed)
    step_b = env.step({"name": "definitely_not_a_tool", "arguments": {}})[0]
    other = rowgym.make(env_id)
    try:
        c, ic = other.reset(seed=seed)
    finally:
        other.close()
    same = a == b == c and ia["task_hash"] == ib["task_hash"] == ic["task_hash"] and step_a == step_b
    return same, f"seed {seed}: identical in two resets and a fresh instance" if same else "observations differ"


def _play(env_id: str, agent_name: str, seeds: list[int], **agent_kw: Any) -> list[Any]:
    from rowgym.agents import make_agent
    from rowgym.rollouts.episode import EpisodeKey, play_episode

    async def run() -> list[Any]:
        env = rowgym.make(env_id)
        agent = make_agent(agent_name, env, **agent_kw)
        try:
            return [await play_episode(env, agent, EpisodeKey("check", s)) for s in seeds]
        finally:
            await env.aclose()
            await agent.aclose()

    return asyncio.run(run())


def _expert(env_id, env, seeds, *_):
    if not rowgym.spec(env_id).expert:
        return True, "no scripted expert registered (skipped: nothing to compare against)"
    eps = _play(env_id, "expert", seeds)
    bad = [(e.seed, e.final_reward, e.failure.reason if e.failure else "") for e in eps if e.final_reward < 1.0]
    return not bad, f"expert reward 1.0 on {len(eps)} seeds" if not bad else f"below 1.0: {bad}"


def _trivial(env_id, env, seeds, *_):
    terminal = [t for t in env.tool_list if t.terminal]
    results = []
    for seed in seeds:
        env.reset(seed=seed)
        if terminal:
            args = {k: "" for k, f in terminal[0].args_model.model_fields.items() if f.is_required()}
            _, _, term, trunc, info = env.step({"name": terminal[0].name, "arguments": args})
        else:
            term = trunc = False
        while not (term or trunc):
            _, _, term, trunc, info = env.step("")
        results.append(info["verdict"].reward)
    ok = all(r < 1.0 for r in results)
    return ok, f"do-nothing rewards {results}"


def _random(env_id, env, seeds, random_episodes, random_max):
    eps = _play(env_id, "random", env.splits.seeds(Split.DEV, random_episodes))
    rate = sum(e.success for e in eps) / len(eps)
    crashed = [e.failure.reason for e in eps if e.failure]
    return rate <= random_max and not crashed, f"random success {rate:.2f} over {len(eps)} episodes" + (
        f"; crashes: {crashed[:2]}" if crashed else "")


def _splits(env_id, env, seeds, *_):
    from rowgym.splits import find_contamination

    by_split = {s: env.splits.seeds(s, 30) for s in Split}
    overlap = set(by_split[Split.TRAIN]) & set(by_split[Split.HELDOUT]) | set(by_split[Split.DEV]) & (
        set(by_split[Split.TRAIN]) | set(by_split[Split.HELDOUT]))
    wrong = [(s, sd) for s, ids in by_split.items() for sd in ids if env.splits.split_of(sd) != s]
    hashes = {s: {sd: env.task_hash(sd) for sd in ids} for s, ids in by_split.items()}
    clashes = find_contamination(hashes)
    ok = not overlap and not wrong and not clashes
    n = sum(len(v) for v in by_split.values())
    return ok, f"{n} seeds, no overlap, no shared task hash" if ok else f"overlap={overlap} wrong={wrong} clashes={clashes[:3]}"


def _malformed(env_id, env, seeds, *_):
    problems = []
    for label, action in MALFORMED:
        env.reset(seed=seeds[0])
        obs, _, term, _, info = env.step(action)
        if not info.get("bad_call") or not obs.startswith("Error:"):
            problems.append(f"{label}: not a bad_call ({obs[:60]!r})")
    return not problems, "; ".join(problems) or f"{len(MALFORMED)} malformed actions became bad_call observations"


def assert_env_ok(env_id: str, **kw: Any) -> None:
    """pytest helper: fail with the checker's details if any check fails."""
    report = check_env(env_id, **kw)
    assert report.ok, "\n".join(f"{r.name}: {r.detail}" for r in report.failed())
