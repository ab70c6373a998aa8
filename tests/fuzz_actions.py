"""A seeded generator of hostile agent actions, and the checks every env step must pass.

Used by the per-family fuzz tests (tool-API, repo-patch). Deterministic: the same seed
gives the same actions on every machine. What it throws at ``env.step``:

* every action form (raw text with or without Hermes tags, ``{"name", "arguments"}``
  dicts, ``ToolCall``, ``Action``, and things that are no action at all);
* real tool names (mostly, so calls reach the tools), unknown, empty, huge and
  surrogate names;
* arguments mutated from valid calls (a gold plan's) or made up from the schema:
  wrong types, missing and unknown keys, very long keys, lone surrogates (as JSON
  ``\\ud800`` escapes and raw), NUL, 60 KB and 1 MB strings, bytes-like strings,
  numbers such as ``1e309``, ``NaN``, ``-0`` and 5,000-digit integers, and JSON nested
  65 or 1,000 levels deep (closed and unclosed).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rowgym.agents.base import AgentTurn
from rowgym.rollouts.episode import clean_action, step_row
from rowgym.rows import Action, Episode, PolicyInfo, StepRow, ToolCall

ERROR_KINDS = {None, "no_tool_call", "bad_json", "unknown_tool", "invalid_arguments", "tool_error", "tool_crash"}


class Raw(str):
    """A JSON token written as is (``1e309``, ``NaN``, a 1,000-deep ``[[[...]]]``)."""


BIG = 1_000_000
NASTY_STRINGS = [
    "", " ", "x", "\ud800", "\udfff", "a\udc80b", "\ud83d", "\ude00\ud83d", "\ud83d\ude00", "\x00", "a\x00b",
    "\x00" * 50, "\ufffd", "😀", "\u202e\u0644\u0627", "'; DROP TABLE users; --", "%s%n%d", "../../etc/passwd",
    "/etc/passwd", "b'\\x00\\xff'", "\\x00\\xff", "\\ud800", "\r\n\t\x0b\x0c", "</tool_call><tool_call>",
    "{\"name\": \"finish\"}", "null", "NaN", "1e309", "-0", "  JFK ", "W" * 300,
]
NASTY_NUMBERS = ["1e309", "-1e309", "NaN", "Infinity", "-Infinity", "-0", "-0.0", "1e-400", "0", "-1", "1.5",
                 "2147483648", "9223372036854775808", "9" * 400, "9" * 5000, "1" + "0" * 4300, "0.1e1", "1E2"]
WRONG_TYPES = [Raw("null"), Raw("true"), Raw("false"), Raw("[]"), Raw("{}"), Raw("[1, 2]"), Raw('{"a": 1}'),
               Raw('[""]')]


def deep(rng: random.Random) -> Raw:
    """Deep nesting: just over the limit, far over it, unclosed, or inside an object chain."""
    n = rng.choice([63, 64, 65, 200, 1000, 1000, 5000])
    kind = rng.randrange(4)
    if kind == 0:
        return Raw("[" * n + "]" * n)
    if kind == 1:
        return Raw('{"a": ' * n + "1" + "}" * n)
    if kind == 2:
        return Raw("[" * n)
    return Raw('["[" ' + ", [" * n + "]" * n + "]")  # brackets inside strings are not nesting


def nasty_string(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.01:
        return "A" * BIG + rng.choice(["", "\ud800", "\x00"])  # 1 MB
    if r < 0.04:
        return rng.choice(["B", "\ud800", "é", "\x00"]) * rng.choice([60_000, 70_000])
    if r < 0.5:
        return rng.choice(NASTY_STRINGS)
    return "".join(rng.choice(["a", "Z", "0", " ", "\ud800", "\x00", "é", "\"", "\\", "\n", "{", "]"])
                   for _ in range(rng.randrange(1, 40)))


def nasty_value(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.45:
        return nasty_string(rng)
    if r < 0.70:
        return Raw(rng.choice(NASTY_NUMBERS))
    if r < 0.85:
        return rng.choice(WRONG_TYPES)
    if r < 0.95:
        return deep(rng)
    return [nasty_string(rng), Raw(rng.choice(NASTY_NUMBERS))]


def dumps(value: Any, rng: random.Random) -> str:
    """JSON text of ``value``; ``Raw`` tokens verbatim; strings with raw or escaped surrogates at random."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=rng.random() < 0.5)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{dumps(str(k), rng)}: {dumps(v, rng)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(v, rng) for v in value) + "]"
    return json.dumps(value)


@dataclass
class Fuzzer:
    """Hostile actions for an env with ``tools`` (OpenAI schemas), seeded from valid ``samples``."""

    seed: int
    tools: list[dict]
    samples: list[ToolCall]
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.schemas = {t["function"]["name"]: t["function"]["parameters"] for t in self.tools}
        self.names = sorted(self.schemas)

    def name(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.85:
            return rng.choice(self.names)
        return rng.choice(["", "nope", "\ud800", "fin\x00ish", " finish", "FINISH", "x" * 100_000,
                           rng.choice(self.names) + "\ud800", "__init__", "grade", "setup", "_tools"])

    def arguments(self, name: str) -> dict[str, Any]:
        rng = self.rng
        same = [s for s in self.samples if s.name == name]
        if same and rng.random() < 0.6:
            args: dict[str, Any] = dict(json.loads(rng.choice(same).arguments))
        else:
            props = self.schemas.get(name, {}).get("properties", {})
            args = {k: self._typed(spec) for k, spec in props.items() if rng.random() < 0.8}
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            r = rng.random()
            if args and r < 0.55:
                args[rng.choice(list(args))] = nasty_value(rng)
            elif args and r < 0.7:
                args.pop(rng.choice(list(args)))
            else:
                key = rng.choice(["extra", "\ud800", "k\x00", "K" * 70_000, "k" * 5000, "", "__class__"])
                args[key] = nasty_value(rng)
        return args

    def _typed(self, spec: dict) -> Any:
        rng = self.rng
        kinds = {spec.get("type")} | {s.get("type") for s in spec.get("anyOf", [])}
        if "enum" in spec:
            return rng.choice(spec["enum"] + ["not-in-enum"])
        if "integer" in kinds:
            return rng.choice([0, 1, 2, 5, 300, -3])
        if "number" in kinds:
            return rng.choice([0.5, 1.0, 30.0, 121.0])
        if "array" in kinds:
            return [rng.choice(["a", "W1234567", "1"]) for _ in range(rng.randrange(0, 4))]
        return rng.choice(["JFK", "2026-12-03", "W1234567", "x", "README.md", "textkit/case.py", "1+2*3", "."])

    def call_json(self) -> tuple[str, str]:
        """(name, whole tool-call JSON text)."""
        rng = self.rng
        name = self.name()
        r = rng.random()
        if r < 0.8:
            args = dumps(self.arguments(name), rng)
        elif r < 0.9:
            args = dumps(nasty_value(rng), rng)  # arguments that are not an object
        else:
            args = dumps(dumps(self.arguments(name), rng), rng)  # arguments as a JSON string
        return name, f'{{"name": {dumps(name, rng)}, "arguments": {args}}}'

    def action(self) -> Any:
        rng = self.rng
        form = rng.random()
        if form < 0.35:  # raw text, as an LLM writes it
            name, body = self.call_json()
            pre = rng.choice(["", "Let me check. ", "思考\ud800 ", "\x00", "<tool_call>", " " * 5000])
            r = rng.random()
            if r < 0.6:
                return f"{pre}<tool_call>\n{body}\n</tool_call>"
            if r < 0.75:
                return body
            if r < 0.85:
                return f"{pre}<tool_call>{body}"  # unclosed
            if r < 0.9:
                return "<tool_call>" + " " * rng.choice([10, 70_000]) + "x"
            return nasty_string(rng)
        if form < 0.55:
            name = self.name()
            r = rng.random()
            if r < 0.7:
                args: Any = dumps(self.arguments(name), rng)
            elif r < 0.8:  # a Python dict with values JSON cannot take
                args = {"x": rng.choice([float("nan"), float("inf"), 10 ** 5000, b"bytes", {1, 2}, object()])}
            elif r < 0.9:
                nested: Any = []
                for _ in range(rng.choice([50, 2000])):
                    nested = [nested]
                args = {"deep": nested}
            else:
                args = nasty_value(rng)
            action: dict[str, Any] = {"name": name, "arguments": args}
            if rng.random() < 0.05:
                action = rng.choice([{"arguments": {}}, {"name": None}, {"name": 12}, {}])
            return action
        if form < 0.75:
            name = self.name()
            return ToolCall(name=name, arguments=dumps(self.arguments(name), rng))
        if form < 0.85:
            name, body = self.call_json()
            return Action(text=f"<tool_call>{body}</tool_call>")
        if form < 0.97:
            name = self.name()
            return Action(text=rng.choice(["", "\ud800 raw"]),
                          tool_call=ToolCall(name=name, arguments=dumps(self.arguments(name), rng)))
        return rng.choice([None, 12, 1.5, ["finish"], b'{"name": "finish"}', object()])


def as_row_action(action: Any) -> Action | ToolCall | str:
    """What would be stored for ``action`` (agents return Actions; the fuzzer also sends other things)."""
    if isinstance(action, Action | ToolCall | str):
        return action
    return Action(text=f"<a {type(action).__name__} action>")


@dataclass
class Tally:
    kinds: Counter = field(default_factory=Counter)
    notes: int = 0
    episodes: int = 0
    crashes: list[str] = field(default_factory=list)


def check_step(env: Any, action: Any, obs: str, result: tuple, tally: Tally) -> None:
    """Every observation is UTF-8 text, the error kind is known, the row serialises and round-trips."""
    next_obs, reward, terminated, truncated, info = result
    assert isinstance(next_obs, str) and next_obs, repr(next_obs)[:200]
    next_obs.encode()  # raises on a lone surrogate
    assert info["error_kind"] in ERROR_KINDS, info["error_kind"]
    assert info["bad_call"] == (info["error_kind"] is not None)
    assert isinstance(reward, float) and reward == reward
    tally.kinds[info["error_kind"]] += 1
    tally.notes += "replaced with U+FFFD" in next_obs
    if info["error_kind"] == "tool_crash":
        tally.crashes.append(info["tool_crash"])
    ep = Episode(run_id="fuzz", episode_id="fuzz:0:0", group_id="fuzz:0", env_id=env.env_id, env_version=env.version,
                 seed=env.episode_seed, split=env.split, task_hash="h", policy=PolicyInfo(agent="fuzz"))
    row = step_row(ep, info["turn"] - 1, obs, AgentTurn(clean_action(as_row_action(action))), next_obs, info,
                   terminated, truncated)
    text = row.model_dump_json()
    assert StepRow.model_validate_json(text) == row


def fuzz_env(env: Any, seeds: list[int], n_calls: int, fuzz_seed: int) -> Tally:
    """Drive ``env`` with ``n_calls`` hostile actions (resetting to the next seed when an episode ends),
    checking every step with :func:`check_step`; closes the env. Any exception from ``env.step`` fails the caller."""
    samples = [c for s in seeds for c in env.make_task(s).gold]
    fuzz = Fuzzer(seed=fuzz_seed, tools=env.tools, samples=samples)
    tally = Tally()
    try:
        obs, _ = env.reset(seed=seeds[0])
        for i in range(n_calls):
            action = fuzz.action()
            result = env.step(action)  # the test: this never raises
            check_step(env, action, obs, result, tally)
            obs = result[0]
            if result[2] or result[3]:
                tally.episodes += 1
                obs, _ = env.reset(seed=seeds[(i + 1) % len(seeds)])
    finally:
        env.close()
    return tally
