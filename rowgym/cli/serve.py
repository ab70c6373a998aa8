"""Servers: `rowgym serve ...` (the vLLM policy server) and `rowgym env serve` (an environment over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rowgym.cli.common import _fail, _os_error, _positive, console

serve_app = typer.Typer(help="The vLLM policy server (OpenAI-compatible, tool calling on).", no_args_is_help=True)
env_app = typer.Typer(help="Serve an environment over HTTP (rowgym.make('http://host:port/ENV_ID') on clients).",
                      no_args_is_help=True)


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
