"""Benchmark metrics per (environment, agent), each traceable to the episodes behind it.

>>> from rowgym.evals.metrics import pass_at_k, pass_hat_k
>>> round(pass_at_k(n=4, c=1, k=2), 4)     # 1 - C(3,2)/C(4,2) = 1 - 3/6
0.5
>>> round(pass_hat_k(n=4, c=2, k=2), 4)    # C(2,2)/C(4,2) = 1/6
0.1667

Definitions (``n`` attempts of a task, ``c`` of them successful):

* ``pass@k`` — the chance that at least one of ``k`` attempts drawn without replacement
  succeeds, ``1 - C(n-c, k) / C(n, k)`` (the unbiased estimator of Chen et al. 2021),
  averaged over tasks.
* ``pass^k`` — the chance that all ``k`` drawn attempts succeed, ``C(c, k) / C(n, k)``
  (tau-bench), averaged over tasks. ``pass@1 == pass^1 ==`` the success rate when
  every task has the same number of attempts.
* The 95% confidence interval of the success rate (and of the mean final reward) is a
  seeded percentile bootstrap that resamples *tasks* with replacement (a cluster
  bootstrap: the k attempts of one task are not independent samples).
* ``outcomes`` attributes every episode to exactly one of: ``success``, ``wrong``
  (finished, the verifier said no), ``truncated`` (ran out of turns) and
  ``failure:<kind>`` (the policy, env, sandbox, grader, timeout or agent broke).

:attr:`GroupMetrics.episode_ids` lists, for each of those outcomes and for
``all``/``bad_call``, the episode ids counted, so every number in a report can be
traced back to rows in the run directory.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from math import comb
from typing import Any

import numpy as np

from rowgym.rows import Episode


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with ``n`` attempts of which ``c`` succeeded."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k (all of k attempts succeed) for one task: ``C(c, k) / C(n, k)``."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return comb(c, k) / comb(n, k)


def bootstrap_ci(values_by_task: list[list[float]], *, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over all attempts, resampling tasks with replacement.

    >>> bootstrap_ci([[1.0], [1.0], [1.0]])
    (1.0, 1.0)
    """
    if not values_by_task:
        return (0.0, 0.0)
    sums = np.array([sum(v) for v in values_by_task], dtype=float)      # (T,)
    counts = np.array([len(v) for v in values_by_task], dtype=float)    # (T,)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))          # (B, T)
    means = sums[idx].sum(axis=1) / np.maximum(counts[idx].sum(axis=1), 1)  # (B,)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def outcome(ep: Episode) -> str:
    """The one outcome an episode is attributed to (see the module docstring)."""
    if ep.failure is not None:
        return f"failure:{ep.failure.kind}"
    if ep.success:
        return "success"
    if ep.steps and ep.steps[-1].truncated:
        return "truncated"
    return "wrong"


@dataclass
class GroupMetrics:
    """Every number the report shows for one (environment, agent) pair."""

    env_id: str
    agent: str
    n_episodes: int = 0
    n_tasks: int = 0
    attempts: int = 1
    success_rate: float = 0.0
    success_ci: tuple[float, float] = (0.0, 0.0)
    mean_reward: float = 0.0
    reward_ci: tuple[float, float] = (0.0, 0.0)
    pass_at: dict[int, float] = field(default_factory=dict)
    """pass@k for k = 1..attempts."""
    pass_hat: dict[int, float] = field(default_factory=dict)
    """pass^k for k = 1..attempts."""
    mean_turns: float = 0.0
    mean_completion_tokens: float = 0.0
    mean_prompt_tokens: float = 0.0
    total_tokens: int = 0
    bad_call_rate: float = 0.0
    """Bad calls per step."""
    episodes_with_bad_call: float = 0.0
    mean_time_s: float = 0.0
    p90_time_s: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    episode_ids: dict[str, list[str]] = field(default_factory=dict)
    per_task: dict[int, dict[str, Any]] = field(default_factory=dict)
    """seed -> {task_hash, n, c, episode_ids}."""
    rewards: list[float] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)

    @property
    def k(self) -> int:
        return max(self.pass_at, default=1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pass_at"] = {str(k): v for k, v in self.pass_at.items()}
        d["pass_hat"] = {str(k): v for k, v in self.pass_hat.items()}
        d["per_task"] = {str(s): v for s, v in self.per_task.items()}
        return d

    def headline(self) -> dict[str, Any]:
        """The scalar metrics (no lists), for the leaderboard and tables."""
        k = self.k
        return {"n_episodes": self.n_episodes, "n_tasks": self.n_tasks, "attempts": self.attempts,
                "success_rate": round(self.success_rate, 4),
                "success_ci95": [round(x, 4) for x in self.success_ci],
                "mean_reward": round(self.mean_reward, 4), "reward_ci95": [round(x, 4) for x in self.reward_ci],
                "pass@1": round(self.pass_at.get(1, 0.0), 4), f"pass@{k}": round(self.pass_at.get(k, 0.0), 4),
                f"pass^{k}": round(self.pass_hat.get(k, 0.0), 4), "mean_turns": round(self.mean_turns, 3),
                "mean_completion_tokens": round(self.mean_completion_tokens, 1), "total_tokens": self.total_tokens,
                "bad_call_rate": round(self.bad_call_rate, 4), "mean_time_s": round(self.mean_time_s, 4),
                "outcomes": dict(self.outcomes)}


def group_metrics(env_id: str, agent: str, episodes: list[Episode], *, n_boot: int = 2000,
                  seed: int = 0) -> GroupMetrics:
    """Compute :class:`GroupMetrics` from the episodes of one (environment, agent) run."""
    m = GroupMetrics(env_id=env_id, agent=agent, n_episodes=len(episodes))
    if not episodes:
        return m
    by_seed: dict[int, list[Episode]] = defaultdict(list)
    for ep in sorted(episodes, key=lambda e: (e.seed, e.sample_index)):
        by_seed[ep.seed].append(ep)
    m.n_tasks = len(by_seed)
    m.attempts = min(len(v) for v in by_seed.values())
    succ_by_task = [[float(e.success) for e in eps] for eps in by_seed.values()]
    rew_by_task = [[e.final_reward for e in eps] for eps in by_seed.values()]
    m.success_rate = float(np.mean([e.success for e in episodes]))
    m.success_ci = bootstrap_ci(succ_by_task, n_boot=n_boot, seed=seed)
    m.rewards = [e.final_reward for e in episodes]
    m.mean_reward = float(np.mean(m.rewards))
    m.reward_ci = bootstrap_ci(rew_by_task, n_boot=n_boot, seed=seed)
    for k in range(1, m.attempts + 1):
        m.pass_at[k] = float(np.mean([pass_at_k(len(s), int(sum(s)), k) for s in succ_by_task]))
        m.pass_hat[k] = float(np.mean([pass_hat_k(len(s), int(sum(s)), k) for s in succ_by_task]))
    m.turns = [len(e.steps) for e in episodes]
    m.mean_turns = float(np.mean(m.turns))
    comp = [sum(len(s.tokens.completion_ids) for s in e.steps if s.tokens) for e in episodes]
    prompt = [sum(len(s.tokens.prompt_ids) for s in e.steps if s.tokens) for e in episodes]
    m.mean_completion_tokens, m.mean_prompt_tokens = float(np.mean(comp)), float(np.mean(prompt))
    m.total_tokens = int(sum(comp) + sum(prompt))
    n_steps = sum(m.turns)
    m.bad_call_rate = sum(e.n_bad_calls for e in episodes) / n_steps if n_steps else 0.0
    m.episodes_with_bad_call = float(np.mean([e.n_bad_calls > 0 for e in episodes]))
    times = [e.duration_s for e in episodes]
    m.mean_time_s, m.p90_time_s = float(np.mean(times)), float(np.quantile(times, 0.9))
    ids: dict[str, list[str]] = defaultdict(list)
    for e in episodes:
        ids["all"].append(e.episode_id)
        ids[outcome(e)].append(e.episode_id)
        if e.n_bad_calls:
            ids["bad_call"].append(e.episode_id)
    m.episode_ids = dict(ids)
    m.outcomes = dict(Counter(outcome(e) for e in episodes).most_common())
    m.per_task = {s: {"task_hash": eps[0].task_hash, "n": len(eps), "c": sum(e.success for e in eps),
                      "episode_ids": [e.episode_id for e in eps]} for s, eps in by_seed.items()}
    return m
