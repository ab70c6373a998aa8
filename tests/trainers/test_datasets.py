"""SFT conversations and GRPO prompts built from real expert episodes on the tool-API env."""

import json

import pytest

import rowgym
from rowgym.envs.toolapi.retail import RetailEnv
from rowgym.errors import HeldOutLeakError, StoreError
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.store import TrajectoryStore
from rowgym.trainers.datasets import (
    grpo_prompts,
    load_episodes,
    read_dataset,
    sft_conversations,
    to_hf_dataset,
    write_dataset,
)

ENV = "rowgym/ToolAPI-Retail-v0"


def _collect(root, split, episodes):
    return collect(CollectConfig(env_id=ENV, agent="expert", split=split, episodes=episodes, out=root,
                                 progress=False, concurrency=2, agent_kwargs={"noise": 0.3})).out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return {s: _collect(base / s, s, n) for s, n in [("train", 10), ("dev", 2), ("heldout", 2)]}


@pytest.fixture(scope="module")
def train_eps(runs):
    return list(TrajectoryStore(runs["train"]).episodes())


def test_noise_produced_bad_calls_and_repairs(train_eps):
    steps = [s for e in train_eps for s in e.steps]
    assert any(s.bad_call for s in steps) and any(s.repaired for s in steps)


def test_sft_conversation_shape(runs, train_eps):
    rows = sft_conversations(runs["train"])
    assert len(rows) == len(train_eps)  # the expert always succeeds
    by_id = {e.episode_id: e for e in train_eps}
    for row in rows:
        ep = by_id[row["episode_id"]]
        msgs = row["messages"]
        assert msgs[0] == {"role": "system", "content": RetailEnv.system_prompt}
        assert msgs[1] == {"role": "user", "content": ep.steps[0].observation}
        assistants = [m for m in msgs if m["role"] == "assistant"]
        tools = [m for m in msgs if m["role"] == "tool"]
        assert len(assistants) == len(ep.steps) and len(tools) == len(ep.steps) - 1
        for m, step in zip(assistants, ep.steps, strict=True):
            (call,) = m["tool_calls"]
            assert call["type"] == "function"
            assert call["function"] == {"name": step.action.tool_call.name,
                                        "arguments": step.action.tool_call.arguments}
            assert isinstance(call["function"]["arguments"], str)
        assert [m["content"] for m in tools] == [s.next_observation for s in ep.steps[:-1]]
        assert msgs[-1]["role"] == "assistant" and msgs[-1]["tool_calls"][0]["function"]["name"] == "finish"
        assert row["tools"] == ep.tools and isinstance(row["tools"], str)
        assert "finish" in {t["function"]["name"] for t in json.loads(row["tools"])}
        assert (row["split"], row["task_hash"], row["seed"]) == ("train", ep.task_hash, ep.seed)


def test_bad_calls_kept_or_dropped(runs, train_eps):
    kept = sft_conversations(runs["train"])
    errors = [m for r in kept for m in r["messages"] if m["role"] == "tool" and m["content"].startswith("Error:")]
    assert errors, "noise 0.3 should leave error observations in the conversations"
    clean = sft_conversations(runs["train"], keep_bad_calls=False)
    n_good = {e.episode_id: sum(not s.bad_call for s in e.steps) for e in train_eps}
    for row in clean:
        msgs = row["messages"]
        assert not any(m["role"] == "tool" and m["content"].startswith("Error:") for m in msgs)
        assert sum(m["role"] == "assistant" for m in msgs) == n_good[row["episode_id"]]
        for m in msgs:
            if m["role"] == "assistant":  # every remaining call is valid JSON for a real tool
                json.loads(m["tool_calls"][0]["function"]["arguments"])


def test_reward_threshold(train_eps):
    failed = train_eps[0].model_copy(update={"verdict": train_eps[0].verdict.model_copy(
        update={"reward": 0.0, "success": False})})
    eps = [failed, *train_eps[1:]]
    assert failed.episode_id not in {r["episode_id"] for r in sft_conversations(eps)}
    assert len(sft_conversations(eps, min_reward=0.0)) == len(eps)
    half = train_eps[1].model_copy(update={"verdict": train_eps[1].verdict.model_copy(update={"reward": 0.5, "success": False})})
    assert len(sft_conversations([half], min_reward=0.5)) == 1
    assert sft_conversations([half], min_reward=0.5, require_success=True) == []


def test_heldout_is_refused(runs, train_eps):
    with pytest.raises(HeldOutLeakError, match="held-out"):
        sft_conversations(runs["heldout"])
    with pytest.raises(HeldOutLeakError, match="held-out"):
        sft_conversations([runs["train"], runs["heldout"]])  # one held-out run poisons the request
    with pytest.raises(HeldOutLeakError):
        sft_conversations(runs["train"], splits=("train", "heldout"))
    with pytest.raises(HeldOutLeakError, match="evaluation only"):
        grpo_prompts(ENV, split="heldout", n=2)


def test_heldout_seed_relabelled_train_is_refused(train_eps):
    """A row whose label says train but whose seed the env puts in heldout is still refused."""
    heldout_seed = RetailEnv.splits.seeds("heldout", 1)[0]
    forged = train_eps[0].model_copy(update={"seed": heldout_seed})
    with pytest.raises(HeldOutLeakError, match=f"seed {heldout_seed}"):
        sft_conversations([forged], splits=("train",))


def test_dev_only_when_asked(runs):
    assert sft_conversations(runs["dev"]) == []
    rows = sft_conversations(runs["dev"], splits=("train", "dev"))
    assert len(rows) == 2 and {r["split"] for r in rows} == {"dev"}


def test_grpo_prompts():
    rows = grpo_prompts(ENV, n=4)
    env = rowgym.make(ENV)
    try:
        assert [r["seed"] for r in rows] == env.splits.seeds("train", 4)
        for r in rows:
            obs, info = env.reset(seed=r["seed"])
            assert r["prompt"] == [{"role": "system", "content": env.system_prompt}, {"role": "user", "content": obs}]
            assert (r["env_id"], r["split"], r["task_hash"]) == (ENV, "train", info["task_hash"])
            assert json.loads(r["tools"]) == env.tools
    finally:
        env.close()
    assert len({r["prompt_key"] for r in rows}) == 4
    dev = grpo_prompts(ENV, split="dev", n=2, start=1)
    assert [r["seed"] for r in dev] == RetailEnv.splits.seeds("dev", 2, start=1)


def _drop_none(x):
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_none(v) for v in x]
    return x


def test_arrow_round_trips_tool_calls_exactly(runs):
    rows = sft_conversations(runs["train"])
    ds = to_hf_dataset(rows)
    assert len(ds) == len(rows)
    n_calls = n_broken = 0
    for orig, back in zip(rows, ds, strict=True):
        assert _drop_none(back["messages"]) == orig["messages"]  # Arrow adds absent keys as None only
        assert json.loads(back["tools"]) == json.loads(orig["tools"])
        for mo, mb in zip(orig["messages"], back["messages"], strict=True):
            for co, cb in zip(mo.get("tool_calls") or [], mb["tool_calls"] or [], strict=True):
                a_orig, a_back = co["function"]["arguments"], cb["function"]["arguments"]
                assert a_back == a_orig
                n_calls += 1
                try:
                    expected = json.loads(a_orig)
                except json.JSONDecodeError:  # a deliberately broken call: kept byte for byte
                    n_broken += 1
                    continue
                assert json.loads(a_back) == expected
    assert n_calls > len(rows)


def test_write_dataset_provenance(runs, train_eps, tmp_path):
    rows = sft_conversations(runs["train"])
    out = write_dataset(rows, tmp_path / "sft", sources=[runs["train"]], params={"min_reward": 1.0})
    back, prov = read_dataset(out)
    assert back == rows
    assert prov["task_hashes"] == sorted({e.task_hash for e in train_eps})
    assert prov["task_hashes_by_env"] == {ENV: prov["task_hashes"]}
    assert prov["env_ids"] == [ENV] and prov["splits"] == ["train"] and prov["n_rows"] == len(rows)
    manifest = json.loads((runs["train"] / "manifest.json").read_text())
    assert [s["run_id"] for s in prov["sources"]] == [manifest["run_id"]]
    assert prov["sources"][0]["source"]["seed_set_hash"] == manifest["source"]["seed_set_hash"]
    (out / "data.jsonl").write_text("tampered\n")
    with pytest.raises(StoreError, match="sha256"):
        read_dataset(out)


def test_write_dataset_refuses_heldout_rows(tmp_path):
    with pytest.raises(HeldOutLeakError):
        write_dataset([{"messages": [], "split": "heldout"}], tmp_path / "x")


def test_reading_a_run_never_writes_to_it(runs):
    root = runs["train"]
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    eps, manifests = load_episodes(root)
    assert len(eps) == 10 and manifests[0].n_episodes == 10
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
