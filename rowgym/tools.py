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
from rowgym.rows import Action, ErrorKind, ToolCall


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


@dataclass(frozen=True)
class ParsedCall:
    """A call that names a known tool with valid arguments."""

    tool: Tool
    args: ToolArgs
    call: ToolCall


@dataclass(frozen=True)
class BadCall:
    """A malformed call, with the message the agent will read."""

    kind: ErrorKind
    message: str
    call: ToolCall | None = None


# Hermes-style (Qwen) tool calls in raw text: <tool_call>{"name": ..., "arguments": {...}}</tool_call>
_TOOL_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def extract_tool_call(text: str) -> ToolCall | BadCall:
    """Find one tool call in raw policy text (Hermes tags, or a bare JSON object)."""
    m = _TOOL_CALL_RE.search(text)
    body = m.group(1) if m else text.strip()
    if not body.startswith("{"):
        return BadCall("no_tool_call", "No tool call found. Reply with exactly one tool call, e.g. "
                       '<tool_call>{"name": "...", "arguments": {...}}</tool_call>.')
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        return BadCall("bad_json", f"The tool call is not valid JSON ({e.msg} at char {e.pos}).")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return BadCall("bad_json", 'A tool call must be a JSON object with a "name" string and "arguments".')
    args = obj.get("arguments", {})
    return ToolCall(name=obj["name"], arguments=args if isinstance(args, str) else json.dumps(args))


def parse_action(action: Action | ToolCall | dict | str, tools: dict[str, Tool]) -> ParsedCall | BadCall:
    """Turn whatever the agent produced into a validated call, or say what was wrong.

    Accepts an :class:`Action`, a :class:`ToolCall`, a ``{"name", "arguments"}`` dict
    or raw text. Never raises on agent input.
    """
    call: ToolCall | BadCall
    if isinstance(action, str):
        call = extract_tool_call(action)
    elif isinstance(action, ToolCall):
        call = action
    elif isinstance(action, Action):
        call = action.tool_call or extract_tool_call(action.text)
    elif isinstance(action, dict):
        try:
            args = action.get("arguments", {})
            call = ToolCall(name=str(action["name"]), arguments=args if isinstance(args, str) else json.dumps(args))
        except (KeyError, TypeError, ValueError) as e:
            call = BadCall("bad_json", f"A tool call needs a name and arguments ({e}).")
    else:
        call = BadCall("no_tool_call", f"Unsupported action type {type(action).__name__}.")
    if isinstance(call, BadCall):
        return call
    spec = tools.get(call.name)
    if spec is None:
        names = ", ".join(sorted(tools))
        return BadCall("unknown_tool", f"Unknown tool {call.name!r}. Available tools: {names}.", call)
    try:
        raw = json.loads(call.arguments) if call.arguments.strip() else {}
    except json.JSONDecodeError as e:
        return BadCall("bad_json", f"Arguments of {call.name} are not valid JSON ({e.msg}).", call)
    if not isinstance(raw, dict):
        return BadCall("invalid_arguments", f"Arguments of {call.name} must be a JSON object.", call)
    try:
        args = spec.args_model.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}" for err in e.errors())
        return BadCall("invalid_arguments", f"Invalid arguments for {call.name}: {problems}.", call)
    return ParsedCall(spec, args, call)
