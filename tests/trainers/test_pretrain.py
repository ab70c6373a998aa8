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
