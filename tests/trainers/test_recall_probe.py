"""The key-lookup probe of docs/learn.md: its examples are what it says, and the easy case is learnable.

The probe backs a claim in docs/learn.md (one id is copied within a few hundred steps, choosing
among several is not); these tests pin the first half and the task's construction, so the claim
about the second half is about the lookup, not a broken task.
"""

import pytest

pytestmark = pytest.mark.train
pytest.importorskip("trl", reason="needs the train extra (scripts/setup_train.sh)")

from rowgym.trainers.learn.recall_probe import DIGITS, ProbeConfig, RecallTask, measure, run  # noqa: E402

STEPS_LLAMA = 500


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("pairs,filler,adjacent", [(1, False, False), (2, True, False), (4, False, False),
                                                  (2, True, True)])
def test_examples_ask_for_one_of_their_values(tokenizer, pairs, filler, adjacent):
    task = RecallTask(tokenizer, ProbeConfig(pairs=pairs, filler=filler, adjacent=adjacent, seed=3))
    sep = 0 if adjacent else 1  # the ":" between a key and its value
    lengths = set()
    for _ in range(200):
        x, y = task.example()
        assert len(x) == len(y)
        answer = [t for t in y if t != -100]
        assert len(answer) == DIGITS and all(t in task.digits for t in answer)
        assert x[-DIGITS:] == answer and y[:-DIGITS] == [-100] * (len(x) - DIGITS)  # loss on the answer only
        prompt = x[:-DIGITS]
        assert prompt[-2 - sep] == task.query and (adjacent or prompt[-1] == task.colon)
        asked = prompt[-1 - sep]
        body = prompt[:-2 - sep]
        starts = [i for i, t in enumerate(body) if t in task.digits and body[i - 1] not in task.digits]
        assert len(starts) == pairs  # one value per pair, no digits in the filler
        assert all(body[i - 1] == task.colon for i in starts) != adjacent
        named = [body[i - 1 - sep] for i in starts]
        assert len(set(named)) == pairs and asked in named
        assert body[starts[named.index(asked)]:][:DIGITS] == answer  # the value the query's key names
        lengths.add(len(x))
    assert (len(lengths) > 1) == filler  # filler moves the value; without it the layout is fixed


def test_one_value_is_learned_and_measure_sees_it(tiny_model_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    cfg = ProbeConfig(pairs=1, filler=False, steps=150, every=150, warmup_steps=20)
    curve = run(model, tokenizer, cfg, log=lambda _: None)
    assert [c["step"] for c in curve] == [0, 150]
    assert curve[0]["digit_acc"] < 0.3 and curve[0]["exact"] < 0.05  # random init guesses
    assert curve[-1]["digit_acc"] > 0.9 and curve[-1]["first_digit_acc"] > 0.9  # a fixed-offset copy is easy
    again = measure(model, RecallTask(tokenizer, ProbeConfig(pairs=1, seed=99)))
    assert again["digit_acc"] > 0.9  # on examples of another seed too


@pytest.mark.parametrize("bad", [{"pairs": 0}, {"steps": 0}, {"batch_size": 0}, {"every": 0}, {"warmup_steps": -1},
                                 {"learning_rate": 0.0}])
def test_config_refuses_sizes_that_cannot_train(bad):
    with pytest.raises(ValueError, match="must be >= 1"):
        ProbeConfig(**bad)


def test_more_pairs_than_key_words_is_refused(tokenizer):
    with pytest.raises(ValueError, match="pairs must be at most"):
        RecallTask(tokenizer, ProbeConfig(pairs=100_000))


@pytest.mark.parametrize("argv", [["--layers", "0"], ["--layers", "3", "--model", "/nonexistent"],
                                  ["--architecture", "llama", "--model", "/nonexistent"]])
def test_layers_option_refuses_what_it_cannot_build(argv, capsys):
    from rowgym.trainers.learn.recall_probe import main

    with pytest.raises(SystemExit) as e:
        main(argv + ["--steps", "1"])
    assert e.value.code == 2 and "--layers must be >= 1, and --layers and --architecture build a fresh" in capsys.readouterr().err


def test_layers_option_trains_a_deeper_model_of_the_same_vocabulary(tmp_path, monkeypatch, tiny_model_dir, capsys):
    import json

    monkeypatch.setenv("ROWGYM_CACHE", str(tmp_path))  # the deeper model is built beside the default one
    curve = __import__("rowgym.trainers.learn.recall_probe", fromlist=["main"]).main(
        ["--layers", "3", "--steps", "2", "--every", "1", "--batch-size", "4"])
    built = json.loads((tmp_path / "models" / "tiny-qwen3-3-layers" / "config.json").read_text())
    assert built["num_hidden_layers"] == 3 and built["vocab_size"] == json.loads(
        (tiny_model_dir / "config.json").read_text())["vocab_size"]
    assert [c["step"] for c in curve] == [0, 1, 2]


def test_repeated_examples_repeat_and_are_scored_on_the_repeat_only(tokenizer):
    task = RecallTask(tokenizer, ProbeConfig(repeated=True, seed=3))
    for _ in range(200):
        x, y = task.example()
        scored = [i for i, t in enumerate(y) if t != -100]
        n = len(scored) + 1  # the repeat's first token cannot be known yet: not scored
        assert 8 <= n <= 30 and scored == list(range(len(x) - n + 1, len(x)))
        assert x[-n:] == x[-2 * n:-n] and [y[i] for i in scored] == x[-n + 1:]


def test_llama_network_learns_to_copy_a_repeat_and_measure_sees_it(tokenizer, tmp_path):
    """The induction head docs/learn.md found missing in the qwen3 tiny model forms in the llama one."""
    import torch
    from transformers import AutoModelForCausalLM

    from rowgym.trainers.tiny_model import TinyModelConfig, build_tiny_model

    d = build_tiny_model(tmp_path / "llama", config=TinyModelConfig(architecture="llama"))
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    curve = run(model, tokenizer, ProbeConfig(repeated=True, steps=STEPS_LLAMA, every=STEPS_LLAMA, warmup_steps=30),
                log=lambda s: None)
    assert curve[0]["copy_acc"] < 0.1 and curve[-1]["copy_acc"] > 0.9
