"""The ``rowgym`` command line (typer + rich).

    rowgym envs list
    rowgym check rowgym/ToolAPI-Retail-v0
    rowgym collect rowgym/ToolAPI-Retail-v0 --agent expert --split train --episodes 200 --out runs/retail
    rowgym show runs/retail --episode 0
    rowgym verify runs/retail
    rowgym export runs/retail --format parquet --out runs/retail/steps.parquet

Heavy modules are imported inside the commands, so ``rowgym --help`` stays fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

app = typer.Typer(help="rowgym: a gym for LLM agents in which every step is a training row.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
envs_app = typer.Typer(help="Registered environments.", no_args_is_help=True)
app.add_typer(envs_app, name="envs")
dataset_app = typer.Typer(help="Build training datasets from runs (held-out rows are refused).", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
serve_app = typer.Typer(help="The vLLM policy server (OpenAI-compatible, tool calling on).", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
model_app = typer.Typer(help="Local models for tests, CI and demos.", no_args_is_help=True)
app.add_typer(model_app, name="model")
console = Console()


def _positive(value: float | None) -> float | None:
    """typer callback: a number of seconds (or a rate) that must be finite and > 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a number > 0, got {value}")
    return value


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


# Options of the LLM agents, shared by `collect` and `bench` (turned into kwargs by llm_agent_kwargs).
BaseUrlOpt = Annotated[str, typer.Option(help="vllm agent: OpenAI-compatible server")]
PolicyUrlOpt = Annotated[list[str] | None, typer.Option(
    "--policy-url", help="vllm agent: a policy server; repeat for several (least-loaded routing, failover), "
    "or @FILE with one URL per line. Replaces --base-url")]
ModelDirOpt = Annotated[Path | None, typer.Option(help="vllm/hf agents: model (tokenizer) directory")]
ModelOpt = Annotated[str | None, typer.Option(help="vllm agent: served model name")]
TemperatureOpt = Annotated[float, typer.Option(help="vllm/hf agents: sampling temperature", min=0.0,
                                               callback=_finite)]
MaxTokensOpt = Annotated[int, typer.Option(help="vllm/hf agents: tokens per turn", min=1)]
AllowUnverifiedOpt = Annotated[bool, typer.Option("--allow-unverified", help="Use runs that fail `rowgym verify` "
                                                  "anyway (the dataset's provenance then says unverified)")]


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _os_error(e: OSError) -> str:
    what = str(e.strerror or e) or f"{type(e).__name__} (no message)"
    return f"{what}: {e.filename}" if e.filename else what


def _warn_problems(store) -> None:
    """Tell a reader that the run fails verification (what it shows is still shown)."""
    problems = store.problems
    if problems:
        head = "; ".join(str(p) for p in problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        console.print(f"[bold yellow]warning:[/] {store.root} fails verification: {head} "
                      f"(see `rowgym verify {store.root}`)", highlight=False, soft_wrap=True)


@envs_app.command("list")
def envs_list() -> None:
    """List every registered environment, plugins included, and plugins that failed to load."""
    from rowgym.registry import all_specs, plugin_failures

    t = Table(title="rowgym environments")
    t.add_column("id", no_wrap=True)
    for col in ("source", "expert", "description"):
        t.add_column(col)
    for s in all_specs():
        t.add_row(s.id, s.source, "yes" if s.expert else "-", s.description)
    console.print(t)
    failures = plugin_failures()
    for f in failures:
        console.print(f"[bold red]plugin {f.name!r} ({f.value}) failed to load:[/] {f.error}")
    if failures:
        raise typer.Exit(1)


@app.command()
def check(env_id: Annotated[str | None, typer.Argument(help="Environment id; omit with --all.")] = None,
          all_envs: Annotated[bool, typer.Option("--all", help="Check every registered environment.")] = False,
          seeds: Annotated[int, typer.Option(help="Seeds to check the expert and determinism on.", min=1)] = 5,
          random_episodes: Annotated[int, typer.Option(help="Episodes of the random agent.", min=0)] = 20) -> None:
    """Check that an environment can be trusted (API, determinism, expert, random, splits, bad calls)."""
    from rowgym.errors import RowgymError
    from rowgym.evals.checker import check_env
    from rowgym.registry import all_specs

    if not env_id and not all_envs:
        _fail("give an environment id, or --all")
    ids = [s.id for s in all_specs()] if all_envs else [env_id]
    t = Table(title="rowgym check")
    for col in ("env", "check", "result", "detail"):
        t.add_column(col, overflow="fold")
    ok, partial = True, []
    for eid in ids:
        try:
            report = check_env(eid, n_seeds=seeds, random_episodes=random_episodes)
        except RowgymError as e:
            _fail(str(e))
        style = {"passed": "[green]pass", "failed": "[red]FAIL", "skipped": "[yellow]skipped"}
        for r in report.results:
            t.add_row(eid, r.name, style[r.status], r.detail[:300])
        ok &= report.ok
        if report.ok and not report.fully_checked:
            partial.append(eid)
    console.print(t)
    if partial:
        console.print(f"[yellow]not fully checked (a check was skipped): {', '.join(partial)}")
    raise typer.Exit(0 if ok else 1)


@app.command()
def collect(env_id: Annotated[str, typer.Argument(help="Environment id, e.g. rowgym/ToolAPI-Retail-v0")],
            agent: Annotated[str, typer.Option(help="expert, random, vllm, hf, or module:Class")] = "expert",
            split: Annotated[str, typer.Option(help="train, dev or heldout")] = "train",
            episodes: Annotated[int, typer.Option(help="Number of seeds to play", min=1)] = 10,
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
            seed_offset: Annotated[int, typer.Option(help="Skip this many seeds of the split", min=0)] = 0,
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


def _policy_urls(base_url: str, policy_url: list[str] | None) -> str | list[str]:
    """--policy-url values (``@FILE``: one URL per line, # comments) or else --base-url."""
    if not policy_url:
        return base_url
    urls: list[str] = []
    for item in policy_url:
        if item.startswith("@"):
            try:
                lines = Path(item[1:]).read_text().splitlines()
            except OSError as e:
                _fail(f"--policy-url {item}: {_os_error(e)}")
            urls += [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]
        else:
            urls.append(item)
    if not urls:
        _fail("--policy-url: no URL given")
    return urls


def llm_agent_kwargs(agent: str, base_url: str | list[str], model_dir: Path | None, model: str | None, temperature: float,
                     max_tokens: int) -> dict:
    """Keyword arguments for the LLM agents from CLI options (none for scripted agents)."""
    kw: dict = {}
    if agent in ("vllm", "hf"):
        kw = {"temperature": temperature, "max_tokens": max_tokens}
        if model_dir:
            kw["model_dir"] = model_dir
    if agent == "vllm":
        kw["base_url"] = base_url
        if model:
            kw["model"] = model
    return kw


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


@app.command()
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


@app.command()
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


@app.command()
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


GateOpts = dict(
    near_dup=typer.Option("--near-dup", help="distribution gate: Jaccard of near-duplicate rows"),
    max_kind_share=typer.Option("--max-kind-share", help="distribution gate: most of the dataset one task kind may hold"),
    max_per_kind=typer.Option("--max-per-kind", help="distribution gate: absolute cap per task kind"),
    eval_file=typer.Option("--eval-file", help="leakage gate: an eval file whose records join the quarantine "
                           "(repeatable)"),
    quarantine_seeds=typer.Option("--quarantine-seeds", help="leakage gate: dev and held-out seeds per env", min=1),
)


def _gate_config(near_dup: float, max_kind_share: float, max_per_kind: int | None, eval_file: list[Path] | None,
                 quarantine_seeds: int):
    from rowgym.trainers.gates import GateConfig

    for f in eval_file or []:
        if not f.is_file():
            _fail(f"--eval-file {f} is not a file")
    return GateConfig(near_dup_threshold=near_dup, max_kind_share=max_kind_share, max_per_kind=max_per_kind,
                      eval_files=[str(f) for f in eval_file or []], quarantine_seeds=quarantine_seeds)


def _dataset_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a directory")


def _build_dataset(build):  # noqa: ANN001, ANN202
    """Run a dataset builder (returns ``(path, report, ...)``) with one-line errors; print its gates."""
    from rowgym.errors import RowgymError

    try:
        result = build()
    except RowgymError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write the dataset: {_os_error(e)}")
    _print_gates(result[1], result[0])
    return result


def _print_gates(report, path: Path) -> None:
    for line in report.summary_lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"  note: {note}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"effective sample rate {report.effective_sample_rate:.3f} ({report.n_kept}/{report.n_generated}); "
                  f"manifests: source.json processing.json consumption.json isolation.json in {path}",
                  markup=False, highlight=False, soft_wrap=True)


@dataset_app.command("sft")
def dataset_sft(runs: Annotated[list[Path], typer.Argument(help="Run directories")],
                out: Annotated[Path, typer.Option(help="Output dataset directory")],
                min_reward: Annotated[float, typer.Option(help="Keep episodes with final reward >= this")] = 1.0,
                dev: Annotated[bool, typer.Option("--dev", help="Also use dev-split episodes")] = False,
                drop_bad_calls: Annotated[bool, typer.Option("--drop-bad-calls", help="Drop bad calls and repairs")] = False,
                allow_unverified: AllowUnverifiedOpt = False,
                near_dup: Annotated[float, GateOpts["near_dup"]] = 0.9,
                max_kind_share: Annotated[float, GateOpts["max_kind_share"]] = 0.5,
                max_per_kind: Annotated[int | None, GateOpts["max_per_kind"]] = None,
                eval_file: Annotated[list[Path] | None, GateOpts["eval_file"]] = None,
                quarantine_seeds: Annotated[int, GateOpts["quarantine_seeds"]] = 200) -> None:
    """Tool-use SFT conversations (messages + tools) from successful train-split episodes, through the
    format, semantic, leakage and distribution gates; writes the data and its four manifests."""
    from rowgym.trainers.gates import build_sft_dataset

    _dataset_out(out)
    splits = ("train", "dev") if dev else ("train",)
    cfg = _gate_config(near_dup, max_kind_share, max_per_kind, eval_file, quarantine_seeds)
    path, report, rows = _build_dataset(lambda: build_sft_dataset(
        [str(r) for r in runs], out, min_reward=min_reward, splits=splits, keep_bad_calls=not drop_bad_calls,
        allow_unverified=allow_unverified, cfg=cfg))
    console.print(f"wrote {len(rows)} conversations from {len({r['task_hash'] for r in rows})} tasks to {path}")


@dataset_app.command("grpo")
def dataset_grpo(env_id: Annotated[str, typer.Argument(help="Environment id")],
                 out: Annotated[Path, typer.Option(help="Output dataset directory")],
                 n: Annotated[int, typer.Option(help="Number of seeds", min=1)] = 64,
                 split: Annotated[str, typer.Option(help="train or dev")] = "train",
                 start: Annotated[int, typer.Option(help="Skip this many seeds of the split", min=0)] = 0,
                 near_dup: Annotated[float, GateOpts["near_dup"]] = 0.9,
                 max_kind_share: Annotated[float, GateOpts["max_kind_share"]] = 0.5,
                 max_per_kind: Annotated[int | None, GateOpts["max_per_kind"]] = None,
                 eval_file: Annotated[list[Path] | None, GateOpts["eval_file"]] = None,
                 quarantine_seeds: Annotated[int, GateOpts["quarantine_seeds"]] = 200) -> None:
    """GRPO prompts (seed, env id, split, first-turn messages) for the rollout function, through the gates."""
    from rowgym.trainers.gates import build_grpo_dataset

    _dataset_out(out)
    cfg = _gate_config(near_dup, max_kind_share, max_per_kind, eval_file, quarantine_seeds)
    path, report, rows = _build_dataset(lambda: build_grpo_dataset(env_id, out, split=split, n=n, start=start, cfg=cfg))
    console.print(f"wrote {len(rows)} prompts to {path}")


@dataset_app.command("rsft")
def dataset_rsft(runs: Annotated[list[Path], typer.Argument(help="Grouped run directories (collect --group-size k)")],
                 out: Annotated[Path, typer.Option(help="Output dataset directory")],
                 min_reward: Annotated[float, typer.Option(help="An accepted sample also needs this final reward")] = 0.0,
                 hard_negatives: Annotated[int, typer.Option(help="Rejected samples kept per row", min=0)] = 2,
                 max_per_task: Annotated[int | None, typer.Option(help="Accepted samples kept per group", min=1)] = None,
                 dev: Annotated[bool, typer.Option("--dev", help="Also use dev-split episodes")] = False,
                 drop_bad_calls: Annotated[bool, typer.Option("--drop-bad-calls", help="Drop bad calls and repairs")] = False,
                 allow_unverified: AllowUnverifiedOpt = False,
                 near_dup: Annotated[float, GateOpts["near_dup"]] = 0.9,
                 max_kind_share: Annotated[float, GateOpts["max_kind_share"]] = 0.5,
                 max_per_kind: Annotated[int | None, GateOpts["max_per_kind"]] = None,
                 eval_file: Annotated[list[Path] | None, GateOpts["eval_file"]] = None,
                 quarantine_seeds: Annotated[int, GateOpts["quarantine_seeds"]] = 200) -> None:
    """Rejection-sampling SFT data: per group (k samples of one seed) the samples the verifier passed, with
    the group's record (candidates, accepted, rejection reasons, hard negatives), through the gates. The
    dataset feeds `rowgym train sft`."""
    from rowgym.trainers.rsft import build_rsft_dataset

    _dataset_out(out)
    splits = ("train", "dev") if dev else ("train",)
    cfg = _gate_config(near_dup, max_kind_share, max_per_kind, eval_file, quarantine_seeds)
    path, report, rows, summary = _build_dataset(lambda: build_rsft_dataset(
        [str(r) for r in runs], out, min_reward=min_reward, splits=splits, keep_bad_calls=not drop_bad_calls,
        n_hard_negatives=hard_negatives, max_per_task=max_per_task, allow_unverified=allow_unverified, cfg=cfg))
    console.print(f"wrote {len(rows)} accepted conversations from {len({r['group_id'] for r in rows})} groups to {path}",
                  highlight=False, soft_wrap=True)


@dataset_app.command("dpo")
def dataset_dpo(runs: Annotated[list[Path], typer.Argument(help="Grouped run directories (collect --group-size k)")],
                out: Annotated[Path, typer.Option(help="Output dataset directory")],
                min_margin: Annotated[float, typer.Option(help="A pair needs chosen - rejected reward > this "
                                                          "(ties are always dropped)", min=0.0)] = 0.0,
                max_pairs_per_group: Annotated[int | None, typer.Option(help="Largest-margin pairs kept per group",
                                                                        min=1)] = None,
                dev: Annotated[bool, typer.Option("--dev", help="Also use dev-split episodes")] = False,
                allow_unverified: AllowUnverifiedOpt = False,
                near_dup: Annotated[float, GateOpts["near_dup"]] = 0.9,
                max_kind_share: Annotated[float, GateOpts["max_kind_share"]] = 0.5,
                max_per_kind: Annotated[int | None, GateOpts["max_per_kind"]] = None,
                eval_file: Annotated[list[Path] | None, GateOpts["eval_file"]] = None,
                quarantine_seeds: Annotated[int, GateOpts["quarantine_seeds"]] = 200) -> None:
    """Preference pairs (prompt, chosen, rejected) from samples of one seed's group with different final
    rewards, through the gates (both sides checked). The dataset feeds `rowgym train dpo`."""
    from rowgym.trainers.dpo import build_dpo_dataset

    _dataset_out(out)
    splits = ("train", "dev") if dev else ("train",)
    cfg = _gate_config(near_dup, max_kind_share, max_per_kind, eval_file, quarantine_seeds)
    path, report, rows, summary = _build_dataset(lambda: build_dpo_dataset(
        [str(r) for r in runs], out, min_margin=min_margin, max_pairs_per_group=max_pairs_per_group,
        splits=splits, allow_unverified=allow_unverified, cfg=cfg))
    console.print(f"wrote {len(rows)} preference pairs from {len({r['group_id'] for r in rows})} groups to {path}",
                  highlight=False, soft_wrap=True)


@dataset_app.command("report")
def dataset_report(dataset: Annotated[Path, typer.Argument(help="Dataset directory (rowgym dataset sft/grpo)")],
                   out: Annotated[Path | None, typer.Option(help="HTML file (default DATASET/report.html)")] = None,
                   png: Annotated[Path | None, typer.Option(help="Also save a screenshot (Chromium) here")] = None) -> None:
    """The gates and the four manifests of a dataset as one HTML page with before/after plots."""
    from rowgym.errors import RowgymError
    from rowgym.evals.dataset_report import write_dataset_report

    try:
        html = write_dataset_report(dataset, out)
    except RowgymError as e:
        _fail(str(e))
    console.print(f"report: {html}", highlight=False, soft_wrap=True)
    if png is not None:
        from rowgym.evals.screenshot import screenshot

        console.print(f"screenshot: {screenshot(html, png, open_first=False)}", highlight=False, soft_wrap=True)


@app.command()
def bench(env: Annotated[list[str], typer.Option("--env", help="Environment id (repeat for several)")],
          agent: Annotated[list[str], typer.Option("--agent", help="expert, random, vllm, hf, module:Class; "
                                                   "add kwargs as NAME,key=value (repeat for several)")],
          episodes: Annotated[int, typer.Option(help="Tasks (seeds) per environment", min=1)] = 20,
          attempts: Annotated[int, typer.Option(help="Attempts per task (k of pass@k, pass^k)", min=1)] = 1,
          split: Annotated[str, typer.Option(help="Split to evaluate; other than heldout needs --allow-split")] = "heldout",
          allow_split: Annotated[bool, typer.Option("--allow-split", help="Allow a split other than heldout")] = False,
          training_data: Annotated[list[Path] | None, typer.Option("--training-data", help="Run dir, dataset dir "
                                   "(provenance.json) or manifest the agent was trained on (repeatable)")] = None,
          contamination: Annotated[str, typer.Option(help="refuse, or flag (run and mark the report)")] = "refuse",
          out: Annotated[Path, typer.Option(help="Bench directory (resumed if it exists)")] = Path("results/bench"),
          leaderboard: Annotated[Path | None, typer.Option(help="Default: <out>/../leaderboard.jsonl")] = None,
          concurrency: Annotated[int, typer.Option(help="Episodes in flight per run", min=1)] = 4,
          base_url: BaseUrlOpt = "http://127.0.0.1:8000",
          policy_url: PolicyUrlOpt = None,
          model_dir: ModelDirOpt = None,
          model: ModelOpt = None,
          temperature: TemperatureOpt = 1.0,
          max_tokens: MaxTokensOpt = 256,
          turn_timeout: Annotated[float | None, typer.Option(help="Seconds per policy turn", callback=_positive)] = None,
          episode_timeout: Annotated[float | None, typer.Option(help="Seconds per episode", callback=_positive)] = None,
          progress: Annotated[bool, typer.Option(help="Show progress bars")] = True) -> None:
    """Benchmark agents on held-out seeds: metrics with CIs, pass@k/pass^k, HTML + markdown report, leaderboard."""
    from rowgym.errors import RowgymError
    from rowgym.evals.report import rich_table
    from rowgym.evals.runner import parse_agent, run_bench

    try:
        urls = _policy_urls(base_url, policy_url)
        llm = {a: llm_agent_kwargs(parse_agent(a)[0], urls, model_dir, model, temperature, max_tokens)
               for a in agent}
        _refuse_consumed(env, agent, llm, episodes, contamination)
        res = run_bench(env, agent, agent_kwargs=llm, episodes=episodes, attempts=attempts, split=split,
                        allow_split=allow_split, training_data=list(training_data or []), contamination=contamination,
                        out_dir=out, leaderboard=leaderboard, concurrency=concurrency, turn_timeout_s=turn_timeout,
                        episode_timeout_s=episode_timeout, progress=progress)
    except RowgymError as e:
        _fail(str(e))
    console.print(rich_table(res))
    if res.contaminated:
        console.print(f"[bold red]CONTAMINATED:[/] {res.contamination.message()}")
    for name, path in res.reports.items():
        console.print(f"{name}: {path}", highlight=False, soft_wrap=True)


env_app = typer.Typer(help="Serve an environment over HTTP (rowgym.make('http://host:port/ENV_ID') on clients).",
                      no_args_is_help=True)
app.add_typer(env_app, name="env")


@env_app.command("serve")
def env_serve(env_id: Annotated[str, typer.Argument(help="Environment id to serve, e.g. rowgym/ToolAPI-Retail-v0")],
              port: Annotated[int, typer.Option(help="TCP port", min=1, max=65535)] = 8100,
              host: Annotated[str, typer.Option(help="Interface (0.0.0.0 for other machines)")] = "127.0.0.1",
              token: Annotated[str | None, typer.Option(help="Bearer token clients must send (default: "
                                                        "$ROWGYM_ENV_TOKEN, else a new one is printed)")] = None,
              idle_timeout: Annotated[float, typer.Option(help="Seconds before an idle session is closed",
                                                          callback=_positive)] = 600.0,
              max_sessions: Annotated[int, typer.Option(help="Open sessions at most", min=1)] = 4096,
              privileged: Annotated[bool, typer.Option(help="Serve tasks to privileged agents (scripted experts); "
                                                       "each one is counted and logged")] = True) -> None:
    """Serve ENV_ID over HTTP: one isolated session per episode, token auth, idle-session expiry."""
    import logging
    import os

    from rowgym import aio
    from rowgym.errors import RowgymError
    from rowgym.registry import load_object, spec

    remote = "rowgym.envs.remote"
    token_env = load_object(f"{remote}.protocol:TOKEN_ENV")
    token = token or os.environ.get(token_env)
    if not token:
        token = load_object(f"{remote}.server:new_token")()
        console.print(f"token (set {token_env} on clients): {token}", highlight=False, soft_wrap=True)
    try:
        spec(env_id)
    except RowgymError as e:
        _fail(str(e))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    console.print(f"serving {env_id} on http://{host}:{port}/{env_id}", highlight=False, soft_wrap=True)
    try:
        aio.run(load_object(f"{remote}.server:serve_forever")(
            env_id, host=host, port=port, token=token, idle_timeout_s=idle_timeout, max_sessions=max_sessions,
            allow_privileged=privileged))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        _fail(f"env serve failed: {_os_error(e)}")


def _refuse_consumed(env_ids: list[str], agents: list[str], llm: dict, episodes: int, mode: str) -> None:
    """Refuse (or, with --contamination flag, warn about) a model whose consumption manifests name a
    quarantined (dev or held-out) task of an env about to be benchmarked."""
    from rowgym.evals.contamination import ContaminationError
    from rowgym.evals.runner import parse_agent
    from rowgym.trainers.gates.manifests import quarantine_touches

    dirs = set()
    for a in agents:
        kw = {**parse_agent(a)[1], **llm.get(a, {})}
        if kw.get("model_dir"):
            dirs.add(Path(kw["model_dir"]))
    hits = quarantine_touches(sorted(dirs), env_ids, n_per_split=max(200, episodes))
    if not hits:
        return
    shown = "; ".join(f"{d}: {e} {sp} seed {seed} ({h})" for d, e, sp, seed, h in hits[:5])
    msg = (f"the model's consumption manifests name {len(hits)} quarantined task(s) it was trained on — {shown}"
           f"{' ...' if len(hits) > 5 else ''}")
    if mode == "refuse":
        raise ContaminationError(f"contaminated: {msg}. Retrain without them, or pass --contamination flag")
    console.print(f"[bold red]CONTAMINATED:[/] {msg}", highlight=False, soft_wrap=True)


@serve_app.command("up")
def serve_up(model: Annotated[Path | None, typer.Option(help="Local model dir (default: the tiny model)")] = None,
             port: Annotated[int, typer.Option(help="TCP port", min=1, max=65535)] = 8000,
             served_model_name: Annotated[str | None, typer.Option(help="Model name clients send")] = None,
             timeout: Annotated[float, typer.Option(help="Startup timeout, seconds", callback=_positive)] = 300.0) -> None:
    """Start a detached vLLM server (reused if one already answers on the port); prints its pidfile JSON."""
    from rowgym.agents.serving import policy_up
    from rowgym.errors import RowgymError

    kw: dict = {"startup_timeout": timeout}
    if served_model_name:
        kw["served_model_name"] = served_model_name
    try:
        info = policy_up(model, port, **kw)
    except RowgymError as e:
        _fail(str(e))
    console.print_json(json.dumps(info))


@serve_app.command("down")
def serve_down(port: Annotated[int | None, typer.Option(help="Port to stop (default: every server)")] = None) -> None:
    """Stop the detached server(s) that `rowgym serve up` started."""
    from rowgym.agents.serving import policy_down

    stopped = policy_down(port)
    console.print(f"stopped: {stopped or 'nothing running'}")


@serve_app.command("status")
def serve_status() -> None:
    """The detached servers this machine knows of (pid, port, base_url, model, alive)."""
    from rowgym.agents.serving import policy_status

    console.print_json(json.dumps(policy_status()))


@model_app.command("build-tiny")
def model_build_tiny(out: Annotated[Path | None, typer.Option(help="Output dir (default ~/.cache/rowgym/models/tiny-qwen3)")] = None,
                     seed: Annotated[int, typer.Option(help="Weight-initialisation seed")] = 0,
                     force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached")] = False) -> None:
    """Build the tiny random Qwen3 model + offline tokenizer + TRL's Qwen3 chat template (no downloads)."""
    try:
        from rowgym.trainers.tiny_model import build_tiny_model_cli
    except ImportError as e:
        _fail(f"building the tiny model needs the train extra (pip install 'rowgym[train]'): {e}")
    build_tiny_model_cli(str(out) if out else None, seed, force)


@model_app.command("pretrain-tiny")
def model_pretrain_tiny(out: Annotated[Path, typer.Option(help="Output dir of the pretrained model")],
                        base: Annotated[Path | None, typer.Option(help="Model dir to start from (default: build the tiny model)")] = None,
                        steps: Annotated[int, typer.Option(help="Optimizer steps (32 requests each)", min=1)] = 1000,
                        seed: Annotated[int, typer.Option(help="Seed of the corpus and of training")] = 0) -> None:
    """Give the tiny model a short generic copy pretraining (synthetic requests -> JSON tool-call arguments)."""
    try:
        from rowgym.trainers.pretrain import PretrainConfig, build_pretrained_tiny_model
    except ImportError as e:
        _fail(f"pretraining needs the train extra (pip install 'rowgym[train]'): {e}")
    if base is not None and not (base / "config.json").exists():
        _fail(f"{base} is not a model directory; build one with `rowgym model build-tiny`")
    console.print(str(build_pretrained_tiny_model(out, PretrainConfig(steps=steps, seed=seed), base=base)))


# ----------------------------------------------------------------------------- train
train_app = typer.Typer(help="Train on collected trajectories with TRL (needs the train extra).", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("sft")
def train_sft_cmd(sources: Annotated[list[Path], typer.Argument(help="Run directories (train split) or one dataset dir")],
                  model_dir: Annotated[Path, typer.Option(help="Local model directory")],
                  out: Annotated[Path, typer.Option(help="Where the fine-tuned model is saved")] = Path("runs/sft"),
                  steps: Annotated[int, typer.Option(help="Optimizer steps", min=1)] = 100,
                  batch_size: Annotated[int, typer.Option(help="Conversations per step", min=1)] = 8,
                  lr: Annotated[float, typer.Option(help="Learning rate", callback=_positive)] = 1e-3,
                  min_reward: Annotated[float, typer.Option(help="Keep episodes with final reward >= this")] = 1.0,
                  cpu: Annotated[bool, typer.Option(help="Train on CPU (use_cpu=True, bf16=False)")] = True,
                  allow_unverified: AllowUnverifiedOpt = False) -> None:
    """Tool-use SFT (TRL SFTTrainer, loss on assistant tokens only). Held-out data are refused,
    and so are runs that fail verification unless --allow-unverified."""
    from rowgym.errors import RowgymError
    from rowgym.trainers.sft import SFTOptions, train_sft

    if not (model_dir / "config.json").exists():
        _fail(f"--model-dir {model_dir} is not a model directory (no config.json)")
    src = sources[0] if len(sources) == 1 else list(sources)
    try:
        if allow_unverified:  # build the rows here, where the override is known; train_sft takes rows too
            src = _unverified_sft_rows(list(sources), min_reward)
    except RowgymError as e:
        _fail(str(e))
    try:
        res = train_sft(src, model_dir, out, SFTOptions(max_steps=steps, batch_size=batch_size, learning_rate=lr,
                                                        min_reward=min_reward, use_cpu=cpu))
    except RowgymError as e:
        _fail(str(e))
    console.print(f"SFT {res.steps} steps on {res.n_rows} conversations in {res.wall_s:.0f}s: loss "
                  f"{res.losses[0]:.3f} -> {res.losses[-1]:.3f}; model saved to {res.out_dir}")


def _unverified_sft_rows(sources: list[Path], min_reward: float) -> list[dict]:
    from rowgym.errors import RowgymError
    from rowgym.trainers.datasets import PROVENANCE_FILE, read_dataset, sft_conversations

    if len(sources) == 1 and (sources[0] / PROVENANCE_FILE).exists():
        rows, _ = read_dataset(sources[0], allow_unverified=True)
    else:
        rows = sft_conversations([str(s) for s in sources], min_reward=min_reward, allow_unverified=True)
    if not rows:
        raise RowgymError("no SFT rows in the sources")
    return rows


@train_app.command("dpo")
def train_dpo_cmd(sources: Annotated[list[Path], typer.Argument(help="One `rowgym dataset dpo` dir, or grouped run "
                                                                    "directories (paired without the gates)")],
                  model_dir: Annotated[Path, typer.Option(help="Local model directory (policy and reference), "
                                                               "e.g. the SFT output")],
                  out: Annotated[Path, typer.Option(help="Where the trained model is saved")] = Path("runs/dpo"),
                  steps: Annotated[int, typer.Option(help="Optimizer steps", min=1)] = 100,
                  batch_size: Annotated[int, typer.Option(help="Pairs per step", min=1)] = 4,
                  lr: Annotated[float, typer.Option(help="Learning rate", callback=_positive)] = 1e-4,
                  beta: Annotated[float, typer.Option(help="DPO beta (KL strength)", callback=_positive)] = 0.1,
                  max_length: Annotated[int, typer.Option(help="Tokens per prompt + completion", min=16)] = 4096,
                  cpu: Annotated[bool, typer.Option(help="Train on CPU (use_cpu=True, bf16=False)")] = True,
                  allow_unverified: AllowUnverifiedOpt = False) -> None:
    """DPO (TRL DPOTrainer) on preference pairs, loss on assistant tokens only. Held-out rows are refused,
    and so are runs or datasets that fail verification unless --allow-unverified."""
    from rowgym.errors import RowgymError
    from rowgym.trainers.dpo import DPOOptions, train_dpo

    if not (model_dir / "config.json").exists():
        _fail(f"--model-dir {model_dir} is not a model directory (no config.json)")
    src = sources[0] if len(sources) == 1 else [str(s) for s in sources]
    try:
        res = train_dpo(src, model_dir, out, DPOOptions(max_steps=steps, batch_size=batch_size, learning_rate=lr,
                                                        beta=beta, max_length=max_length, use_cpu=cpu),
                        allow_unverified=allow_unverified)
    except RowgymError as e:
        _fail(str(e))
    console.print(f"DPO {res.steps} steps on {res.n_pairs} pairs in {res.wall_s:.0f}s: loss {res.losses[0]:.3f} -> "
                  f"{res.losses[-1]:.3f}, reward margin {res.margins[0]:.3f} -> {res.margins[-1]:.3f}; model saved "
                  f"to {res.out_dir}", highlight=False, soft_wrap=True)


@train_app.command("grpo")
def train_grpo_cmd(env_id: Annotated[str, typer.Argument(help="Environment id (train seeds are used)")],
                   model_dir: Annotated[Path | None, typer.Option(help="Local model directory (e.g. the SFT output; "
                                                                       "default: the tiny model)")] = None,
                   out: Annotated[Path, typer.Option(help="Run directory: run store, checkpoints, consumption "
                                                          "record, final model")] = Path("runs/grpo"),
                   steps: Annotated[int, typer.Option(help="Optimizer steps", min=1)] = 10,
                   generations: Annotated[int, typer.Option(help="Episodes per seed (GRPO group size)", min=2)] = 4,
                   prompts_per_step: Annotated[int, typer.Option(help="Seeds (groups) per step", min=1)] = 2,
                   lr: Annotated[float, typer.Option(help="Learning rate", callback=_positive)] = 1e-5,
                   temperature: Annotated[float, typer.Option(help="Sampling temperature", callback=_positive)] = 1.0,
                   turn_tokens: Annotated[int, typer.Option(help="Tokens per policy turn", min=1)] = 96,
                   max_turns: Annotated[int | None, typer.Option(help="Turn limit per episode", min=1)] = None,
                   local_weight: Annotated[float, typer.Option(help="Weight of summed local rewards", callback=_finite)] = 0.0,
                   policy: Annotated[str, typer.Option(help="hf (the trainer's model in process) or vllm (a vLLM "
                                                            "server whose weights follow the trainer)")] = "hf",
                   max_staleness: Annotated[int, typer.Option(help="k: train on groups sampled by versions >= "
                                                                   "v - k (0: synchronous)", min=0)] = 0,
                   credit: Annotated[str, typer.Option(help="grpo, turn or gigpo (per-token advantages)")] = "grpo",
                   resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last "
                                                                        "checkpoint")] = False,
                   base_url: Annotated[str | None, typer.Option(help="A running vLLM server started in dev mode "
                                                                     "(default: start one)")] = None,
                   seed: Annotated[int, typer.Option(help="Training seed")] = 0) -> None:
    """Multi-turn GRPO on the rollout engine: groups stream into a run store, the trainer consumes complete groups."""
    from rowgym.errors import RowgymError
    from rowgym.trainers.grpo import GRPOOptions, train_grpo

    if policy not in ("hf", "vllm"):
        _fail(f"--policy must be hf or vllm, got {policy!r}")
    if credit not in ("grpo", "turn", "gigpo"):
        _fail(f"--credit must be grpo, turn or gigpo, got {credit!r}")
    opts = GRPOOptions(max_steps=steps, num_generations=generations, prompts_per_step=prompts_per_step,
                       learning_rate=lr, temperature=temperature, max_turn_tokens=turn_tokens, max_turns=max_turns,
                       local_reward_weight=local_weight, policy=policy, max_staleness=max_staleness,  # type: ignore[arg-type]
                       credit=credit, resume=resume, base_url=base_url, seed=seed)  # type: ignore[arg-type]
    try:
        if model_dir is None:
            from rowgym.trainers.tiny_model import build_tiny_model

            model_dir = build_tiny_model()
        res = train_grpo(env_id, model_dir, out, opts)
    except RowgymError as e:
        _fail(str(e))
    console.print(f"GRPO steps {res.start_step + 1}..{res.start_step + len(res.step_rewards)} in {res.wall_s:.0f}s; "
                  f"step rewards {[round(r, 3) for r in res.step_rewards]}; run store {res.run_dir}; "
                  f"consumption record {out / 'consumption.jsonl'}; model saved to {res.out_dir}")


if __name__ == "__main__":
    app()
