"""Preference pairs from groups (one group, one seed, chosen reward > rejected reward; ties dropped) and
DPO with TRL on the tiny model (assistant tokens only; two steps lower the loss)."""

import json
import math

import pytest
from typer.testing import CliRunner

from rowgym.cli import app
from rowgym.errors import HeldOutLeakError
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.store import TrajectoryStore
from rowgym.trainers.datasets import episode_groups, episode_messages, system_prompt_of
from rowgym.trainers.dpo import (
    DPOOptions,
    build_dpo_dataset,
    dpo_pairs,
    preference_rows,
    split_prompt,
    train_dpo,
)
from rowgym.trainers.gates import GateConfig


def grouped_run(root, split="train", episodes=4, k=4, env="rowgym/ToolAPI-Retail-v0"):
    """k samples per seed from an agent whose samples of one seed differ (one worker: one random stream)."""
    return collect(CollectConfig(env_id=env, agent="rowgym.evals.demo:FlakyExpert", split=split, episodes=episodes,
                                 group_size=k, out=root, concurrency=1, progress=False,
                                 agent_kwargs={"noise": 0.3})).out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return grouped_run(tmp_path_factory.mktemp("dpo") / "run")


@pytest.fixture(scope="module")
def episodes(run):
    return {e.episode_id: e for e in TrajectoryStore(run, readonly=True).episodes()}


def test_pairs_come_from_one_group_and_one_seed_with_chosen_better(run, episodes):
    rows, _, _, s = dpo_pairs(run)
    groups = episode_groups(episodes.values())
    # every two samples of a group with different rewards make one pair; the rest are ties
    want = sum(1 for g in groups.values() for i, a in enumerate(g) for b in g[i + 1:]
               if a.final_reward != b.final_reward)
    ties = sum(1 for g in groups.values() for i, a in enumerate(g) for b in g[i + 1:]
               if a.final_reward == b.final_reward)
    assert want > 0 and len(rows) == want == s.n_pairs and s.ties_dropped == ties
    sp = system_prompt_of(rows[0]["env_id"])
    for r in rows:
        c, j = episodes[r["chosen_episode_id"]], episodes[r["rejected_episode_id"]]
        assert c.group_id == j.group_id == r["group_id"] and c.seed == j.seed == r["seed"]
        assert c.run_id == j.run_id == r["run_id"] and c.episode_id != j.episode_id
        assert r["chosen_reward"] == c.final_reward > j.final_reward == r["rejected_reward"]
        assert r["margin"] == pytest.approx(c.final_reward - j.final_reward) and r["margin"] > 0
        assert r["task_hash"] == c.task_hash == j.task_hash and r["split"] == "train"
        # prompt + each side is exactly that sample's conversation; both sides start with the assistant
        assert r["prompt"] + r["chosen"] == episode_messages(c, system_prompt=sp)
        assert r["prompt"] + r["rejected"] == episode_messages(j, system_prompt=sp)
        assert r["chosen"][0]["role"] == r["rejected"][0]["role"] == "assistant"
        assert r["chosen"] != r["rejected"]


def test_margin_and_cap(run):
    rows, _, _, _ = dpo_pairs(run, max_pairs_per_group=1)
    assert len({r["group_id"] for r in rows}) == len(rows) > 0
    rows, _, _, s = dpo_pairs(run, min_margin=1.0)  # binary rewards: no pair has a margin above 1
    assert rows == [] and s.below_margin > 0


def test_split_prompt_keeps_shared_turns_in_the_prompt():
    sys_, user = {"role": "system", "content": "s"}, {"role": "user", "content": "u"}
    call = {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function",
                                                                "function": {"name": "f", "arguments": "{}"}}]}
    tool = {"role": "tool", "tool_call_id": "c", "name": "f", "content": "ok"}
    a = [sys_, user, call, tool, {"role": "assistant", "content": "A"}]
    b = [sys_, user, call, tool, {"role": "assistant", "content": "B"}]
    assert split_prompt(a, b) == (a[:4], a[4:], b[4:])
    assert split_prompt(a, a[:3]) == (a[:2], a[2:], a[2:3])  # a sample that stopped early: prompt ends at the user


def test_dataset_gates_both_sides_and_writes_manifests(run, tmp_path):
    path, report, rows, _ = build_dpo_dataset([run], tmp_path / "ds", cfg=GateConfig(quarantine_seeds=20))
    for name in ("source.json", "processing.json", "consumption.json", "isolation.json", "provenance.json"):
        assert (path / name).exists(), name
    proc = json.loads((path / "processing.json").read_text())
    assert proc["builder"] == "dpo" and [g["id"] for g in proc["gates"]] == [
        "format@1", "semantic@1", "leakage@1", "distribution@1"]
    assert proc["gates"][1]["params"]["applied_to"] == "chosen and rejected conversations"
    assert 0 < len(rows) <= report.n_generated
    assert preference_rows(path) == [json.loads(x) for x in (path / "data.jsonl").read_text().splitlines()]


def test_dataset_rejects_a_pair_whose_side_lies_about_its_reward(run, tmp_path):
    # the semantic gate replays both sides: a rejected sample whose stored reward was raised is caught
    from rowgym.trainers.dpo import BothSides, PairCandidate
    from rowgym.trainers.gates.base import GateContext
    from rowgym.trainers.gates.semantic import SemanticGate

    rows, eps, _, _ = dpo_pairs(run)
    by = {e.episode_id: e for e in eps}
    r = dict(rows[0], rejected_reward=rows[0]["chosen_reward"])
    c = PairCandidate("p", r, None, by[r["chosen_episode_id"]], by[r["rejected_episode_id"]])
    with GateContext() as ctx:
        rej = BothSides(SemanticGate()).check([c], ctx)
    assert [x.reason for x in rej] == ["rejected:verdict_contradicted"]


def test_heldout_refused(tmp_path, run):
    ho = grouped_run(tmp_path / "ho", split="heldout", episodes=2, k=2)
    with pytest.raises(HeldOutLeakError):
        dpo_pairs(ho)
    res = CliRunner().invoke(app, ["dataset", "dpo", str(ho), "--out", str(tmp_path / "out")])
    assert res.exit_code != 0 and "held-out" in res.output
    # ready rows and dataset rows are refused as for SFT
    row = dpo_pairs(run)[0][0]
    with pytest.raises(HeldOutLeakError):
        preference_rows([dict(row, split="heldout")])
    with pytest.raises(HeldOutLeakError):
        train_dpo([dict(row, split="heldout")], tmp_path / "no-model", tmp_path / "m", DPOOptions(max_steps=1))
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def home_pairs(tmp_path_factory):
    run = grouped_run(tmp_path_factory.mktemp("dpo_home") / "run", env="rowgym/ToolAPI-Home-v0")
    rows = dpo_pairs(run)[0]
    assert len(rows) >= 2
    return rows[:2]


@pytest.mark.train
def test_completion_mask_covers_assistant_tokens_only(home_pairs, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template

    from rowgym.trainers.dpo import _trainer_classes, dpo_config, trl_preference_dataset

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = get_training_chat_template(tok)
    trainer_cls, _ = _trainer_classes()
    tr = trainer_cls(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                     ref_model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                     args=dpo_config(tmp_path, DPOOptions(max_steps=1)), train_dataset=trl_preference_dataset(home_pairs),
                     processing_class=tok)
    batch = tr.data_collator([tr.train_dataset[0]])
    ids, mask = batch["input_ids"][0].tolist(), batch["completion_mask"][0].tolist()
    trained = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    n_prompt = len(tr.train_dataset[0]["prompt_ids"])
    completion_ignored = tok.decode([t for t, m in zip(ids[n_prompt:], mask[n_prompt:], strict=True) if not m])
    assert "<tool_call>" in trained and "<|im_end|>" in trained
    assert "<tool_response>" not in trained and "# Tools" not in trained
    assert "<tool_response>" in completion_ignored  # tool replies inside the completion carry no loss
    assert sum(mask[:n_prompt]) == 0


@pytest.mark.train
def test_two_dpo_steps_lower_the_loss(home_pairs, tiny_model_dir, tmp_path):
    out = tmp_path / "dpo"
    res = train_dpo(home_pairs, tiny_model_dir, out, DPOOptions(max_steps=2, batch_size=2, learning_rate=1e-3))
    assert res.steps == 2 and len(res.losses) == 2 and res.n_pairs == 2
    assert res.losses[0] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at step 1
    assert res.losses[1] < res.losses[0] - 0.01, res.losses
    assert res.margins[1] > 0
    assert (out / "model.safetensors").exists() and (out / "dpo_result.json").exists()
    cons = json.loads((out / "consumption.json").read_text())["consumed"][-1]
    assert cons["trainer"] == "dpo"
    assert set(cons["episode_ids"]) == {r[k] for r in home_pairs for k in ("chosen_episode_id", "rejected_episode_id")}
    # the model's own template is saved, not the training variant with {% generation %} markers
    assert (out / "chat_template.jinja").read_text() == (tiny_model_dir / "chat_template.jinja").read_text()
