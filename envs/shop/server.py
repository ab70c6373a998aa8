"""Run the shop under uvicorn: foreground, background with a pidfile, or on demand.

>>> from rowgym.envs.shop.server import ensure_running  # doctest: +SKIP
>>> ensure_running(8765)  # doctest: +SKIP
'http://127.0.0.1:8765'

Command line (what ``make env-up``/``env-down`` and ``rowgym shop serve`` call)::

    python -m rowgym.envs.shop.server serve  [--port 8765]   # foreground
    python -m rowgym.envs.shop.server start  [--port 8765]   # background, pidfile
    python -m rowgym.envs.shop.server stop   [--port 8765]
    python -m rowgym.envs.shop.server status [--port 8765]

The background server is started by :mod:`rowgym.launcher` in a session of its own, so it
outlives the shell or worker that started it; ``stop`` reads the pidfile and checks
the process really is a shop server before signalling it. Starts are serialised by a
file lock, so eight env workers calling :func:`ensure_running` at once start one server.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import urllib.request
from pathlib import Path

from rowgym.envs.shop.catalog import build_catalog_db, cache_dir
from rowgym.envs.shop.errors import ShopServerError
from rowgym.envs.shop.secret import ENV_VAR, load_secret
from rowgym.launcher import ManagedProcess, stop_recorded

DEFAULT_PORT = 8765
HOST = "127.0.0.1"
_MODULE = "rowgym.envs.shop.server"


def base_url(port: int = DEFAULT_PORT, host: str = HOST) -> str:
    """``http://host:port`` of a shop server."""
    return f"http://{host}:{port}"


def pidfile_path(port: int = DEFAULT_PORT) -> Path:
    """Where the background server on ``port`` records its pid."""
    return cache_dir() / f"server-{port}.pid"


def is_running(port: int = DEFAULT_PORT, host: str = HOST, timeout: float = 1.0) -> bool:
    """Whether a *rowgym shop* answers ``/healthz`` on ``host:port``.

    Raises:
        ShopServerError: Something else answers on that port.
    """
    try:
        with urllib.request.urlopen(base_url(port, host) + "/healthz", timeout=timeout) as resp:
            body = resp.read()
    except OSError:  # refused, timed out, HTTP error: nothing usable there
        return False
    try:
        ok = json.loads(body).get("app") == "rowgym-shop"
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise ShopServerError(f"port {port} answers but is not a rowgym shop; pick another --port")
    return True


def running_code(port: int = DEFAULT_PORT, host: str = HOST, timeout: float = 2.0) -> str | None:
    """The code hash a running shop reports in ``/healthz`` (None if none answers)."""
    try:
        with urllib.request.urlopen(base_url(port, host) + "/healthz", timeout=timeout) as resp:
            return str(json.loads(resp.read()).get("code", ""))
    except (OSError, ValueError, AttributeError):
        return None


def serve(port: int = DEFAULT_PORT, *, host: str = HOST, secret: str | None = None,
          state_path: str | Path | None = None, log_level: str = "warning") -> None:
    """Run the shop in the foreground until interrupted (Ctrl-C / SIGTERM)."""
    import uvicorn

    from rowgym.envs.shop.app import create_app

    app = create_app(secret=load_secret(secret),
                     state_path=state_path if state_path is not None else cache_dir() / f"state-{port}.sqlite")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


def start_background(port: int = DEFAULT_PORT, *, host: str = HOST, secret: str | None = None,
                     timeout: float = 60.0) -> str:
    """Start a detached server (if none answers) and wait until it is healthy.

    Args:
        port: TCP port on ``host``.
        host: Interface; keep the default loopback.
        secret: Grader secret for the new server; passed through the environment,
            not argv, so it does not show in ``ps``. Default: :func:`load_secret`.
        timeout: Seconds to wait for ``/healthz``.

    Returns:
        The server's base URL.
    """
    with open(cache_dir() / f"server-{port}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others find it running
        # A generous timeout here: a server busy with many episodes may answer /healthz slowly, and
        # taking "slow" for "down" would start a second server that cannot bind the port.
        if is_running(port, host, timeout=10.0):
            from rowgym.envs.shop.app import code_version

            if running_code(port, host) == code_version() or not stop_background(port):
                return base_url(port, host)  # current code, or a server we did not start (left alone)
            print(f"restarted the shop on port {port}: it ran older code", file=sys.stderr)
        build_catalog_db()  # build once here, so the child starts fast and the timeout is fair
        env = {**os.environ, ENV_VAR: load_secret(secret)}
        server = ManagedProcess("shop server", [sys.executable, "-m", _MODULE, "serve", "--port", str(port),
                                                "--host", host],
                                ready=lambda: is_running(port, host, timeout=0.5), env=env,
                                log_path=cache_dir() / f"server-{port}.log", marker=_MODULE, error=ShopServerError)
        server.start(timeout=timeout)
        server.detach(pidfile_path(port), port=port, base_url=base_url(port, host))
    return base_url(port, host)


def stop_background(port: int = DEFAULT_PORT, timeout: float = 10.0) -> bool:
    """Stop the background server recorded in the pidfile; False if there was none."""
    return stop_recorded(pidfile_path(port), grace=timeout, marker=_MODULE)


def ensure_running(port: int = DEFAULT_PORT, *, host: str = HOST, secret: str | None = None,
                   timeout: float = 60.0) -> str:
    """Base URL of a healthy shop on ``port``, starting one in the background if needed."""
    if is_running(port, host):
        return base_url(port, host)
    return start_background(port, host=host, secret=secret, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see module docstring)."""
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}", description="Run the rowgym web shop.")
    parser.add_argument("command", choices=["serve", "start", "stop", "status"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("ROWGYM_SHOP_PORT", DEFAULT_PORT)))
    parser.add_argument("--host", default=HOST)
    args = parser.parse_args(argv)
    if args.command == "serve":
        print(f"rowgym shop on {base_url(args.port, args.host)} (Ctrl-C to stop)", flush=True)
        serve(args.port, host=args.host, log_level="info")
    elif args.command == "start":
        print(f"rowgym shop running at {start_background(args.port, host=args.host)}")
    elif args.command == "stop":
        print("stopped" if stop_background(args.port) else "no background shop server recorded")
    else:
        up = is_running(args.port, args.host)
        print(f"{base_url(args.port, args.host)}: {'up' if up else 'down'}")
        return 0 if up else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
