"""Run a benchmark: agents × environments on held-out seeds, then metrics, reports, leaderboard.

>>> import tempfile
>>> from rowgym.evals.runner import run_bench
>>> res = run_bench(["rowgym/ToolAPI-Retail-v0"], ["expert", "random"], episodes=3, attempts=2,
...                 out_dir=tempfile.mkdtemp(), progress=False)
>>> [(g.agent, g.success_rate) for g in res.groups]
[('expert', 1.0), ('random', 0.0)]

Layout of ``out_dir``::

    bench.json                       bench id, config, split, when
    runs/<env>__<agent>/             one resumable run directory per (env, agent) (TrajectoryStore)
    contamination.json               when training data was given
    metrics.json                     every metric per (env, agent), with the episode ids behind each
    report.md, report.html           the reports (the HTML is self-contained)

and one line per (run, env, agent) is upserted into ``leaderboard.jsonl`` (by default
beside ``out_dir``, so that every bench under ``results/`` accumulates into
``results/leaderboard.jsonl``).

Only the held-out split is evaluated unless ``allow_split=True``; the reports then
say which split was used, prominently. Each of the ``episodes`` tasks is attempted
``attempts`` times (one group of the rollout engine per task), which is what pass@k
and pass^k need. Re-running with the same ``out_dir`` resumes: episodes already
stored are not played again.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import rowgym
from rowgym.errors import RowgymError, SplitError
from rowgym.evals.contamination import ContaminationReport, check_contamination, refuse
from rowgym.evals.metrics import GroupMetrics, group_metrics
from rowgym.rollouts.engine import CollectConfig, acollect
from rowgym.rows import RunManifest, Split
from rowgym.splits import as_split
from rowgym.store import TrajectoryStore, atomic_write


@dataclass
class BenchConfig:
    """Everything that defines a bench (the ``rowgym bench`` options map onto these fields)."""

    env_ids: list[str]
    agents: list[str]
    """Agent specs: ``expert``, ``random``, ``module:Class``, optionally with ``,key=value`` kwargs
    (``expert,noise=0.3``); the spec is the agent's label in reports."""
    agent_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra keyword arguments per agent spec (e.g. an LLM agent's server URL), merged over the spec's own."""
    episodes: int = 20
    """Distinct tasks (seeds) per environment."""
    out_dir: str | Path = "results/bench"
    split: str = "heldout"
    allow_split: bool = False
    """Required to evaluate on a split other than heldout."""
    attempts: int = 1
    """Attempts per task (k of pass@k and pass^k)."""
    concurrency: int = 4
    training_data: list[str | Path] = field(default_factory=list)
    contamination: Literal["refuse", "flag"] = "refuse"
    leaderboard: str | Path | None = None
    """Default: ``<out_dir>/../leaderboard.jsonl``."""
    turn_timeout_s: float | None = None
    episode_timeout_s: float | None = None
    progress: bool = True
    bootstrap_seed: int = 0


@dataclass
class GroupRun:
    """One (env, agent) run of the bench."""

    env_id: str
    agent: str
    run_dir: Path
    manifest: RunManifest
    metrics: GroupMetrics


@dataclass
class BenchResult:
    config: BenchConfig
    bench_id: str
    out_dir: Path
    split: Split
    created_at: str
    runs: list[GroupRun] = field(default_factory=list)
    contamination: ContaminationReport | None = None
    reports: dict[str, Path] = field(default_factory=dict)

    @property
    def groups(self) -> list[GroupMetrics]:
        return [r.metrics for r in self.runs]

    @property
    def contaminated(self) -> bool:
        return self.contamination is not None and not self.contamination.clean


def parse_agent(spec: str) -> tuple[str, dict[str, Any]]:
    """``"expert,noise=0.3"`` -> ``("expert", {"noise": 0.3})``.

    >>> parse_agent("expert,noise=0.3,seed=2")
    ('expert', {'noise': 0.3, 'seed': 2})
    """
    name, *pairs = spec.split(",")
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise RowgymError(f"bad agent spec {spec!r}: write NAME or NAME,key=value[,key=value]")
        try:
            kwargs[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            kwargs[key.strip()] = raw
    return name.strip(), kwargs


def slug(*parts: str) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9._=-]+", "_", p).strip("_") for p in parts)


def planned_seeds(cfg: BenchConfig) -> dict[str, list[int]]:
    """env id -> the seeds the bench evaluates (the first ``episodes`` seeds of the split)."""
    out = {}
    for env_id in cfg.env_ids:
        env = rowgym.make(env_id)
        try:
            out[env_id] = env.unwrapped.splits.seeds(as_split(cfg.split), cfg.episodes)
        finally:
            env.close()
    return out


def _bench_id(out: Path, cfg: BenchConfig) -> tuple[str, str]:
    path = out / "bench.json"
    if path.exists():
        old = json.loads(path.read_text())
        return old["bench_id"], old["created_at"]
    bench_id, created = uuid.uuid4().hex[:12], datetime.now(UTC).isoformat(timespec="seconds")
    atomic_write(path, json.dumps({"bench_id": bench_id, "created_at": created, "rowgym_version": rowgym.__version__,
                                   "config": vars(cfg)}, indent=2, default=str))
    return bench_id, created


async def _probe_agents(cfg: BenchConfig, specs: list[tuple[str, dict[str, Any]]]) -> None:
    """Build every agent once per env, so a typo fails before anything is played."""
    from rowgym.agents import make_agent

    for env_id in cfg.env_ids:
        env = rowgym.make(env_id)
        try:
            for label, (name, kwargs) in zip(cfg.agents, specs, strict=True):
                agent = make_agent(name, env.unwrapped, **{**kwargs, **cfg.agent_kwargs.get(label, {})})
                await agent.aclose()
        except TypeError as e:
            raise RowgymError(f"bad agent arguments for {env_id}: {e}") from e
        finally:
            await env.aclose()


async def arun_bench(cfg: BenchConfig) -> BenchResult:
    """Check contamination, play every (env, agent) pair, compute metrics, write reports."""
    from rowgym.evals.report import upsert_leaderboard, write_reports

    split = as_split(cfg.split)
    if split != Split.HELDOUT and not cfg.allow_split:
        raise SplitError(f"bench evaluates the heldout split only; pass allow_split=True (--allow-split) to "
                         f"evaluate on {split.value} (the report will say so)")
    if cfg.contamination not in ("refuse", "flag"):
        raise RowgymError(f"contamination must be 'refuse' or 'flag', not {cfg.contamination!r}")
    if cfg.attempts < 1 or cfg.episodes < 1:
        raise RowgymError("episodes and attempts must be at least 1")
    specs = [parse_agent(a) for a in cfg.agents]  # fail on a bad spec before playing anything
    seeds = planned_seeds(cfg)
    await _probe_agents(cfg, specs)
    contamination = None
    if cfg.training_data:
        contamination = check_contamination(list(cfg.training_data), seeds)
        if cfg.contamination == "refuse":
            refuse(contamination)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bench_id, created = _bench_id(out, cfg)
    res = BenchResult(cfg, bench_id, out, split, created, contamination=contamination)
    if contamination is not None:
        atomic_write(out / "contamination.json", json.dumps(contamination.to_dict(), indent=2))
    for env_id in cfg.env_ids:
        for label, (name, kwargs) in zip(cfg.agents, specs, strict=True):
            run_dir = out / "runs" / slug(env_id, label)
            kwargs = {**kwargs, **cfg.agent_kwargs.get(label, {})}
            await acollect(CollectConfig(env_id=env_id, agent=name, agent_kwargs=kwargs, split=split.value,
                                         episodes=cfg.episodes, out=run_dir, group_size=cfg.attempts,
                                         concurrency=cfg.concurrency, turn_timeout_s=cfg.turn_timeout_s,
                                         episode_timeout_s=cfg.episode_timeout_s, progress=cfg.progress))
            store = TrajectoryStore(run_dir, readonly=True)
            assert store.manifest is not None
            episodes = list(store.episodes())
            res.runs.append(GroupRun(env_id, label, run_dir, store.manifest,
                                     group_metrics(env_id, label, episodes, seed=cfg.bootstrap_seed)))
    atomic_write(out / "metrics.json", json.dumps({"bench_id": bench_id, "split": split.value,
                                                   "groups": [g.to_dict() for g in res.groups]}, indent=1))
    res.reports = write_reports(res)
    res.reports["leaderboard"] = upsert_leaderboard(res, Path(cfg.leaderboard or out.resolve().parent / "leaderboard.jsonl"))
    return res


def run_bench(env_ids: list[str], agents: list[str], **kwargs: Any) -> BenchResult:
    """Synchronous entry point; ``kwargs`` are :class:`BenchConfig` fields."""
    return asyncio.run(arun_bench(BenchConfig(env_ids=list(env_ids), agents=list(agents), **kwargs)))
