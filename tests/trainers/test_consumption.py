"""Consumption manifests: written by training, read by `rowgym bench`, which refuses a model that
consumed a quarantined (dev or held-out) task."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import rowgym
from rowgym.rows import Split
from rowgym.trainers.gates.manifests import consumed_hashes, quarantine_touches, write_consumption

ENV = "rowgym/ToolAPI-Home-v0"


def _hash(split: Split, i: int = 0) -> tuple[int, str]:
    env = rowgym.make(ENV)
    try:
        seed = env.unwrapped.splits.seeds(split, i + 1)[i]
        return seed, env.unwrapped.task_hash(seed)
    finally:
        env.close()


def test_inherited_consumption_is_followed(tmp_path):
    _, h_train = _hash(Split.TRAIN)
    _, h_held = _hash(Split.HELDOUT, 2)
    write_consumption(tmp_path / "sft", model="base", run="sft", dataset=None, task_hashes=[h_held])
    write_consumption(tmp_path / "grpo", model=tmp_path / "sft", run="grpo", dataset=None, trainer="grpo",
                      episode_ids=["e1"], task_hashes=[h_train])
    assert consumed_hashes(tmp_path / "grpo") == {h_train, h_held}
    hits = quarantine_touches([tmp_path / "grpo"], [ENV], n_per_split=20)
    assert [(h[1], h[2], h[4]) for h in hits] == [(ENV, "heldout", h_held)]
    write_consumption(tmp_path / "clean", model="base", run="x", dataset=None, task_hashes=[h_train])
    assert quarantine_touches([tmp_path / "clean"], [ENV], n_per_split=20) == []


def test_bench_refuses_a_model_that_consumed_a_heldout_task(tmp_path):
    seed, h = _hash(Split.HELDOUT, 1)
    model = tmp_path / "model"
    write_consumption(model, model="base", run="sft", dataset=None, episode_ids=["x"], task_hashes=[h])
    res = subprocess.run([sys.executable, "-m", "rowgym.cli", "bench", "--env", ENV, "--agent", "hf",
                          "--model-dir", str(model), "--episodes", "2", "--out", str(tmp_path / "b"),
                          "--no-progress"], capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "contaminated" in out and h in out, out
    assert not (tmp_path / "b").exists()


@pytest.mark.train
def test_train_sft_writes_consumption(tmp_path):
    from rowgym.trainers.gates import build_sft_dataset
    from rowgym.trainers.sft import SFTOptions, train_sft
    from rowgym.trainers.tiny_model import build_tiny_model

    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "rowgym.cli", "collect", ENV, "--agent", "expert", "--episodes", "8",
                    "--out", str(run), "--no-progress"], check=True, capture_output=True)
    ds, _, rows = build_sft_dataset([run], tmp_path / "ds", cfg=None)
    model = build_tiny_model(tmp_path / "tiny")
    train_sft(ds, model, tmp_path / "sft", SFTOptions(max_steps=1, batch_size=2))
    cons = json.loads((tmp_path / "sft" / "consumption.json").read_text())
    entry = cons["consumed"][0]
    assert entry["dataset"]["path"] == str(ds) and entry["dataset"]["data_sha256"]
    assert sorted(entry["episode_ids"]) == sorted(r["episode_id"] for r in rows)
    consumers = json.loads((ds / "consumption.json").read_text())["consumers"]
    assert consumers and consumers[-1]["model_out"] == str(tmp_path / "sft")
