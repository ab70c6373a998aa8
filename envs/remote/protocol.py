"""The env-over-HTTP protocol (version 2): request bodies, JSON encoding, error mapping.

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
``POST /v1/sessions``      ``{"seed", "options", "privileged", "replaces", "session_id"}`` -> id, observation, info [, task]
``POST /v1/sessions/ID``   ``{"action"}`` -> observation, reward, terminated, truncated, info
``DELETE /v1/sessions/ID`` close the session
=========================  ======================================================

**Version 2** (a v2 server answers v1 clients unchanged): the client proposes the new
session's id (``session_id``) and ``replaces`` may list several ids. A client whose reset
got no answer (timed out, cancelled) cannot know whether the server opened that session; as
it named the id itself, it closes it with its next reset (``replaces``) or ``close()``. The
server remembers closed ids, so a create that arrives after its id was replaced is refused
(409) instead of opening a session nobody will close. A v1 server (``"protocol": 1`` in
``/v1/info``) is sent neither.

A body over ``MAX_BODY_BYTES`` is refused (413), so the client bounds an action before it
sends it (:func:`step_body`) the way the env would: what the env would refuse for its size or
nesting travels as a small stand-in the env refuses the same way.

Info values that are rowgym row models (``tool_call``, ``verdict``) travel as JSON with
their type named in ``info_models`` and are rebuilt on the client from :mod:`rowgym.rows`
only (a server cannot make a client import anything). Failures travel as
``{"error": {"kind", "type", "message"}}`` and are raised on the client as the
:class:`~rowgym.errors.EpisodeError` of that kind, so attribution survives the hop.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from rowgym import aio
from rowgym import rows as _rows
from rowgym.errors import EnvError, EpisodeError, EpisodeTimeout, GraderError, RowgymError, SandboxError
from rowgym.tools import MAX_ACTION_CHARS, MAX_ARGUMENTS_CHARS, MAX_JSON_DEPTH

PROTOCOL_VERSION = 2
MAX_BODY_BYTES = 8 * 2**20
"""The largest request body a server reads (aiohttp's ``client_max_size``)."""
MAX_REPLACES = 16
"""Session ids one create may close (``replaces``); a client keeps at most this many unconfirmed."""
SESSION_ID = r"^[A-Za-z0-9_-]{16,64}$"
"""A session id a client may propose (it makes ``uuid4().hex`` ids): URL-safe, too long to guess."""
TOKEN_ENV = "ROWGYM_ENV_TOKEN"
"""Environment variable holding the token (server and client), so it stays out of argv and run manifests."""

ROW_MODELS = {"ToolCall": _rows.ToolCall, "Verdict": _rows.Verdict, "Action": _rows.Action, "Check": _rows.Check}
ERRORS: dict[str, type[EpisodeError]] = {"env": EnvError, "sandbox": SandboxError, "grader": GraderError,
                                         "timeout": EpisodeTimeout}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


_Id = Annotated[str, Field(max_length=128)]


class CreateSession(Body):
    seed: int | None = None
    options: dict[str, Any] | None = None
    privileged: bool = False
    """Also return the task (for privileged scripted experts); the server counts and logs these."""
    replaces: _Id | Annotated[list[_Id], Field(max_length=MAX_REPLACES)] | None = None
    """Sessions of the same client to close first (saves a round trip per episode); a list since v2."""
    session_id: str | None = Field(None, pattern=SESSION_ID)
    """The new session's id, proposed by the client (v2) so it can close a session it never heard back about."""

    def replaced(self) -> list[str]:
        if self.replaces is None:
            return []
        return [self.replaces] if isinstance(self.replaces, str) else list(self.replaces)


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
    """Decoded JSON; raises ``ValueError`` for anything that is not (the server answers that with 400).

    orjson refuses some valid JSON (lone surrogate escapes, big integers, more than 1,024 levels)
    and the stdlib decodes it; the stdlib recurses, so nesting too deep for it is a ``ValueError`` too.
    """
    try:
        return aio.loads(data)
    except ValueError:
        try:
            return json.loads(data)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None


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


def step_body(action: Any) -> bytes:
    """The ``POST /v1/sessions/ID`` body for ``action``, never over ``MAX_BODY_BYTES``; raises only for
    an action type no env accepts.

    ``RowEnv.step`` never raises on agent input, so neither may its remote twin: an action that
    cannot be encoded (nested too deep, an integer of more than 4,300 digits) or would be refused
    for its size travels as :func:`bounded_action`, which the env refuses with the same kind of
    bad call. Everything else travels as it is, so the env sees exactly what a local one would.
    """
    try:
        body = dumps({"action": encode_action(action)})
        if len(body) <= MAX_BODY_BYTES:
            return body
    except (RecursionError, ValueError):
        pass
    return dumps({"action": encode_action(bounded_action(action))})


TOO_DEEP = "{" + "[" * (MAX_JSON_DEPTH + 1)
"""Stands in for a call that cannot be JSON-encoded for its nesting: the env reads it as a tool
call nested too deeply (``bad_json``, no tool call), as it does the original."""
UNENCODABLE = '{"name": ' + "9" * 4301 + "}"
"""Stands in for a call that cannot be JSON-encoded otherwise: from JSON data, only an integer of more
than 4,300 digits (Python's default limit) cannot; so is this one's (``bad_json``, no tool call)."""


def bounded_action(action: Any) -> Any:
    """A small action that ``rowgym.tools.parse_action`` turns into the bad call it makes of ``action``.

    Only for an action that cannot travel as it is: over-long text is cut to one character over
    its limit (still too long; the observation then states that length), and a dict is made the
    :class:`~rowgym.rows.ToolCall` the env would make of it. The kind of bad call (``no_tool_call``,
    ``unknown_tool``, ``bad_json``) and so the reward are the local env's.

    >>> len(bounded_action("x" * 10_000_000)) == MAX_ACTION_CHARS + 1
    True
    """
    if isinstance(action, _rows.Action):  # as parse_action reads an Action
        action = action.tool_call or action.text
    if isinstance(action, str):
        return _cut(action, MAX_ACTION_CHARS)
    if isinstance(action, dict):
        try:
            args = action.get("arguments", {})
            name = str(action["name"])
            action = _rows.ToolCall(name=name, arguments=args if isinstance(args, str) else json.dumps(args))
        except KeyError:
            return {}  # the env's message for a dict without a name is the same
        except RecursionError:
            return TOO_DEEP
        except (TypeError, ValueError):
            return UNENCODABLE
    if isinstance(action, _rows.ToolCall):
        args = action.arguments
        if len(args) > MAX_ARGUMENTS_CHARS:  # still too long, and still blank only if it was blank
            args = args.strip() and args.strip()[:MAX_ARGUMENTS_CHARS + 1].ljust(MAX_ARGUMENTS_CHARS + 1)
        return _rows.ToolCall(name=_cut(action.name, MAX_ARGUMENTS_CHARS), arguments=args,
                              id=None if action.id is None else _cut(action.id, MAX_ARGUMENTS_CHARS))
    return action


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit + 1]


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
