"""format@1: roles complete and alternating, tool calls that parse and validate, no truncated turn,
token ids consistent with the text.

>>> from rowgym.trainers.gates.format import role_problem
>>> role_problem([{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
...               {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}])
'message 3: assistant where tool or user was expected'

A tool call that fails the env's schema is allowed only where the conversation says so: the
message after it is the env's error (``Error: ...``), the repair lesson that ``keep_bad_calls``
keeps on purpose. A failing call answered as if it had worked is malformed data. The ``tools``
column must be the env's own tool schemas (``tools_mismatch``): the trainers render it into every
prompt, so a stored episode's edited tool description would be training text no other gate reads.
"""

from __future__ import annotations

import json
from typing import Any

from rowgym.rows import ToolCall
from rowgym.tools import BadCall, parse_action
from rowgym.trainers.gates.base import Candidate, Gate, GateContext, Rejection

_ROLES = {"system", "user", "assistant", "tool"}


def role_problem(messages: list[dict[str, Any]], *, prompt_only: bool = False) -> str | None:
    """Why the roles are not system, user, then assistant / (tool | user) alternating, ending with
    the assistant (``prompt_only``: exactly system, user); None when they are."""
    if len(messages) < 2 or messages[0].get("role") != "system" or messages[1].get("role") != "user":
        return "a conversation starts with a system and a user message"
    for i, m in enumerate(messages):
        if m.get("role") not in _ROLES:
            return f"message {i}: unknown role {m.get('role')!r}"
        if not isinstance(m.get("content", ""), str):
            return f"message {i}: content is not a string"
    if prompt_only:
        return None if len(messages) == 2 else f"a prompt has 2 messages, not {len(messages)}"
    if len(messages) < 3:
        return "no assistant turn"
    for i, m in enumerate(messages[2:], start=2):
        want = "assistant" if i % 2 == 0 else "tool or user"
        if (m["role"] == "assistant") != (i % 2 == 0) or m["role"] == "system":
            return f"message {i}: {m['role']} where {want} was expected"
    if messages[-1]["role"] != "assistant":
        return f"the conversation ends with {messages[-1]['role']}, not the assistant"
    return None


def tools_problem(tools: Any, env: Any) -> str | None:
    """Why a row's ``tools`` (parsed) are not its env's tool schemas, or None.

    The trainers render ``tools`` into every prompt, so it is training text like any message: it
    must be exactly what the env exposes (tools are fixed per env class), never what a stored
    episode says.
    """
    u = getattr(env, "unwrapped", env)
    if not hasattr(u, "tools_json"):
        return None
    want = json.loads(u.tools_json())
    if tools == want:
        return None
    names = sorted(str(t.get("function", {}).get("name")) for t in tools if isinstance(t, dict)) \
        if isinstance(tools, list) else []
    return (f"the tools column is not the env's tool schemas ({len(names)} tools {names[:6]}; the env has "
            f"{len(want)}); tool names, descriptions and parameters must be the env's own")


class FormatGate(Gate):
    name = "format"
    version = "1"

    def check(self, cands: list[Candidate], ctx: GateContext) -> list[Rejection]:
        out = []
        for c in cands:
            problem = self._problem(c, ctx)
            if problem is not None:
                out.append(self.reject(c, *problem))
        return out

    def _problem(self, c: Candidate, ctx: GateContext) -> tuple[str, str] | None:
        prompt_only = "prompt" in c.row and "messages" not in c.row
        msgs = c.messages
        bad = role_problem(msgs, prompt_only=prompt_only)
        if bad is not None:
            return "roles", bad
        tools_json = c.row.get("tools")
        try:
            tools_given = (json.loads(tools_json) if isinstance(tools_json, str) else tools_json
                           ) if tools_json is not None else None
        except ValueError:
            return "tools_not_json", "the tools column is not valid JSON"
        if tools_given is not None and c.env_id:
            problem = tools_problem(tools_given, ctx.env(c.env_id))
            if problem:
                return "tools_mismatch", problem
        if prompt_only:
            return None
        tools = ctx.env(c.env_id).unwrapped._tools if c.env_id else {}
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            nxt = msgs[i + 1] if i + 1 < len(msgs) else None
            calls = m.get("tool_calls") or []
            if len(calls) > 1:
                return "malformed_tool_call", f"message {i}: {len(calls)} tool calls in one turn (rowgym plays one)"
            if not calls and not (m.get("content") or "").strip():
                return "truncated_turn", f"message {i}: an empty assistant turn"
            if calls:
                fn = calls[0].get("function") or {}
                if not isinstance(fn.get("arguments"), str) or not fn.get("name"):
                    return "malformed_tool_call", f"message {i}: a tool call needs a name and string arguments"
                parsed = parse_action(ToolCall(name=fn["name"], arguments=fn["arguments"]), tools)
            else:
                parsed = parse_action(m.get("content") or "", tools)
            if isinstance(parsed, BadCall):
                if nxt is None:
                    return "truncated_turn", f"message {i}: the conversation ends on an invalid call ({parsed.message})"
                if not str(nxt.get("content") or "").startswith("Error"):
                    return "malformed_tool_call", (f"message {i}: {parsed.kind}: {parsed.message} — yet the reply "
                                                   f"treats it as a valid call")
            if nxt is not None and calls and nxt["role"] == "tool" and (
                    nxt.get("tool_call_id") != calls[0].get("id")):
                return "roles", f"message {i + 1}: tool_call_id {nxt.get('tool_call_id')!r} answers no call"
        return self._episode_problem(c)

    @staticmethod
    def _episode_problem(c: Candidate) -> tuple[str, str] | None:
        ep = c.episode
        if ep is None:
            return None
        if ep.steps and ep.steps[-1].truncated and not ep.steps[-1].terminated:
            return "truncated_turn", f"the episode hit its turn limit at turn {ep.steps[-1].turn} without finishing"
        for s in ep.steps:
            t = s.tokens
            if t is None:
                continue
            if t.finish_reason == "length":
                return "truncated_turn", f"turn {s.turn}: the completion stopped at the token limit"
            if len(t.logprobs) != len(t.completion_ids) or len(t.mask) != len(t.prompt_ids) + len(t.completion_ids):
                return "token_ids_inconsistent", (f"turn {s.turn}: {len(t.completion_ids)} completion ids, "
                                                  f"{len(t.logprobs)} logprobs, mask of {len(t.mask)} for "
                                                  f"{len(t.prompt_ids) + len(t.completion_ids)} ids")
            if any(x != 1 for x in t.mask[len(t.prompt_ids):]):
                return "token_ids_inconsistent", f"turn {s.turn}: a sampled token is masked out"
            if not t.completion_ids and s.action.text:
                return "token_ids_inconsistent", f"turn {s.turn}: text without completion ids"
        return None
