"""Hostile tool calls for the shop: the generator shared by the mock-page and the real-browser fuzz."""

from __future__ import annotations

import json
import random
from typing import Any

from rowgym.rows import Action, ToolCall

TOOLS = ["click", "type", "select", "scroll", "back", "goto", "finish"]
FIELDS = ["ref", "text", "submit", "option", "direction", "path"]
HUGE = "x" * 1_000_000
DEEP_LIST: Any = []
for _ in range(1000):
    DEEP_LIST = [DEEP_LIST]
DEEP_JSON = "[" * 1000 + "]" * 1000
DEEP_OBJ = '{"a":' * 1000 + "1" + "}" * 1000
#: Spellings of harness-only routes an attacker would try through goto.
INTERNAL_PATHS = [
    "/_grader/sessions", "/%5Fgrader/sessions", "/%5fgrader/session/x", "/%255Fgrader/sessions",
    "/%25255Fgrader/sessions", "/_GRADER/sessions", "/_Grader/session/x", "//_grader/sessions",
    "/./_grader/sessions", "/cart/../_grader/sessions", "/static/..%2F_grader/sessions", "/%2e%2e/_grader/sessions",
    "/\\_grader/sessions", "/cart\\..\\_grader/sessions", "/_grader%2Fsession%2Fx", "/%73ession/start?sid=abc",
    "/%2573ession/start?sid=abc", "/SESSION/start?sid=abc", "/session/join?token=abc", "/Session/Join?token=abc",
    "/new-session", "/%6Eew-session", "/search/../../session/start?sid=abc", "/%0a_grader/sessions",
    "/_grader\t/sessions", "/%" + "25" * 19 + "5Fgrader/sessions",  # encoded 20 times
]
OUTSIDE = ["https://example.com/", "//example.com/x", "/\\example.com", "file:///etc/passwd", "javascript:alert(1)",
           "http://[::1", "http://127.0.0.1:1@evil.example/", "data:text/html,hi", "about:blank", "chrome://version"]
PATHS = ["/", "/cart", "/orders", "/search?q=red+mug", "/product/P00001", "/static/../../../../etc/passwd",
         "/tmp", "/%00", "/%ZZ", "/" + "a/" * 200, *INTERNAL_PATHS, *OUTSIDE]
STRINGS = ["", " ", "e14", "e9999", "E14", "e14 ", "\ud800", "a\udfffb", "\x00", "e1\x00", "\\ud800", "%00",
           "' OR 1=1 --", "<script>alert(1)</script>", "${7*7}", "{{7*7}}", "\u202e", "🛒", "up", "down", "M",
           "T-shirts", "aria-ref=e14", "css=body", "xpath=//a", "e14] [ref=e15", "\n", "x" * 33, "x" * 501]
SCALARS: list[Any] = [None, True, False, 0, -1, -10**9, 10**30, 3.5, float("-inf"), [], {}, [1, "a"], {"ref": "e14"}]


def _value(rng: random.Random, refs: list[str]) -> Any:
    pick = rng.random()
    if pick < 0.25 and refs:
        return rng.choice(refs)
    if pick < 0.45:
        return rng.choice(PATHS)
    if pick < 0.75:
        return rng.choice(STRINGS)
    if pick < 0.9:
        return rng.choice(SCALARS)
    return rng.choice([HUGE, DEEP_LIST, {"k": DEEP_LIST}])


def _arguments(rng: random.Random, refs: list[str]) -> Any:
    r = rng.random()
    if r < 0.7:
        fields = rng.sample(FIELDS, rng.randint(0, 3))
        if rng.random() < 0.1:
            fields.append(rng.choice(["extra", "", "\ud800", "ref\x00"]))
        return {f: _value(rng, refs) for f in fields}
    if r < 0.8:
        return rng.choice([DEEP_JSON, DEEP_OBJ, '{"ref": "\\ud800"}', '{"text": "a\\u0000b", "ref": "e14"}',
                           '{"path": "/%5Fgrader/sessions"}', "{", "null", "[]", '"str"', "1e999999", "9" * 5000,
                           '{"ref": ' + "1" * 5000 + "}", "\ud800", HUGE])
    return rng.choice(SCALARS + [DEEP_LIST])


#: Each tool's argument names, so that a share of the calls is well-formed enough to reach the tool body.
SHAPES = {"click": ["ref"], "type": ["ref", "text", "submit"], "select": ["ref", "option"], "scroll": ["direction"],
          "back": [], "goto": ["path"], "finish": []}


def _well_shaped(rng: random.Random, refs: list[str]) -> dict[str, Any]:
    name = rng.choice(TOOLS[:-1] if rng.random() < 0.97 else TOOLS)  # finish ends the episode: rarely
    args: dict[str, Any] = {}
    for field in SHAPES[name]:
        if field == "ref":
            args[field] = rng.choice(refs) if refs and rng.random() < 0.7 else rng.choice(STRINGS)
        elif field == "submit":
            args[field] = rng.random() < 0.5
        elif field == "direction":
            args[field] = rng.choice(["up", "down", "up", "sideways"])
        elif field == "path":
            args[field] = rng.choice(PATHS)
        else:
            args[field] = rng.choice(STRINGS) if rng.random() < 0.8 else rng.choice(PATHS)
    return {"name": name, "arguments": args}


def action(rng: random.Random, refs: list[str]) -> Any:
    """One hostile (or occasionally valid) action in any of the forms an agent can produce."""
    if rng.random() < 0.35:
        return _well_shaped(rng, refs)
    name = rng.choice(TOOLS) if rng.random() < 0.85 else rng.choice(["", "nope", "\ud800", "goto\x00", 7, None])
    args = _arguments(rng, refs)
    form = rng.random()
    if form < 0.55:
        return {"name": name, "arguments": args}
    if form < 0.7:
        try:
            text = json.dumps({"name": name, "arguments": args}, ensure_ascii=rng.random() < 0.5)
        except (ValueError, TypeError, RecursionError):
            text = DEEP_JSON
        return rng.choice([f"<tool_call>{text}</tool_call>", text, text[: len(text) // 2]])
    if form < 0.8:
        try:
            raw = args if isinstance(args, str) else json.dumps(args)
        except (ValueError, TypeError, RecursionError):
            raw = DEEP_OBJ
        return ToolCall(name=str(name), arguments=raw) if isinstance(raw, str) else raw
    if form < 0.9:
        return Action(text=rng.choice(["", "I think I'll buy it", "<tool_call>", "\ud800", HUGE[:70_000]]))
    return rng.choice([{"arguments": {}}, {"name": None}, [], 42, None, b"bytes", {"name": "goto", "arguments": 5}])
