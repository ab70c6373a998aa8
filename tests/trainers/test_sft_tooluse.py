"""Tool-use SFT with TRL on the tiny model: a few CPU steps, loss goes down, assistant-only mask, held-out refused."""

import pytest

pytest.importorskip("trl")

from rowgym.errors import HeldOutLeakError  # noqa: E402
from rowgym.rollouts.engine import CollectConfig, collect  # noqa: E402
from rowgym.trainers.sft import SFTOptions, sft_rows, train_sft, trl_dataset  # noqa: E402
from rowgym.trainers.tiny_model import build_tiny_model  # noqa: E402

pytestmark = pytest.mark.train
ENV = "rowgym/ToolAPI-Home-v0"


def _collect(root, split, n, noise=0.0):
    return collect(CollectConfig(env_id=ENV, agent="expert", split=split, episodes=n, out=root, progress=False,
                                 concurrency=1, agent_kwargs={"noise": noise})).out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("sft_runs")
    return {"train": _collect(base / "train", "train", 16, noise=0.2), "heldout": _collect(base / "ho", "heldout", 2)}


def test_sft_loss_decreases_on_assistant_tokens_only(runs, tmp_path):
    res = train_sft(runs["train"], build_tiny_model(), tmp_path / "sft",
                    SFTOptions(max_steps=8, batch_size=4, learning_rate=2e-3, max_length=1024))
    assert res.steps == 8 and len(res.losses) == 8 and res.n_rows == 16
    first, last = sum(res.losses[:2]) / 2, sum(res.losses[-2:]) / 2
    assert last < first - 0.3, res.losses
    # the assistant-only mask is non-trivial: some tokens are trained on, most (system, tools, user, tool) are not
    assert 0.02 < res.assistant_token_fraction < 0.5
    assert (tmp_path / "sft" / "model.safetensors").exists() and (tmp_path / "sft" / "sft_result.json").exists()


def test_assistant_mask_covers_tool_calls_not_observations(runs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    md = build_tiny_model()
    tok = AutoTokenizer.from_pretrained(md)
    rows = sft_rows(runs["train"])[:2]
    tr = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(md), processing_class=tok, train_dataset=trl_dataset(rows),
                    args=SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, use_cpu=True, bf16=False,
                                   report_to=[], max_steps=1))
    ex = tr.train_dataset[0]
    trained = tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != -100])
    ignored = tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab == -100])
    assert "<tool_call>" in trained and "<|im_end|>" in trained and '"name": "finish"' in trained
    assert "<tool_response>" not in trained and "# Tools" not in trained and "When done" not in trained
    assert "<tool_response>" in ignored and "When done" in ignored


def test_sft_refuses_heldout(runs, tmp_path):
    with pytest.raises(HeldOutLeakError):
        train_sft(runs["heldout"], build_tiny_model(), tmp_path / "x", SFTOptions(max_steps=1))
    rows = sft_rows(runs["train"])
    bad = [dict(rows[0], split="train", seed=next(iter(_heldout_seeds())))]  # mislabelled held-out seed
    with pytest.raises(HeldOutLeakError):
        train_sft(bad, build_tiny_model(), tmp_path / "y", SFTOptions(max_steps=1))


def _heldout_seeds():
    import rowgym

    return rowgym.make(ENV).splits.seeds("heldout", 1)
