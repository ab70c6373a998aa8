"""Red team: held-out content hidden *after* a train row's first user message never reaches training.

The held-out guard used to read only a row's first user message (plus its labels and ids), and a dataset
dir is protected only by the data_sha256 in its provenance.json, which anyone can rewrite. Each attack
below was accepted before: a held-out task and its solution appended as a second user turn of a dataset
row (F1) or in a DPO ``chosen`` (F1b); written as a "bad call" of free text the env answers with a fixed
error (F3, through all four gates); in a tool description (F2); and a NaN final reward passing the reward
filters (F6).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

import rowgym
from rowgym.envs.toolapi.retail import RetailEnv
from rowgym.errors import HeldOutLeakError
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.rows import Action
from rowgym.store import TrajectoryStore
from rowgym.trainers import datasets as ds
from rowgym.trainers.datasets import TamperedDataError, episode_messages, sft_candidates, write_dataset
from rowgym.trainers.dpo import _pairable, preference_rows
from rowgym.trainers.gates import GateConfig, build_sft_dataset
from rowgym.trainers.gates.base import Candidate, GateContext
from rowgym.trainers.gates.leakage import LeakageGate
from rowgym.trainers.gates.quarantine import _gold_text, build_quarantine
from rowgym.trainers.rsft import failure_kind
from rowgym.trainers.sft import sft_rows

pytestmark = pytest.mark.redteam

RETAIL = "rowgym/ToolAPI-Retail-v0"
N = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("content")
    return {split: collect(CollectConfig(env_id=RETAIL, agent="expert", split=split, episodes=N, out=base / split,
                                         progress=False)).out for split in ("train", "heldout")}


def _eps(run: Path) -> list:
    return list(TrajectoryStore(run, readonly=True).episodes())


def _reseal(d: Path, rows: list[dict]) -> None:
    """Rewrite data.jsonl and the data_sha256 in provenance.json, as anyone can."""
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    (d / "data.jsonl").write_text(data)
    prov = json.loads((d / "provenance.json").read_text())
    prov["data_sha256"] = hashlib.sha256(data.encode()).hexdigest()
    (d / "provenance.json").write_text(json.dumps(prov))


def _secret(seed: int) -> str:
    env = RetailEnv()
    task = env.make_task(seed)
    return f"(held-out seed {seed}) User: {env.instruction(task)}\nAssistant plan:\n{_gold_text(task)}"


def test_f1_heldout_conversation_appended_to_dataset_rows_is_refused(runs, tmp_path):
    rows = ds.sft_conversations(runs["train"])
    d = write_dataset(rows, tmp_path / "ds", sources=[runs["train"]])
    assert sft_rows(str(d)) == rows  # honest rows pass
    for r, held in zip(rows, _eps(runs["heldout"]), strict=True):
        hm = episode_messages(held, system_prompt=RetailEnv.system_prompt)
        r["messages"] += [{"role": "user", "content": hm[1]["content"]}] + hm[2:]
    _reseal(d, rows)
    with pytest.raises((HeldOutLeakError, TamperedDataError), match="message"):
        sft_rows(str(d))
    with pytest.raises((HeldOutLeakError, TamperedDataError)):
        sft_rows(rows)  # ready rows (what `rowgym train sft --allow-unverified DATASET` passes)


def test_f1_leakage_per_message_finds_the_appended_heldout_task(runs):
    """Without the replay (an env that cannot be replayed), the leakage gate alone finds it."""
    train, held = _eps(runs["train"])[0], _eps(runs["heldout"])[0]
    tm = episode_messages(train, system_prompt=RetailEnv.system_prompt)
    hm = episode_messages(held, system_prompt=RetailEnv.system_prompt)
    row = {"messages": tm + [{"role": "user", "content": hm[1]["content"]}] + hm[2:], "env_id": RETAIL,
           "seed": train.seed, "task_hash": train.task_hash}
    gate = LeakageGate(build_quarantine([RETAIL], n_per_split=N))
    with GateContext() as ctx:
        assert gate.message_problem(Candidate("c", {**row, "messages": tm}), ctx) is None
        reason, detail = gate.message_problem(Candidate("c", row), ctx)
    assert reason == "message_leak" and f"heldout seed {held.seed}" in detail


def test_f1b_heldout_task_in_dpo_chosen_is_refused(runs, tmp_path):
    tr, he = _eps(runs["train"])[0], _eps(runs["heldout"])[0]
    tm = episode_messages(tr, system_prompt=RetailEnv.system_prompt)
    hm = episode_messages(he, system_prompt=RetailEnv.system_prompt)
    row = {"prompt": tm[:2], "chosen": tm[2:], "rejected": tm[2:3], "tools": tr.tools, "env_id": tr.env_id,
           "seed": tr.seed, "split": "train", "task_hash": tr.task_hash, "chosen_episode_id": tr.episode_id,
           "rejected_episode_id": tr.episode_id, "run_id": tr.run_id, "group_id": tr.group_id}
    preference_rows([row])  # honest: passes (no reward columns to compare)
    bad = {**row, "chosen": tm[2:3] + [{"role": "user", "content": hm[1]["content"]}] + hm[2:]}
    with pytest.raises((HeldOutLeakError, TamperedDataError), match="chosen"):
        preference_rows([bad])
    d = write_dataset([bad], tmp_path / "dpo", kind="dpo")
    with pytest.raises((HeldOutLeakError, TamperedDataError), match="chosen"):
        preference_rows(str(d))


def _badcall_run(run: Path, seeds: list[int], words: int | None = None) -> None:
    """F3: a no-tool-call turn holding a held-out task and its gold calls, replayed so every observation and the
    verdict are the env's, then the run resealed. ``words``: cut into pieces of that many words, a turn each
    (each piece alone is too little of the task for the per-message check)."""
    env = rowgym.make(RETAIL)
    shard = next((run / "shards").glob("*.jsonl"))
    eps = [json.loads(line) for line in shard.read_text().splitlines()]
    for e, hs in zip(eps, seeds, strict=True):
        obs, _ = env.reset(seed=e["seed"])
        text = _secret(hs).split()
        pieces = [" ".join(text[i:i + words]) for i in range(0, len(text), words)] if words else [" ".join(text)]
        inserted = []
        for piece in pieces:
            s0 = json.loads(json.dumps(e["steps"][0]))
            s0["action"] = {"text": piece, "tool_call": None}
            inserted.append(s0)
        steps = inserted + e["steps"]
        for t, s in enumerate(steps):
            s.update(turn=t, observation=obs)
            o, r, term, trunc, info = env.step(Action.model_validate(s["action"]))
            s.update(next_observation=o, reward=r, bad_call=info["bad_call"], error_kind=info.get("error_kind"),
                     terminated=term, truncated=trunc,
                     reward_breakdown=info.get("reward_breakdown", s["reward_breakdown"]))
            obs = o
            if term or trunc:
                e["verdict"] = json.loads(info["verdict"].model_dump_json())
                break
        e["steps"] = steps
    data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in eps).encode()
    shard.write_bytes(data)
    m = json.loads((run / "manifest.json").read_text())
    for s in m["shards"]:
        if s["name"] == shard.name:
            s["sha256"] = hashlib.sha256(data).hexdigest()
    (run / "manifest.json").write_text(json.dumps(m))
    (run / ".hashes.json").unlink(missing_ok=True)


def test_f3_heldout_text_as_a_bad_call_is_refused_by_the_leakage_gate(runs, tmp_path):
    import shutil

    run = Path(shutil.copytree(runs["train"], tmp_path / "train"))
    _badcall_run(run, RetailEnv.splits.seeds("heldout", N))
    assert not TrajectoryStore(run, readonly=True).verify(fast=True)  # resealed: verifies
    _, report, kept = build_sft_dataset([run], tmp_path / "ds", cfg=GateConfig(quarantine_seeds=N))
    assert kept == []
    leak = next(g for g in report.gates if g["id"].startswith("leakage"))
    assert leak["reasons"] == {"message_leak": N}
    # the same rows handed to a trainer directly are refused too
    rows = ds.sft_conversations(run)
    assert len(rows) == N
    with pytest.raises(HeldOutLeakError, match="message_leak"):
        sft_rows(rows)


def test_f2_heldout_text_in_a_tool_description_is_refused(runs, tmp_path):
    import shutil

    run = Path(shutil.copytree(runs["train"], tmp_path / "train"))
    secret = _secret(RetailEnv.splits.seeds("heldout", 1, start=3)[0])
    shard = next((run / "shards").glob("*.jsonl"))
    eps = [json.loads(line) for line in shard.read_text().splitlines()]
    for e in eps:
        tools = json.loads(e["tools"])
        tools[0]["function"]["description"] += " " + secret
        e["tools"] = json.dumps(tools)
    data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in eps).encode()
    shard.write_bytes(data)
    m = json.loads((run / "manifest.json").read_text())
    for s in m["shards"]:
        if s["name"] == shard.name:
            s["sha256"] = hashlib.sha256(data).hexdigest()
    (run / "manifest.json").write_text(json.dumps(m))
    (run / ".hashes.json").unlink(missing_ok=True)
    with pytest.raises(TamperedDataError, match="tool schemas"):
        build_sft_dataset([run], tmp_path / "ds", cfg=GateConfig(quarantine_seeds=N))
    with pytest.raises(TamperedDataError, match="tool schemas"):
        sft_rows(str(run))
    # a dataset dir whose rows' tools were edited after the build
    rows = ds.sft_conversations(runs["train"])
    d = write_dataset(rows, tmp_path / "ds2", sources=[runs["train"]])
    for r in rows:
        tools = json.loads(r["tools"])
        tools[0]["function"]["description"] += " " + secret
        r["tools"] = json.dumps(tools)
    _reseal(d, rows)
    with pytest.raises(TamperedDataError, match="tool schemas"):
        sft_rows(str(d))


def test_f6_nan_reward_never_passes_a_reward_filter(runs):
    ep = _eps(runs["train"])[0]
    nan = ep.model_copy(update={"verdict": ep.verdict.model_copy(update={"reward": math.nan})})
    assert ep.final_reward >= 1.0 and math.isnan(nan.final_reward)
    rows, _, _ = sft_candidates([nan], min_reward=1.0)
    assert rows == []
    assert sft_candidates([ep], min_reward=1.0)[0]
    assert failure_kind(nan) == "low_reward" and failure_kind(ep) is None
    assert not _pairable(nan) and _pairable(ep)
    assert not ds.reward_at_least(math.nan, 0.0) and not ds.reward_at_least(math.inf, 0.0)
    # a dataset row whose stored reward is NaN is refused on load
    row = ds.sft_conversations([ep])[0]
    with pytest.raises(TamperedDataError, match="not a finite number"):
        sft_rows([{**row, "final_reward": math.nan}])


def test_round3_a_task_cut_into_pieces_a_turn_each_is_refused(runs, tmp_path):
    """A held-out task and its gold calls cut into 5-word pieces, one no-call assistant turn each (the env answers
    each with the same error, so a replay agrees): no message alone holds enough of it, all of them together do.
    Passed all four gates, the on-load check and `rowgym train sft` before."""
    import shutil

    run = Path(shutil.copytree(runs["train"], tmp_path / "train"))
    _badcall_run(run, RetailEnv.splits.seeds("heldout", N), words=5)
    _, report, kept = build_sft_dataset([run], tmp_path / "ds", cfg=GateConfig(quarantine_seeds=N))
    assert kept == []
    with pytest.raises(HeldOutLeakError, match="assistant turns together"):
        sft_rows(ds.sft_conversations(run))


def test_round3_the_run_dir_path_of_a_trainer_runs_the_same_checks(runs, tmp_path):
    """`rowgym train sft RUN` (sft_rows of a run directory) ran no gate at all: a held-out task in one bad-call turn
    of a verified run was trained on, while the same rows handed over as ready rows were refused."""
    import shutil

    run = Path(shutil.copytree(runs["train"], tmp_path / "train"))
    _badcall_run(run, RetailEnv.splits.seeds("heldout", N))
    with pytest.raises(HeldOutLeakError, match="message_leak"):
        sft_rows(str(run))


def test_round3_text_in_the_system_message_is_refused(runs, tmp_path):
    """The system message comes before the first user message, so no replay reaches it, and the leakage check
    skipped it: a held-out task appended to it passed. It must be the env's system prompt, first and once."""
    rows = ds.sft_conversations(runs["train"])
    assert sft_rows(rows) == rows
    tampered = json.loads(json.dumps(rows))
    tampered[0]["messages"][0]["content"] += "\n" + _secret(RetailEnv.splits.seeds("heldout", 1)[0])
    with pytest.raises((TamperedDataError, HeldOutLeakError), match="system"):
        sft_rows(tampered)
    second = json.loads(json.dumps(rows))
    second[0]["messages"].insert(2, {"role": "system", "content": "Answer as the user asked before."})
    with pytest.raises(TamperedDataError, match="system message at position"):
        sft_rows(second)


def test_round3_a_second_tool_call_in_a_turn_is_refused(runs):
    """The replay steps a turn's first tool call; a second one in the same assistant message would be trained on
    without ever being checked against the env (a vehicle for pieces of a held-out task)."""
    rows = ds.sft_conversations(runs["train"])
    tampered = json.loads(json.dumps(rows))
    turn = next(m for m in tampered[0]["messages"] if m.get("role") == "assistant" and m.get("tool_calls"))
    extra = json.loads(json.dumps(turn["tool_calls"][0]))
    extra["function"]["arguments"] = json.dumps({"note": "anything at all"})
    turn["tool_calls"].append(extra)
    with pytest.raises(TamperedDataError, match="tool calls"):
        sft_rows(tampered)
