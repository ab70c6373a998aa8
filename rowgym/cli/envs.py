"""Registered environments: `rowgym envs list` and `rowgym check`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from rowgym.cli.common import _fail, console

envs_app = typer.Typer(help="Registered environments.", no_args_is_help=True)
# Added to `rowgym` without a name, so these are top-level commands (`rowgym check`).
commands = typer.Typer()


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


@commands.command()
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
