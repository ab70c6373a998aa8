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


# --- bounded agent input -------------------------------------------------------------

from rowgym.tools import MAX_ARGUMENTS_CHARS, MAX_JSON_DEPTH, clean_text, json_depth_exceeds  # noqa: E402


@pytest.mark.parametrize("text, deep", [
    ("[" * 64 + "]" * 64, False),
    ("[" * 65 + "]" * 65, True),
    ("[" * 1000, True),                                      # unclosed: still refused before decoding
    ('{"a": "' + "[" * 1000 + '"}', False),                  # brackets inside a string are text
    ('["\\"' + "[" * 100 + '"]', False),                     # an escaped quote does not end the string
    ('["\\\\"' + ", [" * 100 + "]" * 100 + "]", True),       # an escaped backslash does
    ("[]" * 10_000, False),                                  # many, but flat
])
def test_json_depth_is_scanned_without_recursion(text, deep):
    assert json_depth_exceeds(text) is deep


@pytest.mark.parametrize("action, kind, words", [
    ('{"name": "add", "arguments": ' + "[" * 1000 + "]" * 1000 + "}", "bad_json", "nested too deeply"),
    ({"name": "add", "arguments": "[" * 1000 + "]" * 1000}, "bad_json", "nested too deeply"),
    ({"name": "add", "arguments": '{"a": ' + "9" * 5000 + "}"}, "bad_json", "cannot be decoded"),
    ({"name": "add", "arguments": {"a": 10 ** 5000}}, "bad_json", "needs a name and JSON arguments"),
    ({"name": "add", "arguments": {"a": {1, 2}}}, "bad_json", "needs a name and JSON arguments"),
    ({"name": "add", "arguments": '{"a": "' + "x" * MAX_ARGUMENTS_CHARS + '"}'}, "bad_json", "too long"),
    ("x" * 70_000, "no_tool_call", "too long"),
    ({"name": "x" * 100_000}, "unknown_tool", "(100,000 characters)"),
    ({"name": "add", "arguments": {"a": 1, "k" * 10_000: 1}}, "invalid_arguments", "(10,000 characters)"),
    ({"name": "add", "arguments": '{"a": NaN}'}, "invalid_arguments", "a:"),
    ({"name": "add", "arguments": '{"a": 1e309}'}, "invalid_arguments", "a:"),
])
def test_oversized_deep_and_odd_input_is_a_bad_call(action, kind, words):
    parsed = parse_action(action, TOOLS)
    assert isinstance(parsed, BadCall) and parsed.kind == kind and words in parsed.message, parsed
    assert len(parsed.message) < 1000


def test_a_deep_python_dict_from_an_agent_is_a_bad_call():
    nested: list = []
    for _ in range(5000):
        nested = [nested]
    assert parse_action({"name": "add", "arguments": {"a": nested}}, TOOLS).kind == "bad_json"


def test_an_unclosed_tag_runs_to_the_end_of_the_text():
    assert parse_action("<tool_call>" + " " * 60_000 + "x", TOOLS).kind == "no_tool_call"
    parsed = parse_action('thinking <tool_call> {"name": "add", "arguments": {"a": 1}} ', TOOLS)
    assert isinstance(parsed, ParsedCall) and parsed.args.a == 1


class TextArgs(ToolArgs):
    text: str


class Echo:
    @tool
    async def echo(self, args: TextArgs) -> str:
        """Echo."""
        return args.text


ECHO = {t.name: t for t in collect_tools(Echo)}


@pytest.mark.parametrize("arguments, text, replaced", [
    ('{"text": "a\\ud800b"}', "a\ufffdb", 1),              # an escape in ASCII text
    ('{"text": "a\ud800b"}', "a\ufffdb", 1),               # a raw lone surrogate
    ('{"text": "\\ud83d\\ude00"}', "😀", 0),               # a valid pair is one character, untouched
    ('{"text": "a\\u0000b\\u0000"}', "a\ufffdb\ufffd", 2),  # NUL
    ('{"text": "caf\\u00e9 \ufffd"}', "café \ufffd", 0),   # U+FFFD the agent wrote is not counted
])
def test_arguments_are_scrubbed_before_the_tool_sees_them(arguments, text, replaced):
    parsed = parse_action(ToolCall(name="echo", arguments=arguments), ECHO)
    assert isinstance(parsed, ParsedCall), parsed
    assert parsed.args.text == text and parsed.replaced == replaced
    parsed.call.model_dump_json()  # the call kept with the step serialises


def test_clean_text_fast_path_returns_the_same_object():
    s = "plain ascii"
    assert clean_text(s) is s
    u = "café 😀"
    assert clean_text(u) is u
    assert clean_text("\udc80x\ud800") == "\ufffdx\ufffd"
    assert MAX_JSON_DEPTH == 64
