import json

import pytest
from pydantic import Field

from rowgym.errors import ToolDefinitionError
from rowgym.rows import Action, ToolCall
from rowgym.tools import BadCall, ParsedCall, ToolArgs, collect_tools, extract_tool_call, parse_action, tool


class AddArgs(ToolArgs):
    a: int = Field(description="first")
    b: int = 0


class Calc:
    @tool
    async def add(self, args: AddArgs) -> str:
        """Add two numbers."""
        return str(args.a + args.b)


TOOLS = {t.name: t for t in collect_tools(Calc)}


def test_schema_is_openai_function_format():
    s = TOOLS["add"].schema()
    assert s["type"] == "function"
    assert s["function"]["description"] == "Add two numbers."
    params = s["function"]["parameters"]
    assert params["required"] == ["a"] and params["additionalProperties"] is False
    assert params["properties"]["a"] == {"type": "integer", "description": "first"}


@pytest.mark.parametrize("action", [
    {"name": "add", "arguments": {"a": 1}},
    {"name": "add", "arguments": '{"a": 1, "b": 2}'},
    ToolCall(name="add", arguments='{"a": 1}'),
    Action(text='thinking... <tool_call>{"name": "add", "arguments": {"a": 3}}</tool_call>'),
    '{"name": "add", "arguments": {"a": 1}}',
])
def test_valid_calls_parse(action):
    parsed = parse_action(action, TOOLS)
    assert isinstance(parsed, ParsedCall), parsed
    assert parsed.args.a in (1, 3)


@pytest.mark.parametrize("action,kind", [
    ({"name": "sub", "arguments": {}}, "unknown_tool"),
    ({"name": "add", "arguments": '{"a": '}, "bad_json"),
    ({"name": "add", "arguments": "[1]"}, "invalid_arguments"),
    ({"name": "add", "arguments": {"a": "x"}}, "invalid_arguments"),
    ({"name": "add", "arguments": {"a": 1, "c": 2}}, "invalid_arguments"),
    ({"name": "add", "arguments": {}}, "invalid_arguments"),
    ({"arguments": {}}, "bad_json"),
    ("just words", "no_tool_call"),
    ("<tool_call>{oops}</tool_call>", "bad_json"),
    ('<tool_call>["add"]</tool_call>', "no_tool_call"),
    (12345, "no_tool_call"),
])
def test_malformed_calls_are_bad_calls_with_a_message(action, kind):
    parsed = parse_action(action, TOOLS)
    assert isinstance(parsed, BadCall)
    assert parsed.kind == kind and parsed.message


def test_unknown_tool_message_lists_the_tools():
    assert "add" in parse_action({"name": "nope"}, TOOLS).message


def test_extract_tool_call_from_hermes_text():
    call = extract_tool_call('<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>')
    assert call.name == "add" and json.loads(call.arguments) == {"a": 1}


def test_tool_definition_errors_are_raised_for_env_bugs():
    class NoDoc:
        @tool
        async def f(self, args: AddArgs) -> str:
            return ""

    with pytest.raises(ToolDefinitionError, match="docstring"):
        collect_tools(NoDoc)
    with pytest.raises(ToolDefinitionError, match="async"):
        tool(lambda self, args: "")
