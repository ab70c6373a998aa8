"""The environment checker: what a user needs to trust an environment before training on it.

>>> from rowgym.evals.checker import check_env
>>> report = check_env("rowgym/ToolAPI-Retail-v0", n_seeds=2, split_seeds=200)
>>> report.ok, report.fully_checked
(True, True)

Checks, each a row of the report with a status (``passed``, ``failed`` or ``skipped``):

* ``gymnasium_api`` — Gymnasium's own ``check_env`` (reset/step signatures, spaces, seeding);
* ``determinism`` — whole episodes replayed on the same seeds (the scripted expert, or a
  seeded random agent when there is none) give the same row traces — observations,
  actions, rewards, flags and verdict — twice on one instance and once on a fresh one;
* ``expert_solves`` — the scripted expert scores full final reward on every checked seed
  (skipped, never passed, for an env without an expert);
* ``trivial_fails`` — doing nothing (calling the terminal tool at once) never succeeds;
* ``random_fails`` — a random agent's success rate is at most ``random_max``;
* ``splits_disjoint`` — ``split_seeds`` seeds per split: every seed is in the split that
  lists it, no seed is in two splits, and no task content hash is shared by two splits
  (a hash-split over a short task list repeats tasks across splits and fails here);
* ``malformed_actions`` — unknown tools, broken JSON, invalid arguments and plain text are
  ``bad_call`` observations, never exceptions.

An env is *fully checked* only when every check ran and passed; a skipped check is
reported as skipped.
"""

from __future__ import annotations

import asyncio
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import rowgym
from rowgym.extras import install_hint
from rowgym.rows import Episode, Split

Status = Literal["passed", "failed", "skipped"]


@dataclass
class CheckResult:
    name: str
    status: Status
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class CheckReport:
    env_id: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed (skipped checks do not fail the report; see ``fully_checked``)."""
        return all(r.status != "failed" for r in self.results)

    @property
    def fully_checked(self) -> bool:
        """Every check ran and passed."""
        return all(r.status == "passed" for r in self.results)

    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "failed"]

    def skipped(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "skipped"]


class _Skip(Exception):
    """A check that cannot run for this env (reported as skipped)."""


MALFORMED: list[tuple[str, Any]] = [
    ("unknown tool", {"name": "definitely_not_a_tool", "arguments": {}}),
    ("broken JSON", {"name": "finish", "arguments": '{"answer": '}),
    ("arguments not an object", {"name": "finish", "arguments": "[1, 2]"}),
    ("plain text", "I think I am done here."),
    ("empty", ""),
    ("hermes tag, broken", "<tool_call>{not json}</tool_call>"),
]


@dataclass
class _Ctx:
    env_id: str
    env: Any
    seeds: list[int]
    random_episodes: int
    random_max: float
    split_seeds: int


def check_env(env_id: str, n_seeds: int = 5, random_episodes: int = 20, random_max: float = 0.05,
              seeds: list[int] | None = None, split_seeds: int = 1000) -> CheckReport:
    """Run every check on ``env_id``.

    Args:
        env_id: A registered environment id.
        n_seeds: Seeds (dev, then train) used for determinism, the expert and the trivial agent.
        random_episodes: Episodes of the random agent.
        random_max: Highest random success rate that passes.
        seeds: Use these seeds instead of the first ``n_seeds`` dev seeds.
        split_seeds: Seeds listed per split by the disjointness check.
    """
    report = CheckReport(env_id)
    try:
        env = rowgym.make(env_id)
    except ModuleNotFoundError as e:  # an optional dependency: every check is skipped, with what to install
        why = f"needs {e.name!r}: {install_hint(e.name)}"
        report.results = [CheckResult(name, "skipped", why) for name, _ in CHECKS]
        return report
    try:
        ctx = _Ctx(env_id, env, seeds or default_seeds(env, n_seeds), random_episodes, random_max, split_seeds)
        for name, fn in CHECKS:
            try:
                passed, detail = fn(ctx)
                status: Status = "passed" if passed else "failed"
            except _Skip as e:
                status, detail = "skipped", str(e)
            except Exception as e:  # a check that crashes is a failed check, with its traceback
                status, detail = "failed", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
            report.results.append(CheckResult(name, status, detail))
    finally:
        env.close()
    return report


def default_seeds(env: Any, n: int) -> list[int]:
    """The first ``n`` dev seeds, topped up with train seeds when a small task list has fewer."""
    seeds = env.splits.seeds(Split.DEV, n)
    return seeds + env.splits.seeds(Split.TRAIN, n - len(seeds)) if len(seeds) < n else seeds


def _gymnasium_api(c: _Ctx) -> tuple[bool, str]:
    from gymnasium.utils.env_checker import check_env as gym_check

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check(c.env, skip_render_check=True, skip_close_check=True)
    serious = [str(w.message) for w in caught if "seed" in str(w.message).lower()
               or "determin" in str(w.message).lower()]
    return not serious, "; ".join(serious) or "Gymnasium's check_env passed"


# ------------------------------------------------------------------ playing episodes
def _play(env_id: str, agent_name: str, seeds: list[int], repeats: int = 1, **agent_kw: Any) -> list[list[Episode]]:
    """Play each seed ``repeats`` times on one env instance; one list of episodes per repeat."""
    from rowgym.agents import make_agent
    from rowgym.rollouts.episode import EpisodeKey, play_episode

    async def run() -> list[list[Episode]]:
        env = rowgym.make(env_id)
        agent = make_agent(agent_name, env, **agent_kw)
        try:
            return [[await play_episode(env, agent, EpisodeKey("check", s)) for s in seeds] for _ in range(repeats)]
        finally:
            await env.aclose()
            await agent.aclose()

    return asyncio.run(run())


def trace(ep: Episode) -> list[Any]:
    """What must be identical when an episode is replayed: every row but its timings, and the verdict."""
    rows = [s.model_dump(mode="json", exclude={"timings", "run_id"}) for s in ep.steps]
    verdict = ep.verdict.model_dump(mode="json") if ep.verdict else None
    return [ep.task_hash, ep.instruction, rows, verdict, ep.failure.reason if ep.failure else None]


def _first_difference(a: list[Any], b: list[Any]) -> str:
    labels = ["task hash", "instruction", "rows", "verdict", "failure"]
    for label, x, y in zip(labels, a, b, strict=True):
        if x == y:
            continue
        if label == "rows":
            for i, (rx, ry) in enumerate(zip(x, y, strict=False)):
                for k in rx:
                    if rx[k] != ry.get(k):
                        return f"turn {i} field {k!r}: {str(rx[k])[:80]!r} != {str(ry.get(k))[:80]!r}"
            return f"{len(x)} turns != {len(y)} turns"
        return f"{label}: {str(x)[:120]!r} != {str(y)[:120]!r}"
    return "identical"


def _determinism(c: _Ctx) -> tuple[bool, str]:
    agent = "expert" if rowgym.spec(c.env_id).expert else "random"
    first, again = _play(c.env_id, agent, c.seeds, repeats=2)
    [fresh] = _play(c.env_id, agent, c.seeds)
    problems = []
    for a, b, f in zip(first, again, fresh, strict=True):
        ta = trace(a)
        for label, other in (("same instance", b), ("fresh instance", f)):
            if trace(other) != ta:
                problems.append(f"seed {a.seed}, {label}: {_first_difference(ta, trace(other))}")
    turns = sum(len(e.steps) for e in first)
    if problems:
        return False, f"{len(problems)} replays differ ({agent} agent): " + "; ".join(problems[:3])
    return True, (f"{len(c.seeds)} seeds x 3 replays of whole {agent} episodes ({turns} turns each time): "
                  f"identical row traces and verdicts")


def _failed_checks(ep: Episode) -> str:
    if ep.failure:
        return f"{ep.failure.kind} failure: {ep.failure.reason[:200]}"
    if ep.verdict is None:
        return "no verdict"
    bad = [f"{ch.name} ({ch.detail})" if ch.detail else ch.name for ch in ep.verdict.checks if not ch.passed]
    return "failed checks: " + (", ".join(bad[:5]) if bad else "none listed") + (
        f"; flags {ep.verdict.flags}" if ep.verdict.flags else "")


def _expert(c: _Ctx) -> tuple[bool, str]:
    if not rowgym.spec(c.env_id).expert:
        raise _Skip("no scripted expert registered: nothing shows the tasks are solvable (env not fully checked)")
    [eps] = _play(c.env_id, "expert", c.seeds)
    bad = [f"seed {e.seed}: reward {e.final_reward} — {_failed_checks(e)}" for e in eps if e.final_reward < 1.0]
    return not bad, f"expert reward 1.0 on {len(eps)} seeds" if not bad else "; ".join(bad)


def _trivial(c: _Ctx) -> tuple[bool, str]:
    env = c.env
    terminal = [t for t in env.tool_list if t.terminal]
    wins = []
    for seed in c.seeds:
        env.reset(seed=seed)
        if terminal:
            args = {k: "" for k, f in terminal[0].args_model.model_fields.items() if f.is_required()}
            _, _, term, trunc, info = env.step({"name": terminal[0].name, "arguments": args})
        else:
            term = trunc = False
        while not (term or trunc):
            _, _, term, trunc, info = env.step("")
        verdict = info["verdict"]
        if verdict.reward >= 1.0:
            passed = [ch.name for ch in verdict.checks if ch.passed]
            wins.append(f"seed {seed}: reward {verdict.reward} (checks passed: {', '.join(passed[:5]) or 'none'})")
    how = f"calling {terminal[0].name} at once" if terminal else "empty turns"
    return not wins, f"doing nothing ({how}) never succeeds on {len(c.seeds)} seeds" if not wins else (
        "doing nothing succeeds — " + "; ".join(wins))


def _random(c: _Ctx) -> tuple[bool, str]:
    [eps] = _play(c.env_id, "random", c.env.splits.seeds(Split.DEV, c.random_episodes))
    rate = sum(e.success for e in eps) / len(eps)
    crashed = [f"seed {e.seed}: {e.failure.kind}: {e.failure.reason[:120]}" for e in eps if e.failure]
    return rate <= c.random_max and not crashed, f"random success {rate:.2f} over {len(eps)} episodes" + (
        f"; crashes: {crashed[:2]}" if crashed else "")


def _splits(c: _Ctx) -> tuple[bool, str]:
    from rowgym.splits import find_contamination

    env = c.env
    by_split = {s: env.splits.seeds(s, c.split_seeds) for s in Split}
    owners: dict[int, list[Split]] = {}
    for s, ids in by_split.items():
        for sd in ids:
            owners.setdefault(sd, []).append(s)
    problems = [f"seed {sd} is listed in {' and '.join(map(str, ss))}" for sd, ss in owners.items() if len(ss) > 1]
    problems += [f"seed {sd} is listed in {s} but split_of() says {env.splits.split_of(sd)}"
                 for s, ids in by_split.items() for sd in ids if env.splits.split_of(sd) != s][:5]
    hashes = {s: env.task_hashes(ids) for s, ids in by_split.items()}
    clashes = find_contamination(hashes)
    if clashes:
        shown = "; ".join(f"task {h[:10]} is in {sa} (seed {a}) and in {sb} (seed {b})" for h, sa, a, sb, b in clashes[:3])
        problems.append(f"{len(clashes)} tasks shared across splits — {shown}")
    counts = ", ".join(f"{s}: {len(ids)}" for s, ids in by_split.items())
    if problems:
        return False, "; ".join(problems[:6])
    return True, f"seeds per split ({counts}): disjoint, each in its own split, no task hash shared"


def _first_observations(c: _Ctx) -> tuple[bool, str]:
    """Tasks of different splits never share a first observation.

    The held-out guard tells a relabelled episode (a held-out seed's rows under a train seed) by
    comparing its first observation with what the claimed seed shows; two tasks of different
    splits that show the same one could be swapped unseen, and the held-out one trained on."""
    env, seen, clashes = c.env, {}, []
    for split in Split:
        for sd in env.splits.seeds(split, 12):
            obs, info = env.reset(seed=sd)
            other = seen.setdefault(obs, (split, sd, info.get("task_hash")))
            if other[0] != split and other[2] != info.get("task_hash"):
                clashes.append(f"{other[0]} seed {other[1]} and {split} seed {sd}")
    if clashes:
        return False, (f"{len(clashes)} pairs of tasks of different splits show the same first observation "
                       f"({'; '.join(clashes[:3])}): the held-out guard could not tell a relabelled held-out "
                       f"episode from the train seed it claims; put what identifies the task (not its answer) in it")
    return True, f"{len(seen)} first observations of 12 seeds per split, none shared across splits"


def _malformed(c: _Ctx) -> tuple[bool, str]:
    env = c.env
    problems = []
    for label, action in MALFORMED:
        env.reset(seed=c.seeds[0])
        obs, _, term, _, info = env.step(action)
        if not info.get("bad_call") or not obs.startswith("Error:"):
            problems.append(f"{label}: not a bad_call ({obs[:60]!r})")
    return not problems, "; ".join(problems) or f"{len(MALFORMED)} malformed actions became bad_call observations"


CHECKS: list[tuple[str, Callable[[_Ctx], tuple[bool, str]]]] = [
    ("gymnasium_api", _gymnasium_api), ("determinism", _determinism), ("expert_solves", _expert),
    ("trivial_fails", _trivial), ("random_fails", _random), ("splits_disjoint", _splits),
    ("first_observations_identify_tasks", _first_observations), ("malformed_actions", _malformed)]


def assert_env_ok(env_id: str, **kw: Any) -> None:
    """pytest helper: fail with the checker's details if any check fails or was skipped."""
    report = check_env(env_id, **kw)
    assert report.fully_checked, "\n".join(f"{r.name} [{r.status}]: {r.detail}" for r in report.results
                                           if r.status != "passed")
