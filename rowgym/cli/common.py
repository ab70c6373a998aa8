"""What several commands share: the console, one-line errors, option validators, the LLM agents' options."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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


def _check_env_id(env_id: str) -> None:
    """A one-line error for an env id that cannot be a URL although it starts like one (``http://[::1``)."""
    if "://" not in env_id:
        return
    from urllib.parse import urlsplit

    try:
        urlsplit(env_id).port  # noqa: B018 (parsing the port is the check)
    except ValueError as e:
        _fail(f"env id {env_id!r} is not a valid URL ({e}); a remote env id looks like http://host:port/ENV_ID")


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
