"""Gymnasium spaces for text observations and tool-call actions.

Gymnasium's ``Text`` space restricts the character set, which does not fit free
text from tools and web pages; these spaces accept any ``str`` and any tool call,
and ``sample()`` draws random (sometimes malformed) tool calls from the tool schemas,
which is exactly what a random agent and a fuzz test need.
"""

from __future__ import annotations

import functools
import json
import string
from typing import Any

import numpy as np
from gymnasium.spaces import Space

from rowgym.rows import Action, ToolCall
from rowgym.tools import Tool


class TextSpace(Space[str]):
    """Any unicode string (observations)."""

    def __init__(self, max_length: int = 1_000_000, seed: int | None = None):
        self.max_length = max_length
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        n = int(self.np_random.integers(0, 40))
        return "".join(self.np_random.choice(list(string.printable), size=n))

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return "TextSpace()"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, TextSpace) and other.max_length == self.max_length


class ToolCallSpace(Space[Action]):
    """Actions that call one of ``tools``; ``sample()`` fills arguments at random.

    With probability ``malformed_p`` a sample is deliberately malformed (unknown tool,
    broken JSON, missing or extra arguments, plain text) so that random agents also
    exercise the bad-call path.
    """

    def __init__(self, tools: list[Tool], malformed_p: float = 0.2, seed: int | None = None):
        self.tools = tools
        self.malformed_p = malformed_p
        self._params = [(t.name, _args_schema(t.args_model)) for t in tools]
        super().__init__(shape=None, dtype=None, seed=seed)

    @classmethod
    def from_schemas(cls, schemas: list[dict[str, Any]], malformed_p: float = 0.2,
                     seed: int | None = None) -> ToolCallSpace:
        """The same space built from OpenAI-style function schemas (what an agent is given)."""
        space = cls([], malformed_p, seed)
        space._params = [(s["function"]["name"], s["function"].get("parameters", {})) for s in schemas]
        return space

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        return isinstance(x, Action | ToolCall | str | dict)

    def __repr__(self) -> str:
        return f"ToolCallSpace({[name for name, _ in self._params]})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ToolCallSpace) and other._params == self._params

    def sample(self, mask: Any = None, probability: Any = None) -> Action:
        rng = self.np_random
        name, params = self._params[int(rng.integers(len(self._params)))]
        args = {k: _random_value(v, rng) for k, v in params.get("properties", {}).items()}
        if rng.random() >= self.malformed_p:
            return Action(tool_call=ToolCall(name=name, arguments=json.dumps(args)))
        kind = int(rng.integers(5))
        if kind == 0:
            return Action(tool_call=ToolCall(name=name + "_x", arguments=json.dumps(args)))
        if kind == 1:
            return Action(tool_call=ToolCall(name=name, arguments=json.dumps(args)[:-1]))
        if kind == 2:
            return Action(tool_call=ToolCall(name=name, arguments=json.dumps({**args, "bogus": 1})))
        if kind == 3:
            return Action(text="I am not sure what to do.")
        return Action(tool_call=ToolCall(name=name, arguments=json.dumps(list(args.values()))))


@functools.cache
def _args_schema(model: type) -> dict[str, Any]:
    """A tool's argument schema, made once per model (an env is built per rollout worker; only read)."""
    return model.model_json_schema()


def _random_value(schema: dict[str, Any], rng: np.random.Generator) -> Any:
    """A random JSON value roughly of the schema's type."""
    if "enum" in schema:
        return schema["enum"][int(rng.integers(len(schema["enum"])))]
    if "anyOf" in schema:
        return _random_value(schema["anyOf"][int(rng.integers(len(schema["anyOf"])))], rng)
    kind = schema.get("type", "string")
    if kind == "integer":
        return int(rng.integers(-5, 1000))
    if kind == "number":
        return float(np.round(rng.uniform(-10, 1000), 2))
    if kind == "boolean":
        return bool(rng.integers(2))
    if kind == "array":
        return [_random_value(schema.get("items", {}), rng) for _ in range(int(rng.integers(0, 3)))]
    if kind == "null":
        return None
    if kind == "object":
        return {}
    alphabet = list(string.ascii_letters + string.digits + "#_ -@.")
    return "".join(rng.choice(alphabet, size=int(rng.integers(0, 12))))
