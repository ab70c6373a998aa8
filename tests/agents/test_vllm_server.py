"""The vLLM policy server on the tiny model: token-id prompts, token ids and logprobs come back intact.

Needs the vLLM venv (scripts/setup_vllm.sh) and the train extra (to build the tiny
model). Startup takes about a minute on 2 CPU cores, so one server (tests/vllm_fixtures.py) serves the session.
"""

import json
import math
import sys
import urllib.error
import urllib.request

import pytest

from rowgym.agents.serving import PolicyServerError, ServerConfig, VLLMServer, free_port, start_vllm_server

TOOLS = [{
    "type": "function",
    "function": {
        "name": "book_flight",
        "description": "Book a flight.",
        "parameters": {"type": "object", "properties": {"flight_id": {"type": "string"}}, "required": ["flight_id"]},
    },
}]


def _post(base_url, path, body):
    req = urllib.request.Request(f"{base_url}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def test_startup_failure_reports_log_tail(tmp_path):
    """A server that dies at startup raises at once with its log, not after the timeout."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    # The main venv has no vllm, so `python -m vllm...` exits with ModuleNotFoundError.
    srv = VLLMServer(ServerConfig(model_dir=tmp_path / "m", port=free_port(), python=sys.executable,
                                  log_path=tmp_path / "log", startup_timeout=60))
    with pytest.raises(PolicyServerError, match="No module named 'vllm'"):
        srv.start()


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyServerError, match="not a model directory"):
        start_vllm_server(tmp_path / "nope", port=free_port(), python=sys.executable)


@pytest.fixture(scope="module")
def server(vllm_server):
    """The session's shared vLLM server (tests/vllm_fixtures.py)."""
    if not vllm_server.alive():  # a restart test elsewhere left it down: bring it back
        vllm_server.start()
    return vllm_server


@pytest.fixture(scope="module")
def tokenizer(server):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(server.config.model_dir)


@pytest.mark.vllm
def test_token_id_prompt_round_trip(server, tokenizer):
    """Ids sent to /v1/completions come back as prompt_token_ids; a second turn appends ids, never text."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Book FL1"}], tools=TOOLS,
                                           add_generation_prompt=True, return_dict=True)["input_ids"]
    body = {"model": server.config.served_model_name, "max_tokens": 8, "temperature": 1.0, "seed": 0,
            "return_token_ids": True, "logprobs": 1}
    for turn in range(2):
        out = _post(server.base_url, "/completions", {**body, "prompt": prompt})
        choice = out["choices"][0]
        assert choice["prompt_token_ids"] == prompt  # per choice on /v1/completions
        completion = choice["token_ids"]
        lps = choice["logprobs"]["token_logprobs"]
        assert len(completion) == len(lps) == len(choice["logprobs"]["tokens"]) == out["usage"]["completion_tokens"]
        assert all(math.isfinite(x) and x <= 0 for x in lps)
        obs = tokenizer.encode(f"<|im_end|>\n<|im_start|>user\n<tool_response>\nturn {turn}\n</tool_response>"
                               "<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
        prompt = prompt + completion + obs


@pytest.mark.vllm
def test_chat_with_tools_returns_ids_and_logprobs(server, tokenizer):
    messages = [{"role": "user", "content": "Book FL1"}]
    out = _post(server.base_url, "/chat/completions", {
        "model": server.config.served_model_name, "messages": messages, "tools": TOOLS, "max_tokens": 8,
        "seed": 0, "return_token_ids": True, "logprobs": True})
    local = tokenizer.apply_chat_template(messages, tools=TOOLS, add_generation_prompt=True,
                                          return_dict=True)["input_ids"]
    assert out["prompt_token_ids"] == local  # top level on /v1/chat/completions; same template as TRL
    choice = out["choices"][0]
    assert len(choice["token_ids"]) == len(choice["logprobs"]["content"]) == out["usage"]["completion_tokens"]


@pytest.mark.vllm
def test_hermes_parser_turns_tool_call_text_into_tool_calls(server):
    """Force the text of a tool call with a regex; the hermes parser must return it as tool_calls."""
    regex = r'<tool_call>\n\{"name": "book_flight", "arguments": \{"flight_id": "FL1"\}\}\n</tool_call>'
    out = _post(server.base_url, "/chat/completions", {
        "model": server.config.served_model_name, "messages": [{"role": "user", "content": "Book FL1"}],
        "tools": TOOLS, "max_tokens": 64, "return_token_ids": True, "logprobs": True,
        "structured_outputs": {"regex": regex}})
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]["function"]
    assert call["name"] == "book_flight" and json.loads(call["arguments"]) == {"flight_id": "FL1"}
    assert len(choice["token_ids"]) == len(choice["logprobs"]["content"])


@pytest.mark.vllm
def test_bad_token_id_is_a_400(server):
    with pytest.raises(urllib.error.HTTPError) as e:
        _post(server.base_url, "/completions", {"model": server.config.served_model_name,
                                                 "prompt": [1, 10**6], "max_tokens": 1})
    assert e.value.code == 400
