"""`rowgym bench`: agents on held-out seeds, with the contamination check before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rowgym.cli.common import (
    BaseUrlOpt,
    MaxTokensOpt,
    ModelDirOpt,
    ModelOpt,
    PolicyUrlOpt,
    TemperatureOpt,
    _fail,
    _policy_urls,
    _positive,
    console,
    llm_agent_kwargs,
)

# Added to `rowgym` without a name, so these are top-level commands (`rowgym bench`).
commands = typer.Typer()


@commands.command()
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
