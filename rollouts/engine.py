"""The rollout engine: many episodes on one event loop, streamed into the store, resumable.

>>> import tempfile
>>> from rowgym.rollouts.engine import CollectConfig, collect
>>> summary = collect(CollectConfig(env_id="rowgym/ToolAPI-Retail-v0", agent="expert", episodes=4,
...                                 out=tempfile.mkdtemp(), progress=False))
>>> summary.n_done, summary.success_rate
(4, 1.0)

``concurrency`` workers pull episode keys from a queue; each builds its environment and
agent when it takes its first key and reuses them for the next ones. Each finished
episode goes to one writer that appends it to the store (so a kill loses only what was
in flight) off the event loop, and a resumed run skips episode ids the store already
has (``retry_failed`` plays failed ones again; readers then see the retry's record).
``group_size`` k plays every seed k times (one GRPO group per seed, ``group_id`` =
``run_id:seed``).

``backend="ray"`` runs the same workers inside Ray actors (see
:mod:`rowgym.rollouts.ray_backend`); episodes stream back to this process, which writes
them to the same store, so the format and resume are identical.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import rowgym
from rowgym import aio
from rowgym.agents import make_agent
from rowgym.errors import RowgymError
from rowgym.rollouts.episode import EpisodeKey, Timeouts, play_episode
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
    """Episodes in flight (in total, across Ray actors too)."""
    seed_offset: int = 0
    """Skip this many seeds of the split first (to draw disjoint batches)."""
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    turn_timeout_s: float | None = None
    episode_timeout_s: float | None = None
    step_timeout_s: float | None = None
    """One env step: tool call, sandbox commands and, on the last step, grading."""
    resume: bool = True
    retry_failed: bool = False
    """On resume, play again the episodes whose stored record failed (the new record replaces it)."""
    progress: bool = True
    record: bool = True
    backend: Literal["asyncio", "ray"] = "asyncio"
    ray_address: str | None = None
    """Ray cluster to join (``ray://host:10001`` or ``auto``); None starts a local instance."""
    ray_actors: int | None = None
    """Rollout actors; None means one per CPU Ray reports."""
    ray_actor_cpus: float = 1.0
    setup_modules: list[str] = field(default_factory=list)
    """Modules to import first in every process (e.g. ones that register extra envs for Ray workers)."""

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(self.turn_timeout_s, self.episode_timeout_s, self.step_timeout_s)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(d["out"])
        return d


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
    rollout_s: float = 0.0
    """Seconds from the first episode started to the last one stored (this invocation)."""
    n_played: int = 0
    """Episodes played by this invocation."""
    completion_tokens: int = 0
    """Completion ids sampled by this invocation."""

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


def completion_tokens(ep: Episode) -> int:
    """Completion ids the policy sampled in this episode (0 for scripted agents)."""
    return sum(len(s.tokens.completion_ids) for s in ep.steps if s.tokens is not None)


def plan(cfg: CollectConfig, run_id: str) -> tuple[list[int], list[EpisodeKey]]:
    """The seeds of the run and every episode key, in order."""
    env = rowgym.make(cfg.env_id, **cfg.env_kwargs)
    try:
        seeds = env.splits.seeds(as_split(cfg.split), cfg.episodes, start=cfg.seed_offset)
    finally:
        env.close()
    return seeds, [EpisodeKey(run_id, s, i) for s in seeds for i in range(cfg.group_size)]


def import_setup_modules(cfg: CollectConfig) -> None:
    for name in cfg.setup_modules:
        importlib.import_module(name)


def collect(cfg: CollectConfig) -> Summary:
    """Run a collection synchronously (the CLI entry point)."""
    return aio.run(acollect(cfg))


async def run_keys(cfg: CollectConfig, keys: list[EpisodeKey], on_episode: Callable[[Episode], Any],
                   concurrency: int | None = None) -> None:
    """Play ``keys`` with at most ``concurrency`` episodes in flight; call ``on_episode`` on each.

    The worker pool of both backends (a Ray actor runs this over its slice of keys). Each
    worker makes its env and agent lazily, so a pool wider than the work builds nothing
    extra, and closes them when the queue is empty.
    """
    queue: asyncio.Queue[EpisodeKey] = asyncio.Queue()
    for k in keys:
        queue.put_nowait(k)
    timeouts = cfg.timeouts

    async def worker() -> None:
        env = agent = None
        try:
            while True:
                try:
                    key = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if env is None:
                    env = rowgym.make(cfg.env_id, **cfg.env_kwargs)
                    agent = make_agent(cfg.agent, env, **cfg.agent_kwargs)
                ep = await play_episode(env, agent, key, timeouts, record=cfg.record)
                on_episode(ep)
                await asyncio.sleep(0)  # let other workers run between back-to-back episodes
        finally:
            if env is not None:
                await env.aclose()
            if agent is not None:
                await agent.aclose()

    n = max(1, min(concurrency or cfg.concurrency, len(keys)))
    tasks = [asyncio.create_task(worker()) for _ in range(n)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Writer:
    """Appends finished episodes to the store from one background task, off the event loop.

    ``store.append`` fsyncs every episode; on the loop that would stall every worker for a
    few ms per episode. Order of arrival is kept; ``close`` drains what is queued.
    """

    def __init__(self, store: TrajectoryStore, on_stored: Callable[[Episode], None]):
        self.store, self.on_stored = store, on_stored
        self.queue: asyncio.Queue[Episode | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())
        self.last_stored = time.perf_counter()

    def put(self, ep: Episode) -> None:
        if self.task.done():  # the writer died (disk full, ...): stop the run with its error
            self.task.result()
            raise RowgymError("the store writer stopped early")
        self.queue.put_nowait(ep)

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            eps = [e for e in batch if e is not None]
            if eps:
                await asyncio.to_thread(self._append, eps)
                self.last_stored = time.perf_counter()
                for e in eps:
                    self.on_stored(e)
            if len(eps) < len(batch):
                return

    def _append(self, eps: list[Episode]) -> None:
        for e in eps:
            self.store.append(e)

    async def close(self) -> None:
        self.queue.put_nowait(None)
        await self.task


async def acollect(cfg: CollectConfig) -> Summary:
    """Run a collection on the running event loop (see :func:`collect`)."""
    if cfg.backend not in ("asyncio", "ray"):
        raise RowgymError(f"unknown backend {cfg.backend!r}; use 'asyncio' or 'ray'")
    t_wall = time.perf_counter()
    import_setup_modules(cfg)
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
                           processing=[f"collect agent={cfg.agent} concurrency={cfg.concurrency} "
                                       f"backend={cfg.backend}"])
    probe_env.close()
    await probe_agent.aclose()
    store.start(manifest, resume=cfg.resume)
    done_ids = store.completed_ids(failed=not cfg.retry_failed)
    todo = [k for k in keys if k.episode_id not in done_ids]
    bar = _Progress(cfg, total=len(keys), already=len(keys) - len(todo))
    writer = _Writer(store, bar.advance)
    t0 = time.perf_counter()
    try:
        with bar, fewer_gc_pauses():
            if cfg.backend == "ray":
                from rowgym.rollouts.ray_backend import run_keys_on_ray

                t0 = await run_keys_on_ray(cfg, todo, writer.put)
            else:
                await run_keys(cfg, todo, writer.put)
            await writer.close()
    finally:
        if not writer.task.done():
            await writer.close()
        store.close(complete=len(store.completed_ids()) >= len(keys))
    # The summary covers the whole run, including episodes stored by an earlier, interrupted invocation.
    s = Summary.of(Path(cfg.out), run_id, list(store.episodes()), len(keys) - len(todo), time.perf_counter() - t_wall)
    s.rollout_s = (writer.last_stored - t0) if todo else 0.0
    s.n_played, s.completion_tokens = bar.n, bar.tokens
    return s


@contextmanager
def fewer_gc_pauses() -> Iterator[None]:
    """While episodes run, keep the cyclic GC off the objects built before (modules, tokenizer,
    envs) and let it run less often; restored afterwards.

    Hundreds of episodes in flight allocate rows and id lists fast, and every full collection
    re-scans everything alive. Measured with benchmarks/bench_rollouts.py's workload at 0.2 s
    per call: GC time 0.25 s -> 0.11 s of a 2.2 s collection.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(old[0], 10_000), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


class _Progress:
    """A rich progress bar with episodes/s, tokens/s and the running success rate (or nothing)."""

    def __init__(self, cfg: CollectConfig, total: int, already: int):
        self.enabled = cfg.progress
        self.total, self.already = total, already
        self.n = self.ok = self.tokens = 0
        self.failed: dict[str, int] = {}
        self.t0 = time.perf_counter()
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[stats]}"), TimeRemainingColumn())
            self.task = self.p.add_task(f"{cfg.env_id} · {cfg.agent}", total=total, completed=already, stats="")

    def advance(self, ep: Episode) -> None:
        self.n += 1
        self.ok += ep.success
        self.tokens += completion_tokens(ep)
        if ep.failure:
            self.failed[ep.failure.kind] = self.failed.get(ep.failure.kind, 0) + 1
        if self.enabled:
            self.p.update(self.task, advance=1, stats=self.stats())

    def stats(self) -> str:
        dt = max(1e-9, time.perf_counter() - self.t0)
        fails = " ".join(f"{k}:{v}" for k, v in sorted(self.failed.items()))
        return (f"{self.n / dt:.1f} ep/s · {self.tokens / dt:.0f} tok/s · success {self.ok / max(1, self.n):.0%}"
                + (f" · failed {fails}" if fails else ""))

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.p.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.p.__exit__(*exc)
