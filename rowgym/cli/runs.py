"""Runs (trajectory stores): `rowgym collect`, `show`, `export` and `verify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from rowgym.cli.common import (
    BaseUrlOpt,
    MaxTokensOpt,
    ModelDirOpt,
    ModelOpt,
    PolicyUrlOpt,
    TemperatureOpt,
    _check_env_id,
    _fail,
    _os_error,
    _policy_urls,
    _positive,
    _warn_problems,
    console,
    llm_agent_kwargs,
)
from rowgym.splits import MAX_SEED_INDEX

# Added to `rowgym` without a name, so these are top-level commands (`rowgym collect/show/export/verify`).
commands = typer.Typer()


@commands.command()
def collect(env_id: Annotated[str, typer.Argument(help="Environment id, e.g. rowgym/ToolAPI-Retail-v0")],
            agent: Annotated[str, typer.Option(help="expert, random, vllm, hf, or module:Class")] = "expert",
            split: Annotated[str, typer.Option(help="train, dev or heldout")] = "train",
            episodes: Annotated[int, typer.Option(help=f"Number of seeds to play (at most {MAX_SEED_INDEX:,} with "
                                                   "--seed-offset)", min=1)] = 10,
            out: Annotated[Path, typer.Option(help="Run directory (resumed if it exists)")] = Path("runs/run"),
            group_size: Annotated[int, typer.Option(help="Rollouts per seed (GRPO groups)", min=1)] = 1,
            concurrency: Annotated[int, typer.Option(help="Episodes in flight", min=1)] = 4,
            noise: Annotated[float, typer.Option(help="Expert only: chance of a bad call + repair per step",
                                                 min=0.0, max=1.0)] = 0.0,
            base_url: BaseUrlOpt = "http://127.0.0.1:8000",
            policy_url: PolicyUrlOpt = None,
            model_dir: ModelDirOpt = None,
            model: ModelOpt = None,
            temperature: TemperatureOpt = 1.0,
            max_tokens: MaxTokensOpt = 256,
            seed_offset: Annotated[int, typer.Option(help="Skip this many seeds of the split (with --episodes, at "
                                                      f"most {MAX_SEED_INDEX:,})", min=0)] = 0,
            turn_timeout: Annotated[float | None, typer.Option(help="Seconds per policy turn", callback=_positive)] = None,
            episode_timeout: Annotated[float | None, typer.Option(help="Seconds per episode", callback=_positive)] = None,
            no_resume: Annotated[bool, typer.Option("--no-resume", help="Refuse an existing run dir")] = False,
            retry_failed: Annotated[bool, typer.Option("--retry-failed", help="On resume, play failed episodes again")] = False,
            step_timeout: Annotated[float | None, typer.Option(help="Seconds per env step (tool, sandbox, grading)",
                                                               callback=_positive)] = None,
            retry_budget: Annotated[float | None, typer.Option(help="vllm agent: seconds to keep retrying a down server",
                                                               callback=_positive)] = None,
            backend: Annotated[str, typer.Option(help="asyncio (one process) or ray (rollout workers as Ray actors)")] = "asyncio",
            ray_address: Annotated[str | None, typer.Option(help="ray backend: cluster address (default: start a local Ray)")] = None,
            ray_actors: Annotated[int | None, typer.Option(help="ray backend: number of actors (default: one per CPU)",
                                                           min=1)] = None,
            ray_resource: Annotated[list[str] | None, typer.Option(
                help="ray backend: a custom resource each actor needs, NAME=AMOUNT (repeat), e.g. browser=1")] = None,
            progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True) -> None:
    """Play episodes with an agent and stream every step into a trajectory store.

    One collect per --out at a time (a lock); resuming needs the run's identity (env, split,
    seeds, agent and every option); more --episodes extend a run. Nothing is written before
    the settings, the env and the agent have been checked.
    """
    from rowgym.errors import RowgymError
    from rowgym.rollouts.engine import CollectConfig
    from rowgym.rollouts.engine import collect as run_collect

    _check_env_id(env_id)
    if seed_offset + episodes > MAX_SEED_INDEX:
        _fail(f"--seed-offset {seed_offset} + --episodes {episodes} is past the last seed a split lists "
              f"({MAX_SEED_INDEX:,}); a run plays at most that many seeds of its split")
    if backend not in ("asyncio", "ray"):
        _fail(f"unknown backend {backend!r}; use asyncio or ray")
    if noise and agent != "expert" and ":" not in agent:
        _fail(f"--noise is an option of the expert agent, not of {agent!r}")
    resources: dict[str, float] = {}
    for item in ray_resource or []:
        name, _, amount = item.partition("=")
        try:
            resources[name.strip()] = float(amount) if amount else 1.0
        except ValueError:
            _fail(f"--ray-resource {item!r}: expected NAME=AMOUNT, e.g. browser=1")
        if not name.strip() or resources[name.strip()] <= 0:
            _fail(f"--ray-resource {item!r}: expected NAME=AMOUNT with AMOUNT > 0")
    agent_kwargs = llm_agent_kwargs(agent, _policy_urls(base_url, policy_url), model_dir, model, temperature,
                                    max_tokens)
    if noise:
        agent_kwargs["noise"] = noise
    if retry_budget is not None and agent == "vllm":
        agent_kwargs["retry_budget_s"] = retry_budget
    cfg = CollectConfig(env_id=env_id, agent=agent, split=split, episodes=episodes, out=out, group_size=group_size,
                        concurrency=concurrency, seed_offset=seed_offset, agent_kwargs=agent_kwargs,
                        turn_timeout_s=turn_timeout, episode_timeout_s=episode_timeout, resume=not no_resume,
                        retry_failed=retry_failed, progress=progress, step_timeout_s=step_timeout, backend=backend,
                        ray_address=ray_address, ray_actors=ray_actors, ray_resources=resources or None)
    try:
        s = run_collect(cfg)
    except RowgymError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"collect failed: {_os_error(e)}")
    _print_summary(s, env_id, agent, split)


def _print_summary(s, env_id: str, agent: str, split: str) -> None:
    t = Table(title=f"{env_id} · {agent} · {split}", show_header=False)
    t.add_row("episodes", f"{s.n_done} ({s.n_skipped} already in the store)")
    t.add_row("success rate", f"{s.success_rate:.3f}")
    t.add_row("mean final reward", f"{s.mean_reward:.3f}")
    t.add_row("bad-call rate (per step)", f"{s.bad_call_rate:.3f}")
    t.add_row("failed episodes", f"{s.n_failed} {s.failures or ''}")
    t.add_row("wall time", f"{s.wall_s:.1f} s")
    if getattr(s, "completion_tokens", 0):
        t.add_row("completion tokens (this run)", f"{s.completion_tokens} ({s.completion_tokens / max(s.rollout_s, 1e-9):.0f}/s)")
    t.add_row("run", f"{s.out} ({s.run_id})")
    servers = _policy_server_rows(agent)
    for url, st in servers.items():
        t.add_row(f"policy server {url}", f"{st['requests']} requests, {st['failures']} failed, latency mean "
                  f"{st['mean_latency_s'] * 1000:.0f} ms, p95 {st['p95_latency_s'] * 1000:.0f} ms")
    console.print(t)
    # one machine-readable line for scripts and tests
    line = {'episodes': s.n_done, 'success_rate': round(s.success_rate, 4), 'mean_reward': round(s.mean_reward, 4),
            'failed': s.n_failed, **({'policy_servers': servers} if servers else {})}
    console.print(f"SUMMARY {json.dumps(line)}", highlight=False, soft_wrap=True)


def _policy_server_rows(agent: str) -> dict:
    """Per policy server: requests, failures, latency (this process and its Ray actors); {} for other agents."""
    if agent != "vllm":
        return {}
    from rowgym.agents.llm import server_stats

    return server_stats()


@commands.command()
def show(run: Annotated[Path, typer.Argument(help="Run directory")],
         episode: Annotated[str, typer.Option(help="Episode index in the run, or an episode id")] = "0",
         width: Annotated[int, typer.Option(help="Characters of each observation to show")] = 600) -> None:
    """Pretty-print one episode of a run: each step's observation, action and reward."""
    from rowgym.errors import RowgymError
    from rowgym.store import TrajectoryStore

    try:
        store = TrajectoryStore(run, readonly=True)
        eps = list(store.episodes())
    except RowgymError as e:
        _fail(str(e))
    except OSError as e:
        _fail(_os_error(e))
    _warn_problems(store)
    if not eps:
        _fail(f"{run} has no episodes")
    ep = next((e for e in eps if e.episode_id == episode), None)
    if ep is None:
        if not episode.isdigit() or int(episode) >= len(eps):
            _fail(f"no episode {episode!r}; the run has {len(eps)} (indices 0..{len(eps) - 1})")
        ep = eps[int(episode)]
    v = ep.verdict
    head = (f"[bold]{ep.env_id}[/] seed {ep.seed} ({ep.split}) · agent {ep.policy.agent} · "
            f"final reward {ep.final_reward:.2f} · {'[green]success' if ep.success else '[red]no success'}")
    console.print(Panel(ep.instruction or "(no instruction)", title=head))
    for s in ep.steps:
        act = s.action.tool_call.model_dump_json() if s.action.tool_call else repr(s.action.text[:200])
        flags = " ".join(f for f, on in (("BAD_CALL", s.bad_call), ("repaired", s.repaired),
                                          ("terminated", s.terminated), ("truncated", s.truncated)) if on)
        console.print(f"[bold cyan]turn {s.turn}[/] action {act}")
        console.print(f"   reward {s.reward:+.3f} {s.reward_breakdown} {('[yellow]' + flags) if flags else ''}")
        console.print(f"   [dim]{s.next_observation[:width]}[/]")
    if v:
        for c in v.checks:
            console.print(f"check {c.name}: {'[green]pass' if c.passed else '[red]fail'}[/] {c.detail}")
    if ep.failure:
        console.print(f"[red]failure ({ep.failure.kind}): {ep.failure.reason}")


@commands.command()
def export(run: Annotated[Path, typer.Argument(help="Run directory")],
           format: Annotated[str, typer.Option(help="parquet or jsonl")] = "parquet",
           level: Annotated[str, typer.Option(help="steps (one row per step) or episodes")] = "steps",
           out: Annotated[Path | None, typer.Option(help="Output file")] = None) -> None:
    """Export a run's rows to Parquet (for datasets/TRL) or flat JSONL."""
    from rowgym.errors import RowgymError
    from rowgym.store import TrajectoryStore, flatten

    if format not in ("parquet", "jsonl"):
        _fail(f"unknown format {format!r}; use parquet or jsonl")
    if level not in ("steps", "episodes"):
        _fail(f"unknown level {level!r}; use steps or episodes")
    target = out or run / f"{level}.{format}"
    if target.is_dir():
        _fail(f"--out {target} is a directory; give a file name")
    try:
        store = TrajectoryStore(run, readonly=True)
        if format == "parquet":
            store.export_parquet(target, level)
        else:
            records = [json.dumps(r) + "\n" for ep in store.episodes() for r in flatten(ep, level)]
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "w") as f:
                f.writelines(records)
    except RowgymError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write {target}: {_os_error(e)}")
    _warn_problems(store)
    console.print(f"wrote {target}")


@commands.command()
def verify(run: Annotated[Path, typer.Argument(help="Run directory")]) -> None:
    """Check a run against its manifest: every shard's sha256 and line count, every line parses.

    Reports changed bytes, deleted or added lines, malformed lines (shard and line number),
    missing and unlisted shards, and episodes of another run. Exit code 1 if anything is wrong.
    """
    from rowgym.errors import RowgymError
    from rowgym.store import TrajectoryStore

    try:
        store = TrajectoryStore(run, readonly=True)
        problems = store.verify()
    except RowgymError as e:
        _fail(str(e))
    except OSError as e:
        _fail(_os_error(e))
    m = store.manifest
    for p in problems:
        console.print(f"FAIL {p.kind}: {p}", markup=False, highlight=False, soft_wrap=True)
    what = f"run {m.run_id}: {m.n_episodes} episodes in {len(m.shards)} sealed shards" if m else f"{run}"
    if problems:
        console.print(f"[bold red]{what}: {len(problems)} problem(s)[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]ok[/] {what} match the manifest", highlight=False, soft_wrap=True)
