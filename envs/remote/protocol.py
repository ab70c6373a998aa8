"""The env-over-HTTP protocol (version 1): request bodies, JSON encoding, error mapping.

>>> from rowgym.rows import ToolCall
>>> decode_action(encode_action(ToolCall(name="tick", arguments="{}")))
ToolCall(name='tick', arguments='{}', id=None)
>>> info = decode_info(encode_info({"bad_call": False, "tool_call": ToolCall(name="t", arguments="{}")}))
>>> type(info["tool_call"]).__name__, info["bad_call"]
('ToolCall', False)

Every route is under ``/v1`` and needs ``Authorization: Bearer <token>`` (anything else is a
bare 401). A session is one episode: ``POST /v1/sessions`` builds a fresh env and resets it
(``seed``, ``options``, ``privileged``), later calls name it by id, ``DELETE`` closes it, and
a session idle longer than the server's ``idle_timeout_s`` is closed by the server.

=========================  ======================================================
``GET  /v1/info``          env id, version, system prompt, tool schemas, reward versions, max turns
``GET  /v1/health``        sessions open, privileged resets served
``POST /v1/splits``        ``{"split", "n", "start"}`` -> seeds; ``{"seeds"}`` -> their splits
``POST /v1/task_hashes``   ``{"seeds"}`` -> content hashes (contamination checks, held-out guards)
``POST /v1/sessions``      ``{"seed", "options", "privileged", "replaces"}`` -> id, observation, info [, task]
``POST /v1/sessions/ID``   ``{"action"}`` -> observation, reward, terminated, truncated, info
``DELETE /v1/sessions/ID`` close the session
=========================  ======================================================

Info values that are rowgym row models (``tool_call``, ``verdict``) travel as JSON with
their type named in ``info_models`` and are rebuilt on the client from :mod:`rowgym.rows`
only (a server cannot make a client import anything). Failures travel as
``{"error": {"kind", "type", "message"}}`` and are raised on the client as the
:class:`~rowgym.errors.EpisodeError` of that kind, so attribution survives the hop.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rowgym import aio
from rowgym import rows as _rows
from rowgym.errors import EnvError, EpisodeError, EpisodeTimeout, GraderError, RowgymError, SandboxError

PROTOCOL_VERSION = 1
TOKEN_ENV = "ROWGYM_ENV_TOKEN"
"""Environment variable holding the token (server and client), so it stays out of argv and run manifests."""

ROW_MODELS = {"ToolCall": _rows.ToolCall, "Verdict": _rows.Verdict, "Action": _rows.Action, "Check": _rows.Check}
ERRORS: dict[str, type[EpisodeError]] = {"env": EnvError, "sandbox": SandboxError, "grader": GraderError,
                                         "timeout": EpisodeTimeout}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateSession(Body):
    seed: int | None = None
    options: dict[str, Any] | None = None
    privileged: bool = False
    """Also return the task (for privileged scripted experts); the server counts and logs these."""
    replaces: str | None = None
    """A session of the same client to close first (saves a round trip per episode)."""


class StepBody(Body):
    action: dict[str, Any]


class SplitsBody(Body):
    split: str | None = None
    n: int | None = Field(None, ge=0, le=1_000_000)
    start: int = Field(0, ge=0)
    seeds: list[int] | None = Field(None, max_length=100_000)


MAX_HASH_SEEDS = 10_000
"""Seeds per ``/v1/task_hashes`` call (the client splits longer lists)."""


class HashesBody(Body):
    seeds: list[int] = Field(max_length=MAX_HASH_SEEDS)


def dumps(obj: Any) -> bytes:
    """JSON bytes; falls back to the stdlib (escaped) where orjson refuses text (lone surrogates)."""
    try:
        return aio.dumps(obj)
    except (TypeError, ValueError):
        return json.dumps(obj, ensure_ascii=True, default=str).encode()


def loads(data: bytes | str) -> Any:
    try:
        return aio.loads(data)
    except ValueError:
        return json.loads(data)


def encode_action(action: Any) -> dict[str, Any]:
    """An action of any type ``RowEnv.step`` accepts, tagged with its type so the server rebuilds it exactly."""
    if isinstance(action, _rows.Action):
        return {"type": "Action", "value": action.model_dump(mode="json")}
    if isinstance(action, _rows.ToolCall):
        return {"type": "ToolCall", "value": action.model_dump(mode="json")}
    if isinstance(action, str):
        return {"type": "str", "value": action}
    if isinstance(action, dict):
        return {"type": "dict", "value": json.loads(json.dumps(action, default=str))}
    raise RowgymError(f"an action is an Action, a ToolCall, a dict or a str, not {type(action).__name__}")


def decode_action(data: dict[str, Any]) -> Any:
    kind, value = data.get("type"), data.get("value")
    if kind in ("Action", "ToolCall"):
        return ROW_MODELS[kind].model_validate(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "dict" and isinstance(value, dict):
        return value
    raise ValueError(f"bad action encoding {kind!r}")


def encode_info(info: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    models: dict[str, str] = {}
    for k, v in info.items():
        if isinstance(v, BaseModel) and type(v).__name__ in ROW_MODELS:
            out[k], models[k] = v.model_dump(mode="json"), type(v).__name__
        elif isinstance(v, BaseModel):
            out[k] = v.model_dump(mode="json")
        else:
            out[k] = v
    return {"info": out, "info_models": models}


def decode_info(data: dict[str, Any]) -> dict[str, Any]:
    info = dict(data["info"])
    for k, name in data.get("info_models", {}).items():
        if name in ROW_MODELS and info.get(k) is not None:
            info[k] = ROW_MODELS[name].model_validate(info[k])
    return info


def error_body(e: BaseException) -> dict[str, Any]:
    """The wire form of an exception raised by the served env."""
    if isinstance(e, EpisodeError):
        kind = e.kind
    elif isinstance(e, TimeoutError):
        kind = "timeout"
    elif isinstance(e, RowgymError):
        kind = "usage"
    else:
        kind = "env"
    return {"error": {"kind": kind, "type": type(e).__name__, "message": str(e)}}


def raise_error(body: Any, where: str) -> None:
    """Raise the client-side exception for an error body (``where``: the server and route)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        raise EnvError(f"env server {where}: unexpected answer {str(body)[:300]}")
    kind, msg = err.get("kind"), f"{err.get('type', 'Error')}: {err.get('message', '')} (env server {where})"
    if kind == "usage":
        raise RowgymError(msg)
    raise ERRORS.get(str(kind), EnvError)(msg)
