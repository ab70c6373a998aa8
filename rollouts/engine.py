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

A program that drives the engine (the GRPO trainer, :mod:`rowgym.trainers.rl`) passes
:class:`Hooks`: its own agent factory (a policy whose weights it updates), an ``admit``
coroutine awaited before each episode starts (how a trainer bounds the staleness of what
is sampled) and an ``on_stored`` callback after each episode is durably in the store.
The run directory and its manifest are the same as ``rowgym collect`` writes.

``backend="ray"`` runs the same workers inside Ray actors (see
:mod:`rowgym.rollouts.ray_backend`); episodes stream back to this process, which writes
them to the same store, so the format and resume are identical.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import rowgym
from rowgym import aio
from rowgym.agents import make_agent
from rowgym.errors import AgentError, RowgymError
from rowgym.rollouts.episode import EpisodeKey, Timeouts, play_episode
from rowgym.rows import Episode, RunIdentity, RunManifest, RunSource
from rowgym.splits import as_split, seed_set_hash
from rowgym.store import EpisodeWriter, TrajectoryStore
from rowgym.store.shards import EpisodeLine


class CollectConfigError(RowgymError):
    """A collection was asked for with invalid settings (nothing was written)."""


OPERATIONAL_OPTIONS = frozenset({"base_url", "request_timeout_s", "retry_budget_s", "lock"})
"""Agent options that change how a policy is reached, not what it samples (left out of a run's identity)."""


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
    ray_resources: dict[str, float] | None = None
    """Custom Ray resources each actor needs (e.g. ``{"browser": 1}``); None: the env's tags the cluster has."""
    setup_modules: list[str] = field(default_factory=list)
    """Modules to import first in every process (e.g. ones that register extra envs for Ray workers)."""

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(self.turn_timeout_s, self.episode_timeout_s, self.step_timeout_s)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(d["out"])
        return d

    def validate(self) -> None:
        """Raise :class:`CollectConfigError` with a one-line reason for any invalid field."""
        def bad(msg: str) -> None:
            raise CollectConfigError(msg)

        for name in ("episodes", "group_size", "concurrency"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(f"{name} must be a whole number >= 1, got {v!r}")
        if not isinstance(self.seed_offset, int) or self.seed_offset < 0:
            bad(f"seed_offset must be a whole number >= 0, got {self.seed_offset!r}")
        for name in ("turn_timeout_s", "episode_timeout_s", "step_timeout_s"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                bad(f"{name} must be a positive number of seconds, got {v!r}")
        if self.backend not in ("asyncio", "ray"):
            bad(f"unknown backend {self.backend!r}; use 'asyncio' or 'ray'")
        if self.ray_actors is not None and self.ray_actors < 1:
            bad(f"ray_actors must be >= 1, got {self.ray_actors!r}")
        if not (math.isfinite(self.ray_actor_cpus) and self.ray_actor_cpus > 0):
            bad(f"ray_actor_cpus must be > 0, got {self.ray_actor_cpus!r}")
        if not isinstance(self.agent, str) or not self.agent.strip():
            bad("agent must be a name (expert, random, vllm, hf) or module:Class")
        as_split(self.split)
        for k, v in {**self.env_kwargs, **self.agent_kwargs}.items():
            if isinstance(v, float) and not math.isfinite(v):
                bad(f"option {k}={v!r} is not a finite number")


@dataclass
class Hooks:
    """How a driving program (a trainer) takes part in a collection; every field is optional."""

    make_agent: Callable[[CollectConfig, Any], Any] | None = None
    """``(cfg, env) -> agent`` instead of ``make_agent(cfg.agent, env, **cfg.agent_kwargs)``."""
    admit: Callable[[EpisodeKey], Awaitable[None]] | None = None
    """Awaited by a worker before it starts the episode ``key`` (it may wait, e.g. for new weights)."""
    on_stored: Callable[[Episode], None] | None = None
    """Called with each episode once it is durably appended to the store."""


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
    def of(cls, out: Path, run_id: str, episodes: Iterable[Episode], skipped: int, wall_s: float) -> Summary:
        tally = Tally()
        for e in episodes:
            tally.add(Outcome.of(e))
        return tally.summary(out, run_id, skipped, wall_s)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the progress bar and the summary count of a stored episode (a few numbers, not its rows).

    The store writer reports this, taken when an episode is handed to it, instead of the episode
    when no hook asks for the episode, so it need not keep every episode (rows and all) until its
    commit: ~1.5% of a tool-API step, see docs/bench.md.
    """

    success: bool
    reward: float
    n_bad_calls: int
    n_steps: int
    failure_kind: str | None
    completion_tokens: int

    @classmethod
    def of(cls, ep: Episode) -> Outcome:
        return cls(ep.success, ep.final_reward, ep.n_bad_calls, len(ep.steps),
                   ep.failure.kind if ep.failure else None, completion_tokens(ep))


@dataclass
class Tally:
    """The counts a :class:`Summary` is made of, added up one episode at a time (keeps no episode)."""

    n: int = 0
    success: int = 0
    reward: float = 0.0
    bad_calls: int = 0
    steps: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def add(self, o: Outcome) -> None:
        self.n += 1
        self.success += o.success
        self.reward += o.reward
        self.bad_calls += o.n_bad_calls
        self.steps += o.n_steps
        if o.failure_kind is not None:
            self.failures[o.failure_kind] = self.failures.get(o.failure_kind, 0) + 1

    def summary(self, out: Path, run_id: str, skipped: int, wall_s: float) -> Summary:
        return Summary(out, run_id, self.n, skipped, self.success, sum(self.failures.values()),
                       self.reward / self.n if self.n else 0.0,
                       self.bad_calls / self.steps if self.steps else 0.0, wall_s, dict(self.failures))


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


def _plain(v: Any) -> Any:
    """A JSON-safe form of an option value (paths as strings, objects by their type)."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return f"<{type(v).__module__}.{type(v).__qualname__}>"


def agent_options(agent: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every option of an agent: its constructor's defaults, what its policy reports, what was passed."""
    opts: dict[str, Any] = {}
    try:
        params = inspect.signature(type(agent).__init__).parameters.values()
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty:
            opts[p.name] = p.default
    info = agent.policy_info()
    opts.update(info.sampling)
    opts.update(kwargs)
    return {k: _plain(v) for k, v in sorted(opts.items()) if k not in OPERATIONAL_OPTIONS}


def run_identity(cfg: CollectConfig, env: Any, agent: Any) -> RunIdentity:
    """What the run samples (see :class:`rowgym.rows.RunIdentity`)."""
    info = agent.policy_info()
    return RunIdentity(env_id=cfg.env_id, env_version=str(env.version), env_kwargs=_plain(cfg.env_kwargs),
                       split=as_split(cfg.split), seed_offset=cfg.seed_offset, group_size=cfg.group_size,
                       agent=cfg.agent, agent_options=agent_options(agent, cfg.agent_kwargs),
                       policy_model=info.model, policy_revision=info.revision,
                       reward_versions=env.reward_versions())


def build_agent(cfg: CollectConfig, env: Any, hooks: Hooks | None = None) -> Any:
    """``make_agent`` with a one-line error for a spec that is not an agent class or options it does not take."""
    if hooks is not None and hooks.make_agent is not None:
        return hooks.make_agent(cfg, env)
    if ":" in cfg.agent:
        from rowgym.registry import load_object

        try:
            obj = load_object(cfg.agent)
        except (ImportError, AttributeError, ValueError, RowgymError) as e:
            raise AgentError(f"cannot load agent {cfg.agent!r}: {type(e).__name__}: {e}") from None
        if not (isinstance(obj, type) and callable(getattr(obj, "act", None))):
            raise AgentError(f"agent {cfg.agent!r} is not an agent class (it is a {type(obj).__name__}); "
                             f"give module:Class of an Agent subclass")
    try:
        return make_agent(cfg.agent, env, **cfg.agent_kwargs)
    except TypeError as e:
        raise AgentError(f"cannot build agent {cfg.agent!r} with options {sorted(cfg.agent_kwargs)}: {e}") from None


def import_setup_modules(cfg: CollectConfig) -> None:
    for name in cfg.setup_modules:
        importlib.import_module(name)


def collect(cfg: CollectConfig) -> Summary:
    """Run a collection synchronously (the CLI entry point)."""
    return aio.run(acollect(cfg))


async def run_keys(cfg: CollectConfig, keys: list[EpisodeKey], on_episode: Callable[[Episode], Any],
                   concurrency: int | None = None, hooks: Hooks | None = None,
                   drain: Callable[[], Awaitable[Any]] | None = None,
                   on_line: Callable[[Episode, bytes | None], Any] | None = None) -> None:
    """Play ``keys`` with at most ``concurrency`` episodes in flight; call ``on_episode`` on each.

    ``on_line`` instead of ``on_episode``: called with each episode and its stored line, written
    as the episode was played (None when the store's encoder must decide; see
    :class:`rowgym.store.shards.EpisodeLine`).

    The worker pool of both backends (a Ray actor runs this over its slice of keys). Each
    worker makes its env and agent lazily, so a pool wider than the work builds nothing
    extra, and closes them when the queue is empty. ``drain`` is awaited once, by the worker
    that played the last episode, before it closes its env and agent: the collection passes
    its store writer's close, so the last commit does not wait behind the teardown on the
    loop (closing the shared HTTP session and its connections: ~10-20 ms at 256 in flight).
    """
    queue: asyncio.Queue[EpisodeKey] = asyncio.Queue()
    for k in keys:
        queue.put_nowait(k)
    timeouts = cfg.timeouts
    hooks = hooks or Hooks()
    n = max(1, min(concurrency or cfg.concurrency, len(keys)))
    running = [n]  # workers still playing

    async def worker() -> None:
        env = agent = None
        try:
            while True:
                try:
                    key = queue.get_nowait()
                except asyncio.QueueEmpty:
                    running[0] -= 1
                    if running[0] == 0 and drain is not None:
                        await drain()
                    return
                if env is None:
                    env = rowgym.make(cfg.env_id, **cfg.env_kwargs)
                    agent = hooks.make_agent(cfg, env) if hooks.make_agent else make_agent(cfg.agent, env,
                                                                                            **cfg.agent_kwargs)
                if hooks.admit is not None:
                    await hooks.admit(key)
                if on_line is None:
                    on_episode(await play_episode(env, agent, key, timeouts, record=cfg.record))
                else:
                    line = EpisodeLine() if cfg.record else None
                    ep = await play_episode(env, agent, key, timeouts, record=cfg.record, line=line)
                    on_line(ep, line.text if line is not None else None)
                await asyncio.sleep(0)  # let other workers run between back-to-back episodes
        finally:
            if env is not None:
                await env.aclose()
            if agent is not None:
                await agent.aclose()

    tasks = [asyncio.create_task(worker()) for _ in range(n)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def acollect(cfg: CollectConfig, hooks: Hooks | None = None) -> Summary:
    """Run a collection on the running event loop (see :func:`collect`; ``hooks``: see :class:`Hooks`).

    Everything is checked before anything is written: the settings, the env, the agent and
    the run directory (one writer at a time, and a resume must have the run's identity).
    """
    cfg.validate()
    if hooks is not None and cfg.backend == "ray" and (hooks.make_agent or hooks.admit):
        raise CollectConfigError("agent and admission hooks run in this process; use backend='asyncio' with them")
    t_wall = time.perf_counter()
    import_setup_modules(cfg)
    split = as_split(cfg.split)
    probe_env = rowgym.make(cfg.env_id, **cfg.env_kwargs)
    try:
        seeds = probe_env.splits.seeds(split, cfg.episodes, start=cfg.seed_offset)
        if not seeds:
            raise CollectConfigError(f"{cfg.env_id} has no {split.value} seeds from index {cfg.seed_offset}")
        probe_agent = build_agent(cfg, probe_env, hooks)
        try:
            identity, policy = run_identity(cfg, probe_env, probe_agent), probe_agent.policy_info()
        finally:
            await probe_agent.aclose()
        env_version, reward_versions = probe_env.version, probe_env.reward_versions()
    finally:
        probe_env.close()
    store = TrajectoryStore(cfg.out)
    try:
        run_id = store.manifest.run_id if store.manifest and cfg.resume else uuid.uuid4().hex[:12]
        keys = [EpisodeKey(run_id, s, i) for s in seeds for i in range(cfg.group_size)]
        manifest = RunManifest(run_id=run_id, rowgym_version=rowgym.__version__, policy=policy,
                               source=RunSource(env_id=cfg.env_id, env_version=env_version, split=split,
                                                seeds=seeds, seed_set_hash=seed_set_hash(cfg.env_id, split, seeds),
                                                group_size=cfg.group_size),
                               reward_versions=reward_versions, identity=identity, identity_hash=identity.hash(),
                               processing=[f"collect agent={cfg.agent} concurrency={cfg.concurrency} "
                                           f"backend={cfg.backend}"])
        store.start(manifest, resume=cfg.resume)
    except BaseException:
        store.discard()
        raise
    finished = False
    try:
        done_ids = store.completed_ids(failed=not cfg.retry_failed)
        todo = [k for k in keys if k.episode_id not in done_ids]
        bar = _Progress(cfg, total=len(keys), already=len(keys) - len(todo))
        # stored off the event loop, several per write (group commit), reported only once on disk; the
        # last episode is committed at once (the writer knows how many come). Unless a hook wants the
        # episodes, the writer keeps only their outcomes until their commit, not the episodes.
        if hooks is not None and hooks.on_stored is not None:
            def on_stored(ep: Episode, _bar: Callable[[Outcome], None] = bar.advance,
                          _hook: Callable[[Episode], None] = hooks.on_stored) -> None:
                _bar(Outcome.of(ep))
                _hook(ep)
            writer = EpisodeWriter(store, on_stored, expect=len(todo))
        else:
            writer = EpisodeWriter(store, bar.advance, expect=len(todo), report=Outcome.of)
        t0 = time.perf_counter()
        try:
            with bar, fewer_gc_pauses(min(cfg.concurrency, len(todo))):
                if cfg.backend == "ray":
                    from rowgym.rollouts.ray_backend import run_keys_on_ray

                    t0 = await run_keys_on_ray(cfg, todo, writer.put)
                else:
                    # the last worker stores everything before it tears down (see run_keys)
                    await run_keys(cfg, todo, writer.put, hooks=hooks, drain=writer.close, on_line=writer.put)
                await writer.close()
        finally:
            if not writer.task.done():
                await writer.close()
        finished = True
    finally:
        wanted = {k.episode_id for k in keys}
        if finished:
            store.close(complete=wanted <= store.completed_ids())
        else:  # a new run that stored nothing leaves nothing behind; otherwise it can be resumed
            store.discard()
    # The summary covers the whole run, including episodes stored by an earlier, interrupted invocation:
    # read back from the store then; when this invocation played every episode, each one's latest
    # record is the one it stored, already tallied as it was reported stored.
    if len(todo) == len(keys) and bar.n == len(keys):
        s = bar.tally.summary(Path(cfg.out), run_id, 0, time.perf_counter() - t_wall)
    else:
        stored = (e for e in TrajectoryStore(cfg.out, readonly=True).episodes() if e.episode_id in wanted)
        s = Summary.of(Path(cfg.out), run_id, stored, len(keys) - len(todo), time.perf_counter() - t_wall)
    s.rollout_s = (writer.last_stored - t0) if todo else 0.0
    s.n_played, s.completion_tokens = bar.n, bar.tokens
    return s


@contextmanager
def fewer_gc_pauses(in_flight: int = 0) -> Iterator[None]:
    """While episodes run, keep the cyclic GC off the objects built before (modules, tokenizer,
    envs) and let it run less often; restored afterwards. ``in_flight``: episodes played at once.

    Hundreds of episodes in flight allocate rows and id lists fast, and every full collection
    re-scans everything alive. Measured with benchmarks/bench_rollouts.py's workload at 0.2 s
    per call: GC time 0.25 s -> 0.11 s of a 2.2 s collection. Even a young-generation pass
    walks every token id list recorded since the last one (a row holds its turn's whole
    prompt), so it runs every 50,000 net allocations, not 10,000: 6 passes -> 1 per
    collection of that workload, GC time ~170 ms -> ~70 ms (a loaded 2-core machine).

    The young generation counts net allocations (a freed object takes its count back), so
    what makes it grow is what the episodes in flight hold until they are stored: their rows,
    conversations, tasks and connections (measured: ~270 objects per episode in flight, 8
    turns each). A pass over them frees nothing (measured: 0 objects collected) yet walks
    every id list, ~40 ms with the event loop stopped at 256 in flight. So the threshold
    also grows by 500 per episode in flight: the rows of in-flight episodes alone do not
    trigger passes, cyclic garbage still does, and it stays bounded by the threshold.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(old[0], 50_000 + 500 * max(0, in_flight)), old[1], old[2])
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
        self.tally = Tally()
        self.t0 = time.perf_counter()
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[stats]}"), TimeRemainingColumn())
            self.task = self.p.add_task(f"{cfg.env_id} · {cfg.agent}", total=total, completed=already, stats="")

    def advance(self, o: Outcome) -> None:
        self.tally.add(o)
        self.n += 1
        self.ok += o.success
        self.tokens += o.completion_tokens
        if o.failure_kind is not None:
            self.failed[o.failure_kind] = self.failed.get(o.failure_kind, 0) + 1
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
