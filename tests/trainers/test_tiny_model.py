"""The tiny model builder: determinism, cache, chat template, TRL compatibility, forward pass."""

import json

import pytest

pytestmark = pytest.mark.train
pytest.importorskip("trl", reason="needs the train extra (scripts/setup_train.sh)")

from rowgym.trainers.tiny_model import (  # noqa: E402
    BUILD_INFO_FILE,
    TinyModelConfig,
    build_tiny_model,
    default_model_dir,
)

TOOLS = [{
    "type": "function",
    "function": {
        "name": "book_flight",
        "description": "Book a flight.",
        "parameters": {
            "type": "object",
            "properties": {"flight_id": {"type": "string"}, "seats": {"type": "integer"}},
            "required": ["flight_id"],
        },
    },
}]
MESSAGES = [
    {"role": "user", "content": "Book FL123 for two."},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "book_flight", "arguments": {"flight_id": "FL123", "seats": 2}}}
    ]},
    {"role": "tool", "name": "book_flight", "content": '{"status": "confirmed"}'},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", seed=0)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_same_seed_gives_identical_files(model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0)
    assert _files(again) == _files(model_dir)


def test_seed_changes_weights_not_tokenizer(model_dir, tmp_path):
    other = _files(build_tiny_model(tmp_path / "other", seed=1))
    same = _files(model_dir)
    assert other["model.safetensors"] != same["model.safetensors"]
    assert other["tokenizer.json"] == same["tokenizer.json"]


def test_cache_hit_skips_rebuild_and_param_change_rebuilds(model_dir, tmp_path):
    d = build_tiny_model(tmp_path / "c", seed=0)
    mtime = (d / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(d, seed=0) == d
    assert (d / "model.safetensors").stat().st_mtime_ns == mtime
    build_tiny_model(d, config=TinyModelConfig(seed=0, intermediate_size=128))
    info = json.loads((d / BUILD_INFO_FILE).read_text())
    assert info["params"]["intermediate_size"] == 128


def test_llama_network_has_the_same_vocabulary_and_template(model_dir, tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = build_tiny_model(tmp_path / "llama", config=TinyModelConfig(architecture="llama", num_hidden_layers=3))
    model = AutoModelForCausalLM.from_pretrained(d)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 3
    assert not any("q_norm" in n for n, _ in model.named_parameters())  # what sets it apart from qwen3
    assert _files(d)["tokenizer.json"] == _files(model_dir)["tokenizer.json"]
    ids = AutoTokenizer.from_pretrained(d).apply_chat_template(MESSAGES, tools=TOOLS, tokenize=True, return_dict=True)
    assert ids["input_ids"] == tokenizer.apply_chat_template(MESSAGES, tools=TOOLS, tokenize=True,
                                                             return_dict=True)["input_ids"]
    with torch.no_grad():
        assert model(input_ids=torch.tensor([ids["input_ids"]])).logits.shape[-1] == len(tokenizer)
    with pytest.raises(ValueError, match="architecture must be one of"):
        build_tiny_model(tmp_path / "x", config=TinyModelConfig(architecture="gpt2"))


def test_default_dir_honours_rowgym_cache(monkeypatch, tmp_path):
    from rowgym.agents.serving import default_model_dir as serving_default

    monkeypatch.setenv("ROWGYM_CACHE", str(tmp_path))
    assert default_model_dir() == tmp_path / "models" / "tiny-qwen3"
    assert serving_default() == default_model_dir()


def test_special_tokens(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    for tok in ("<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<tool_response>",
                "</tool_response>", "<think>", "</think>", "<|endoftext|>"):
        assert len(tokenizer.encode(tok, add_special_tokens=False)) == 1, tok
    assert 600 <= len(tokenizer) <= 2100


def test_chat_template_renders_tool_calls_and_round_trips(tokenizer):
    text = tokenizer.apply_chat_template(MESSAGES, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    assert '<tool_call>\n{"name": "book_flight", "arguments": {"flight_id": "FL123", "seats": 2}}\n</tool_call>' in text
    assert "<tool_response>\n{\"status\": \"confirmed\"}\n</tool_response>" in text
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in text  # the schema is in the system prompt
    assert text.endswith("<|im_start|>assistant\n")
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text  # byte-level BPE: lossless
    assert len(ids) < len(text) / 2.5  # the BPE actually merges JSON and words


def test_trl_recognises_the_template(tokenizer):
    from trl.chat_template_utils import (
        add_response_schema,
        get_training_chat_template,
        qwen3_training_chat_template,
    )

    # Both raise on templates TRL does not know ("Unrecognized chat template").
    assert get_training_chat_template(tokenizer) == qwen3_training_chat_template
    tok = add_response_schema(tokenizer)
    parsed = tok.parse_response('<tool_call>\n{"name": "book_flight", "arguments": {"flight_id": "FL1"}}\n</tool_call><|im_end|>',
                                prefix="<|im_start|>assistant\n")
    assert parsed["tool_calls"][0]["function"] == {"name": "book_flight", "arguments": {"flight_id": "FL1"}}


def test_forward_pass_and_generate(model_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.config.head_dim == 64  # vLLM's CPU attention rejects other sizes
    ids = tokenizer.apply_chat_template(MESSAGES, tools=TOOLS, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (1, ids.shape[1], len(tokenizer))  # (B, T, V)
    assert torch.isfinite(out.loss)
    gen = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] <= ids.shape[1] + 5
