"""Generic copy pretraining: the corpus is what it claims (no env content), and training on it learns to copy."""

import json
import re

import pytest

pytestmark = pytest.mark.train
pytest.importorskip("trl", reason="needs the train extra (scripts/setup_train.sh)")

from rowgym.trainers.pretrain import (  # noqa: E402
    CATEGORIES,
    INFO_FILE,
    PretrainConfig,
    SlotFillingCorpus,
    build_pretrained_tiny_model,
    pretrain,
)


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def tokenizer(base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base)


def test_corpus_answers_copy_every_value_from_the_request(tokenizer):
    corpus = SlotFillingCorpus(tokenizer, seed=3)
    for _ in range(200):
        prompt, answer = corpus.example()
        user = prompt.split("<|im_start|>user\n")[1].split("<|im_end|>")[0].lower()
        call = json.loads(re.search(r"<tool_call>\n(.*)\n</tool_call>", answer, re.S).group(1))
        assert set(call) == {"name", "arguments"} and 1 <= len(call["arguments"]) <= 3
        for key, value in call["arguments"].items():
            if isinstance(value, bool):
                continue  # said as on/off, yes/no, ...
            assert re.search(rf"\b{re.escape(str(value))}\b", user), (key, value, user)
            if isinstance(value, str):
                assert value in CATEGORIES[key]


def test_corpus_holds_no_env_tool_or_instruction(tokenizer):
    import rowgym

    env = rowgym.make("rowgym/ToolAPI-Home-v0")
    tool_names = {t["function"]["name"] for t in env.tools}
    env.close()
    corpus = SlotFillingCorpus(tokenizer, seed=0)
    texts = [" ".join(corpus.example()) for _ in range(300)]
    assert not any(f'"name": "{n}"' in t for t in texts for n in tool_names)
    assert not any(re.search(r"\b(thermostat|lights?|unlock)\b", t) for t in texts)


def test_same_word_same_token_in_text_and_json(tokenizer):
    # the tokenizer splits words from the character before them, so a copied word keeps its id
    for word in ("kitchen", "front", "study"):
        in_text = tokenizer.encode(f"Turn on the {word} lights.", add_special_tokens=False)
        in_json = tokenizer.encode(f'{{"room": "{word}"}}', add_special_tokens=False)
        word_ids = tokenizer.encode(word, add_special_tokens=False)
        assert _contains(in_text, word_ids) and _contains(in_json, word_ids)


def _contains(seq, sub):
    return any(seq[i:i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def test_pretraining_lowers_the_answer_loss_and_is_cached(base, tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    losses = pretrain(model, tokenizer, PretrainConfig(steps=40, batch_size=8, warmup_steps=5))
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5

    cfg = PretrainConfig(steps=3, batch_size=2, warmup_steps=1)
    out = build_pretrained_tiny_model(tmp_path / "p", cfg, base=base)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert build_pretrained_tiny_model(tmp_path / "p", cfg, base=base) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not retrained
    assert json.loads((out / INFO_FILE).read_text())["pretrain"]["steps"] == 3
    AutoModelForCausalLM.from_pretrained(out)  # loadable


def test_cli_pretrain_tiny(base, tmp_path):
    from typer.testing import CliRunner

    from rowgym.cli import app

    bad = CliRunner().invoke(app, ["model", "pretrain-tiny", "--out", str(tmp_path / "x"), "--base", str(tmp_path)])
    assert bad.exit_code != 0 and "not a model directory" in bad.output
    ok = CliRunner().invoke(app, ["model", "pretrain-tiny", "--out", str(tmp_path / "p"), "--base", str(base),
                                  "--steps", "2"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "p" / INFO_FILE).read_text())["pretrain"]["steps"] == 2


def test_default_corpus_stream_is_unchanged():
    # make demo's published numbers were produced with this exact stream (ids=0): a change here must be
    # a deliberate one that reruns the demo. The digest is of the stream before the id examples existed.
    import hashlib

    from rowgym.trainers.pretrain import corpus_texts

    assert hashlib.sha256("\n".join(corpus_texts(500, seed=0)).encode()).hexdigest()[:16] == "045451911e683e5d"


def test_id_examples_copy_ids_verbatim_from_request_or_tool_response(tokenizer):
    corpus = SlotFillingCorpus(tokenizer, seed=5, ids=1.0)
    from_response = long_context = 0
    for _ in range(300):
        prompt, answer = corpus.example()
        final = json.loads(re.search(r"<tool_call>\n(.*)\n</tool_call>", answer, re.S).group(1))
        assert 1 <= len(final["arguments"]) <= 3
        context = prompt.split("<|im_end|>", 1)[1]  # everything after the system text
        request = context.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
        request = request[:1].lower() + request[1:]  # the request's first letter is capitalised
        for key, value in final["arguments"].items():
            assert isinstance(value, str) and value in context, (key, value)  # case and digits kept
            response = re.search(r"<tool_response>\n(.*)\n</tool_response>", context, re.S)
            if response and json.loads(response.group(1)).get(key) == value:
                from_response += 1
            else:
                assert f"{key.replace('_', ' ')} {value}" in request  # said after its cue
        distractors = re.findall(r"\b(?:[A-Z]{1,2}\d{1,6}|\w+_\w+_\d{1,6}|\d{4}-\d\d-\d\d)\b", context)
        assert set(final["arguments"].values()) <= set(distractors)
        long_context += len(tokenizer.encode(prompt)) > 500
    assert from_response > 50 and long_context > 50


def test_micro_batches_give_the_full_batch_loss(base, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    runs = []
    for micro in (0, 4):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        runs.append(pretrain(model, tokenizer, PretrainConfig(steps=3, batch_size=8, warmup_steps=1, ids=0.5,
                                                              micro_batch=micro)))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-4)  # same weights, same batch: same loss
    assert runs[0][2] == pytest.approx(runs[1][2], rel=1e-2)  # and the same gradient steps after it


def test_id_examples_name_no_tool_or_field_of_any_env(tokenizer):
    import rowgym

    names = set()
    for env_id in ("rowgym/ToolAPI-Airline-v0", "rowgym/ToolAPI-Retail-v0", "rowgym/ToolAPI-Home-v0"):
        env = rowgym.make(env_id)
        for tool in env.tools:
            fields = tool["function"]["parameters"].get("properties", {})
            names |= {tool["function"]["name"], *(f for f in fields if "_" in f)}  # "email" is just a word
        env.close()
    corpus = SlotFillingCorpus(tokenizer, seed=1, ids=1.0)
    for _ in range(300):
        prompt, answer = corpus.example()
        calls = [json.loads(c) for c in re.findall(r"<tool_call>\n(.*?)\n</tool_call>", prompt + answer, re.S)]
        used = {c["name"] for c in calls} | {k for c in calls for k in c["arguments"]}
        assert not used & names, used & names


@pytest.mark.parametrize("bad", [{"ids": 1.5}, {"ids": -0.1}, {"long_context": 2.0}, {"micro_batch": -1}])
def test_config_refuses_shares_outside_0_1(bad):
    with pytest.raises(ValueError, match="shares in \\[0, 1\\]"):
        PretrainConfig(**bad)
