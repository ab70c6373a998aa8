"""Tools: typed methods of an environment, exposed as OpenAI function schemas.

>>> from pydantic import BaseModel
>>> class EchoArgs(ToolArgs):
...     text: str
>>> class Box:
...     @tool
...     async def echo(self, args: EchoArgs) -> str:
...         '''Repeat the text back.'''
...         return args.text
>>> [t.name for t in collect_tools(Box)]
['echo']
>>> collect_tools(Box)[0].schema()["function"]["parameters"]["required"]
['text']

A tool is an ``async`` method decorated with :func:`tool` that takes one pydantic
argument model (``extra="forbid"``) and returns the observation text. The docstring
is the description the policy sees. Parsing and validating a call never raises:
:func:`parse_action` returns a :class:`ParsedCall` or a :class:`BadCall` that says
what was wrong, which the environment turns into an observation.

Agent input is bounded here, before anything reaches a tool, a backend or storage:

* at most ``MAX_ACTION_CHARS`` of raw text are searched for a tool call and at most
  ``MAX_ARGUMENTS_CHARS`` of arguments JSON are decoded (longer is a bad call);
* JSON nested deeper than ``MAX_JSON_DEPTH`` is refused by a scan of its brackets,
  before the (recursive) decoder sees it;
* characters that backends cannot take are replaced with U+FFFD in the decoded
  arguments: lone UTF-16 surrogates (e.g. from a ``"\\ud800"`` escape; they have no
  UTF-8 encoding, so SQLite, files and JSON storage refuse them) and NUL (C-string
  backends cut text at it). :attr:`ParsedCall.replaced` counts them, so the
  environment can tell the agent its call was changed.

>>> bad = parse_action('{"name": "echo", "arguments": ' + "[" * 100 + "]" * 100 + "}", {})
>>> bad.kind, bad.message
('bad_json', 'The tool call is nested too deeply (more than 64 levels of [ and {).')
>>> clean_text("ok \\ud800") == "ok \\ufffd"
True
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError

from rowgym.errors import ToolDefinitionError
from rowgym.rows import Action, ErrorKind, ToolCall, unvalidated


class ToolArgs(BaseModel):
    """Base of tool argument models: unknown arguments are a validation error."""

    model_config = ConfigDict(extra="forbid")


class NoArgs(ToolArgs):
    """For tools that take no arguments."""


class ToolError(Exception):
    """Raised by a tool for a failed call (order not found, ...): becomes an 'Error:' observation."""


@dataclass(frozen=True)
class Tool:
    """One tool: name, description, argument model and the bound or unbound method."""

    name: str
    description: str
    args_model: type[ToolArgs]
    fn: Callable[..., Awaitable[str]]
    terminal: bool = False

    def schema(self) -> dict[str, Any]:
        """The OpenAI function-calling schema of this tool."""
        params = self.args_model.model_json_schema()
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        params.setdefault("properties", {})
        params["additionalProperties"] = False
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": params}}


def tool(fn: Callable | None = None, *, name: str | None = None, terminal: bool = False):
    """Mark an async method as a tool. ``terminal=True`` ends the episode when called."""

    def mark(f: Callable) -> Callable:
        if not inspect.iscoroutinefunction(f):
            raise ToolDefinitionError(f"tool {f.__qualname__} must be `async def`")
        f.__rowgym_tool__ = {"name": name or f.__name__, "terminal": terminal}
        return f

    return mark(fn) if fn is not None else mark


def collect_tools(cls: type) -> list[Tool]:
    """All tools defined on a class (and its bases), in definition order."""
    tools: dict[str, Tool] = {}
    for klass in reversed(cls.__mro__):
        for attr, f in vars(klass).items():
            meta = getattr(f, "__rowgym_tool__", None)
            if meta is None:
                continue
            hints = get_type_hints(f)
            params = [p for p in inspect.signature(f).parameters if p != "self"]
            if len(params) != 1 or not issubclass(hints.get(params[0], object), ToolArgs):
                raise ToolDefinitionError(
                    f"tool {cls.__name__}.{attr} must take exactly one ToolArgs argument, got {params}")
            doc = inspect.cleandoc(f.__doc__ or "").strip()
            if not doc:
                raise ToolDefinitionError(f"tool {cls.__name__}.{attr} needs a docstring: the policy reads it")
            tools[meta["name"]] = Tool(meta["name"], doc, hints[params[0]], f, meta["terminal"])
    return list(tools.values())


MAX_ACTION_CHARS = 65_536
"""Raw policy text longer than this is not searched for a tool call (a bad call)."""
MAX_ARGUMENTS_CHARS = 65_536
"""Arguments (or a whole tool-call object) longer than this, as JSON text, are a bad call."""
MAX_JSON_DEPTH = 64
"""JSON nested deeper than this (``[`` and ``{`` levels) is refused before it is decoded."""
MAX_QUOTE_CHARS = 80
"""Agent text quoted back in an error message (a tool name, an argument key) is cut to this."""

REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class ParsedCall:
    """A call that names a known tool with valid arguments.

    ``replaced`` counts the characters of the arguments that were replaced with U+FFFD
    (lone surrogates, NUL) before validation.
    """

    tool: Tool
    args: ToolArgs
    call: ToolCall
    replaced: int = 0


@dataclass(frozen=True)
class BadCall:
    """A malformed call, with the message the agent will read."""

    kind: ErrorKind
    message: str
    call: ToolCall | None = None


def clean_text(text: str) -> str:
    """``text`` with every lone UTF-16 surrogate replaced by U+FFFD (a valid pair is joined).

    Anything that stores or sends text as UTF-8 (JSON rows, SQLite, files, HTTP) refuses
    a lone surrogate; an LLM client that decodes a cut multi-byte sequence can produce
    one. Text without surrogates is returned as is (the same object).
    """
    if text.isascii():
        return text
    try:
        text.encode()
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _scrub(text: str) -> tuple[str, int]:
    """Lone surrogates and NUL replaced with U+FFFD, and how many were replaced."""
    out = clean_text(text)
    if "\x00" in out:
        out = out.replace("\x00", REPLACEMENT)
    if out is text:
        return text, 0
    # a joined surrogate pair shortens the text; count only what became U+FFFD
    return out, max(0, out.count(REPLACEMENT) - text.count(REPLACEMENT))


def _scrub_json(value: Any) -> tuple[Any, int]:
    """Scrub every string (keys too) of decoded JSON; depth is already bounded by the caller."""
    if isinstance(value, str):
        return _scrub(value)
    if isinstance(value, list):
        n = 0
        items = []
        for v in value:
            v, k = _scrub_json(v)
            items.append(v)
            n += k
        return items, n
    if isinstance(value, dict):
        n = 0
        out = {}
        for key, v in value.items():
            key, k1 = _scrub(key)
            v, k2 = _scrub_json(v)
            out[key] = v
            n += k1 + k2
        return out, n
    return value, 0


def _may_need_scrub(text: str) -> bool:
    """False when decoding ``text`` cannot yield a lone surrogate or NUL (the common case)."""
    return "\\u" in text or "\x00" in text or not text.isascii()


_JSON_SPECIAL = re.compile(r'[\[\]{}"\\]')


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests ``[``/``{`` deeper than ``limit``, found without recursion.

    One linear scan over the special characters; brackets inside strings do not count.
    Works on malformed JSON too.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth, in_string, skip = 0, False, -1
    for m in _JSON_SPECIAL.finditer(text):
        pos, c = m.start(), m.group()
        if pos == skip:  # the character after a backslash inside a string
            continue
        if in_string:
            if c == "\\":
                skip = pos + 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth = max(0, depth - 1)
    return False


def _quote(text: str, limit: int = MAX_QUOTE_CHARS) -> str:
    """``repr`` of agent text for an error message, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


def _loads(text: str, what: str) -> Any | BadCall:
    """Decode bounded JSON, or say why not (size, depth, syntax, number limits)."""
    if len(text) > MAX_ARGUMENTS_CHARS:
        return BadCall("bad_json", f"{what} is too long ({len(text):,} characters; at most {MAX_ARGUMENTS_CHARS:,}).")
    if json_depth_exceeds(text):
        return BadCall("bad_json", f"{what} is nested too deeply (more than {MAX_JSON_DEPTH} levels of [ and {{).")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        return BadCall("bad_json", f"{what} is not valid JSON ({e.msg} at char {e.pos}).")
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4,300 digits
        return BadCall("bad_json", f"{what} cannot be decoded ({type(e).__name__}: {str(e)[:200]}).")


# Hermes-style (Qwen) tool calls in raw text: <tool_call>{"name": ..., "arguments": {...}}</tool_call>
_OPEN, _CLOSE = "<tool_call>", "</tool_call>"


def extract_tool_call(text: str) -> ToolCall | BadCall:
    """Find one tool call in raw policy text (Hermes tags, or a bare JSON object)."""
    found = _extract(text)
    return found if isinstance(found, BadCall) else found[0]


_UNDECODED: Any = object()
"""The arguments of an extracted call are a JSON string still to decode (see :func:`_extract`)."""


def _extract(text: str) -> tuple[ToolCall, Any] | BadCall:
    """:func:`extract_tool_call`, also returning the decoded arguments (``_UNDECODED`` when the call
    gave them as a string), so :func:`parse_action` does not decode what it just encoded:
    ``json.loads(json.dumps(x)) == x`` for anything ``json.loads`` returned."""
    if len(text) > MAX_ACTION_CHARS:
        return BadCall("no_tool_call", f"The reply is too long ({len(text):,} characters; at most "
                       f"{MAX_ACTION_CHARS:,}). Reply with one short tool call.")
    start = text.find(_OPEN)
    if start >= 0:  # the first tagged call; an unclosed tag runs to the end of the text
        end = text.find(_CLOSE, start + len(_OPEN))
        body = text[start + len(_OPEN):end if end >= 0 else len(text)].strip()
    else:
        body = text.strip()
    if not body.startswith("{"):
        return BadCall("no_tool_call", "No tool call found. Reply with exactly one tool call, e.g. "
                       '<tool_call>{"name": "...", "arguments": {...}}</tool_call>.')
    obj = _loads(body, "The tool call")
    if isinstance(obj, BadCall):
        return obj
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return BadCall("bad_json", 'A tool call must be a JSON object with a "name" string and "arguments".')
    args = obj.get("arguments", {})
    if isinstance(args, str):
        return _call(obj["name"], args), _UNDECODED
    try:
        arguments = "{}" if args == {} else json.dumps(args)
    except (ValueError, RecursionError) as e:
        return BadCall("bad_json", f"The arguments cannot be encoded as JSON ({type(e).__name__}).")
    return _call(obj["name"], arguments), args


def _call(name: str, arguments: str) -> ToolCall:
    """A :class:`ToolCall` of two strings already checked (``ToolCall(name=..., arguments=...)`` less
    its validation, which showed in the per-turn cost)."""
    return unvalidated(ToolCall, _TOOLCALL_SET, name=name, arguments=arguments, id=None)


_TOOLCALL_SET = frozenset({"name", "arguments"})


def _call_from_dict(action: dict) -> ToolCall | BadCall:
    try:
        args = action.get("arguments", {})
        return ToolCall(name=str(action["name"]), arguments=args if isinstance(args, str) else json.dumps(args))
    except (KeyError, TypeError, ValueError, RecursionError) as e:
        return BadCall("bad_json", f"A tool call needs a name and JSON arguments ({type(e).__name__}: "
                       f"{str(e)[:200]}).")


def _validation_problems(e: ValidationError, limit: int = 5) -> str:
    """The first ``limit`` validation errors, with over-long keys cut."""
    errs = e.errors()
    parts = []
    for err in errs[:limit]:
        loc = ".".join(str(x) if len(str(x)) <= MAX_QUOTE_CHARS else _quote(str(x)) for x in err["loc"])
        parts.append(f"{loc or 'arguments'}: {err['msg']}")
    more = f"; and {len(errs) - limit} more" if len(errs) > limit else ""
    return "; ".join(parts) + more


def parse_action(action: Action | ToolCall | dict | str, tools: dict[str, Tool]) -> ParsedCall | BadCall:
    """Turn whatever the agent produced into a validated call, or say what was wrong.

    Accepts an :class:`Action`, a :class:`ToolCall`, a ``{"name", "arguments"}`` dict
    or raw text. Never raises on agent input: sizes and nesting are bounded first, and
    the decoded arguments' strings are scrubbed of lone surrogates and NUL.
    """
    call: ToolCall | BadCall
    decoded = _UNDECODED
    if isinstance(action, Action):
        action = action.tool_call or action.text
    if isinstance(action, str):
        found = _extract(action)
        call, decoded = (found, _UNDECODED) if isinstance(found, BadCall) else found
    elif isinstance(action, ToolCall):
        call = action
    elif isinstance(action, dict):
        call = _call_from_dict(action)
    else:
        call = BadCall("no_tool_call", f"Unsupported action type {type(action).__name__}.")
    if isinstance(call, BadCall):
        return call
    spec = tools.get(call.name)
    if spec is None:
        names = ", ".join(sorted(tools))
        return BadCall("unknown_tool", f"Unknown tool {_quote(call.name)}. Available tools: {names}.", call)
    if decoded is not _UNDECODED and len(call.arguments) <= MAX_ARGUMENTS_CHARS:
        raw = decoded  # decoded from the text just now; sizes and nesting were bounded there
    else:
        raw = _loads(call.arguments, f"Arguments of {call.name}") if call.arguments.strip() else {}
    if isinstance(raw, BadCall):
        return BadCall(raw.kind, raw.message, call)
    if not isinstance(raw, dict):
        return BadCall("invalid_arguments", f"Arguments of {call.name} must be a JSON object.", call)
    replaced = 0
    if _may_need_scrub(call.arguments):
        raw, replaced = _scrub_json(raw)
    try:
        args = spec.args_model.model_validate(raw)
    except ValidationError as e:
        return BadCall("invalid_arguments", f"Invalid arguments for {call.name}: {_validation_problems(e)}.", call)
    if replaced:
        call = ToolCall(name=call.name, arguments=clean_text(call.arguments), id=call.id)
    return ParsedCall(spec, args, call, replaced)
