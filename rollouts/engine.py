"""The rollout engine: many episodes on one event loop, streamed into the store, resumable.

>>> import tempfile
>>> from rowgym.rollouts.engine import CollectConfig, collect
>>> summary = collect(CollectConfig(env_id="rowgym/ToolAPI-Retail-v0", agent="expert", episodes=4,
...                                 out=tempfile.mkdtemp(), progress=False))
>>> summary.n_done, summary.success_rate
(4, 1.0)

``concurrency`` workers each own one environment and one agent and pull episode
keys from a queue; each finished episode is appended to the store at once (so a
kill loses only what was in flight), and a resumed run skips episode ids the store
already has. ``group_size`` k plays every seed k times (one GRPO group per seed).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rowgym.agents import make_agent
from rowgym.rollouts.episode import EpisodeKey, Timeouts, play_episode

import rowgym
from rowgym.rows import Episode, RunManifest, RunSource
from rowgym.splits import as_split, seed_set_hash
from rowgym.store import TrajectoryStore


@dataclass
class CollectConfig:
    """Everything that defines a collection run (the CLI's options map onto these fields)."""

    env_id: str
    agent: str = "expert"
    split: str = "train"
    episodes: int = 10
    """Number of distinct seeds; with group_size k, k * episodes episodes are played."""
    out: str | Path = "runs/run"
    group_size: int = 1
    concurrency: int = 4
    seed_offset: int = 0
    """Skip this many seeds of the split first (to draw disjoint batches)."""
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    turn_timeout_s: float | None = None
    episode_timeout_s: float | None = None
    resume: bool = True
    progress: bool = True
    record: bool = True


@dataclass
class Summary:
    """What a collection did, computed from the stored episodes."""

    out: Path
    run_id: str
    n_done: int = 0
    n_skipped: int = 0
    n_success: int = 0
    n_failed: int = 0
    mean_reward: float = 0.0
    bad_call_rate: float = 0.0
    wall_s: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.n_success / self.n_done if self.n_done else 0.0

    @classmethod
    def of(cls, out: Path, run_id: str, episodes: list[Episode], skipped: int, wall_s: float) -> Summary:
        n = len(episodes)
        steps = sum(len(e.steps) for e in episodes)
        fails: dict[str, int] = {}
        for e in episodes:
            if e.failure:
                fails[e.failure.kind] = fails.get(e.failure.kind, 0) + 1
        return cls(out, run_id, n, skipped, sum(e.success for e in episodes), sum(fails.values()),
                   sum(e.final_reward for e in episodes) / n if n else 0.0,
                   sum(e.n_bad_calls for e in episodes) / steps if steps else 0.0, wall_s, fails)


def plan(cfg: CollectConfig, run_id: str) -> tuple[list[int], list[EpisodeKey]]:
    """The seeds of the run and every episode key, in order."""
    env = rowgym.make(cfg.env_id, **cfg.env_kwargs)
    try:
        seeds = env.splits.seeds(as_split(cfg.split), cfg.episodes, start=cfg.seed_offset)
    finally:
        env.close()
    return seeds, [EpisodeKey(run_id, s, i) for s in seeds for i in range(cfg.group_size)]


def collect(cfg: CollectConfig) -> Summary:
    """Run a collection synchronously (the CLI entry point)."""
    return asyncio.run(acollect(cfg))


async def acollect(cfg: CollectConfig) -> Summary:
    store = TrajectoryStore(cfg.out)
    run_id = store.manifest.run_id if store.manifest and cfg.resume else uuid.uuid4().hex[:12]
    seeds, keys = plan(cfg, run_id)
    probe_env = rowgym.make(cfg.env_id, **cfg.env_kwargs)
    probe_agent = make_agent(cfg.agent, probe_env, **cfg.agent_kwargs)
    split = as_split(cfg.split)
    manifest = RunManifest(run_id=run_id, rowgym_version=rowgym.__version__, policy=probe_agent.policy_info(),
                           source=RunSource(env_id=cfg.env_id, env_version=probe_env.version, split=split,
                                            seeds=seeds, seed_set_hash=seed_set_hash(cfg.env_id, split, seeds),
                                            group_size=cfg.group_size),
                           reward_versions=probe_env.reward_versions(),
                           processing=[f"collect agent={cfg.agent} concurrency={cfg.concurrency}"])
    probe_env.close()
    await probe_agent.aclose()
    store.start(manifest, resume=cfg.resume)
    done_ids = store.completed_ids()
    todo = [k for k in keys if k.episode_id not in done_ids]
    queue: asyncio.Queue[EpisodeKey] = asyncio.Queue()
    for k in todo:
        queue.put_nowait(k)
    t0 = time.perf_counter()
    timeouts = Timeouts(cfg.turn_timeout_s, cfg.episode_timeout_s)
    bar = _Progress(cfg, total=len(keys), already=len(keys) - len(todo))

    async def worker() -> None:
        env = rowgym.make(cfg.env_id, **cfg.env_kwargs)
        agent = make_agent(cfg.agent, env, **cfg.agent_kwargs)
        try:
            while True:
                try:
                    key = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                ep = await play_episode(env, agent, key, timeouts, record=cfg.record)
                store.append(ep)
                bar.advance(ep)
        finally:
            await env.aclose()
            await agent.aclose()

    try:
        with bar:
            await asyncio.gather(*(worker() for _ in range(max(1, min(cfg.concurrency, len(todo))))))
    finally:
        store.close(complete=len(store.completed_ids()) >= len(keys))
    # The summary covers the whole run, including episodes stored by an earlier, interrupted invocation.
    return Summary.of(Path(cfg.out), run_id, list(store.episodes()), len(keys) - len(todo), time.perf_counter() - t0)


class _Progress:
    """A rich progress bar with episodes/s and the running success rate (or nothing)."""

    def __init__(self, cfg: CollectConfig, total: int, already: int):
        self.enabled = cfg.progress
        self.total, self.already = total, already
        self.n = self.ok = 0
        self.t0 = time.perf_counter()
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[stats]}"), TimeRemainingColumn())
            self.task = self.p.add_task(f"{cfg.env_id} · {cfg.agent}", total=total, completed=already, stats="")

    def advance(self, ep: Episode) -> None:
        self.n += 1
        self.ok += ep.success
        if self.enabled:
            rate = self.n / max(1e-9, time.perf_counter() - self.t0)
            self.p.update(self.task, advance=1, stats=f"{rate:.1f} ep/s · success {self.ok / self.n:.0%}")

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.p.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.p.__exit__(*exc)
