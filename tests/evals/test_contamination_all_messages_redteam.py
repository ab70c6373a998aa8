"""Red team: the bench's contamination check reads every message of a training row (and every step of an
episode), not only the first user message: a held-out task appended after a train row's first turn, in a DPO
``chosen`` or in a tool description is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rowgym.envs.toolapi.retail import RetailEnv
from rowgym.evals.contamination import check_contamination
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.store import TrajectoryStore
from rowgym.trainers.datasets import episode_messages, sft_conversations, write_dataset

pytestmark = pytest.mark.redteam

RETAIL = "rowgym/ToolAPI-Retail-v0"
N = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("contam_all")
    return {split: collect(CollectConfig(env_id=RETAIL, agent="expert", split=split, episodes=N, out=base / split,
                                         progress=False)).out for split in ("train", "heldout")}


def _held(runs) -> list:
    return list(TrajectoryStore(runs["heldout"], readonly=True).episodes())


@pytest.mark.parametrize("where", ["second_user_turn", "assistant_text", "dpo_chosen", "tools"])
def test_a_heldout_task_after_the_first_user_message_is_found(runs, tmp_path, where):
    rows = sft_conversations(runs["train"])
    planned = {RETAIL: RetailEnv.splits.seeds("heldout", N)}
    clean = write_dataset(rows, tmp_path / "clean", sources=[runs["train"]])
    assert check_contamination([clean], planned).clean
    held = _held(runs)
    for r, h in zip(rows, held, strict=True):
        hm = episode_messages(h, system_prompt=RetailEnv.system_prompt)
        if where == "second_user_turn":
            r["messages"] += [{"role": "user", "content": hm[1]["content"]}] + hm[2:]
        elif where == "assistant_text":
            r["messages"][2] = {"role": "assistant", "content": "User: " + hm[1]["content"]}
        elif where == "dpo_chosen":
            msgs = r.pop("messages")
            r.update(prompt=msgs[:2], chosen=msgs[2:3] + [{"role": "user", "content": hm[1]["content"]}],
                     rejected=msgs[2:3])
        else:
            tools = json.loads(r["tools"])
            tools[0]["function"]["description"] += " " + h.instruction + " ü\""
            r["tools"] = json.dumps(tools)
    d = write_dataset(rows, tmp_path / where, kind="dpo" if where == "dpo_chosen" else "sft")
    report = check_contamination([d], planned)
    assert not report.clean
    assert sorted(o.seed for o in report.overlaps) == sorted(h.seed for h in held)
