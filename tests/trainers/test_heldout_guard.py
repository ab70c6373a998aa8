"""The held-out guard re-derives split and task hash from the env, never from the rows: editing
seed + split (or env id + split) of held-out episodes, even with the shard hashes and the manifest
rewritten to match, does not get them into a training set. Nor does rewriting every label (seed,
split, the claimed seed's public task hash, ids) consistently: the recorded content is compared
with the task of the seed it claims."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rowgym.cli import app
from rowgym.envs.toolapi.airline import AirlineEnv
from rowgym.envs.toolapi.retail import RetailEnv
from rowgym.errors import HeldOutLeakError
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.rows import Failure
from rowgym.store import HASH_CACHE, IntegrityError, TrajectoryStore
from rowgym.trainers.datasets import (
    TamperedDataError,
    TaskOracle,
    episode_messages,
    refuse_heldout,
    sft_conversations,
    write_dataset,
)
from rowgym.trainers.sft import refuse_heldout_rows, sft_rows

pytestmark = pytest.mark.redteam

RETAIL, AIRLINE = "rowgym/ToolAPI-Retail-v0", "rowgym/ToolAPI-Airline-v0"
N = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("guard")
    return {split: collect(CollectConfig(env_id=RETAIL, split=split, episodes=N, out=base / split,
                                         progress=False)).out for split in ("train", "heldout")}


@pytest.fixture
def heldout(runs, tmp_path) -> Path:
    dst = tmp_path / "heldout"
    shutil.copytree(runs["heldout"], dst)
    return dst


def forge(run: Path, edit_episode, edit_manifest=None, *, reseal: bool = True) -> None:
    """Rewrite every episode line (and optionally the manifest); with ``reseal`` also fix the shard
    hashes and counts in the manifest, as an attacker covering their tracks would."""
    manifest = json.loads((run / "manifest.json").read_text())
    for p in sorted((run / "shards").glob("*.jsonl")):
        lines = [json.loads(line) for line in p.read_text().splitlines()]
        for i, ep in enumerate(lines):
            edit_episode(i, ep)
        p.write_text("".join(json.dumps(ep, separators=(",", ":")) + "\n" for ep in lines))
        if reseal:
            for s in manifest["shards"]:
                if s["name"] == p.name:
                    s["sha256"], s["n_episodes"] = hashlib.sha256(p.read_bytes()).hexdigest(), len(lines)
    if edit_manifest:
        edit_manifest(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / HASH_CACHE).unlink(missing_ok=True)


def _relabel(ep: dict, **fields) -> None:
    ep.update(fields)
    for s in ep["steps"]:
        s.update({k: v for k, v in fields.items() if k in ("seed", "split", "env_id")})


def _train_manifest(m: dict) -> None:
    m["source"]["split"] = "train"
    m["identity"]["split"] = "train"
    m["identity_hash"] = None


def test_rows_relabelled_train_are_refused_by_verification_and_by_the_manifest_split(heldout):
    train_seeds = RetailEnv.splits.seeds("train", N)
    forge(heldout, lambda i, ep: _relabel(ep, seed=train_seeds[i], split="train"), reseal=False)
    with pytest.raises(IntegrityError, match="fails verification"):
        sft_conversations(heldout)
    with pytest.raises(HeldOutLeakError, match="collected from the held-out split"):
        sft_conversations(heldout, allow_unverified=True)


def test_seed_and_split_rewritten_everywhere_is_refused_by_the_task_hash(heldout):
    """Rows, manifest and shard hashes all say train seeds; the tasks in the rows are still held out."""
    train_seeds = RetailEnv.splits.seeds("train", N)
    forge(heldout, lambda i, ep: _relabel(ep, seed=train_seeds[i], split="train"), _train_manifest)
    assert TrajectoryStore(heldout, readonly=True).verify() == []  # the forgery passes verification
    with pytest.raises(TamperedDataError, match="stored task hash .* is not the hash of"):
        sft_conversations(heldout)
    res = CliRunner().invoke(app, ["dataset", "sft", str(heldout), "--out", str(heldout.parent / "sft")])
    assert res.exit_code == 2 and "task hash" in res.output and "Traceback" not in res.output
    assert not (heldout.parent / "sft").exists()


def test_env_id_and_split_rewritten_everywhere_is_refused(heldout):
    """Relabel held-out Retail episodes as Airline (where those seeds are train) and fix everything up."""
    seeds = [json.loads(line)["seed"] for p in (heldout / "shards").glob("*.jsonl")
             for line in p.read_text().splitlines()]
    assert any(AirlineEnv.splits.split_of(s).value == "train" for s in seeds)

    def to_airline(i, ep):
        _relabel(ep, env_id=AIRLINE, split=AirlineEnv.splits.split_of(ep["seed"]).value)

    def manifest(m):
        _train_manifest(m)
        m["source"]["env_id"] = m["identity"]["env_id"] = AIRLINE

    forge(heldout, to_airline, manifest)
    with pytest.raises(HeldOutLeakError) as e:  # held out for Airline too, or a task hash that is not Airline's
        sft_conversations(heldout)
    assert "held-out" in str(e.value) or isinstance(e.value, TamperedDataError)
    trains = [s for s in seeds if AirlineEnv.splits.split_of(s).value == "train"]
    forge(heldout, lambda i, ep: None)  # keep only what the next check needs: one train-for-Airline episode
    eps = [ep for ep in TrajectoryStore(heldout, readonly=True).episodes() if ep.seed in trains]
    with pytest.raises(TamperedDataError, match="task hash"):
        refuse_heldout(eps[:1])


def test_episode_objects_with_a_forged_label_are_refused(runs):
    train = list(TrajectoryStore(runs["train"], readonly=True).episodes())
    held = list(TrajectoryStore(runs["heldout"], readonly=True).episodes())
    refuse_heldout(train)  # the honest ones pass
    with pytest.raises(HeldOutLeakError, match="held-out split"):
        refuse_heldout([held[0].model_copy(update={"split": "train"})])  # the env says heldout
    def relabel(ep, **kw):
        return ep.model_copy(update={**kw, "steps": [s.model_copy(update=kw) for s in ep.steps]})

    moved = held[0].model_copy(update={"seed": train[0].seed, "split": "train"})
    with pytest.raises(TamperedDataError, match="step 0 says"):  # its rows still say the held-out seed
        refuse_heldout([moved])
    with pytest.raises(TamperedDataError, match="task hash"):
        refuse_heldout([relabel(held[0], seed=train[0].seed, split="train")])
    with pytest.raises(TamperedDataError, match="stored split 'dev'"):
        refuse_heldout([relabel(train[0], split="dev")])
    steps = [s.model_copy(update={"seed": s.seed + 1}) for s in train[0].steps]
    with pytest.raises(TamperedDataError, match="step 0 says"):
        refuse_heldout([train[0].model_copy(update={"steps": steps})])
    with pytest.raises(HeldOutLeakError, match="cannot be made"):
        refuse_heldout([train[0].model_copy(update={"env_id": "rowgym/NoSuchEnv-v0"})])


def test_an_episode_from_another_run_is_refused(runs, tmp_path):
    run = tmp_path / "train"
    shutil.copytree(runs["train"], run)
    forge(run, lambda i, ep: ep.update(run_id="someone-else") if i == 0 else None)
    (problem,) = TrajectoryStore(run, readonly=True).verify()  # the full check sees it
    assert problem.kind == "foreign" and problem.line == 1
    with pytest.raises(TamperedDataError, match="names run 'someone-else'"):  # resealed: the fast path trusts
        sft_conversations(run)                                                 # the bytes, the guard does not


def test_the_oracle_caches_per_env_and_seed(monkeypatch):
    made = []
    import rowgym

    real = rowgym.make
    monkeypatch.setattr(rowgym, "make", lambda *a, **k: made.append(a) or real(*a, **k))
    seeds = RetailEnv.splits.seeds("train", 5)
    with TaskOracle() as o:
        first = [o.facts(RETAIL, s) for s in seeds]
        assert [o.facts(RETAIL, s) for s in seeds] == first
        assert {f.split.value for f in first} == {"train"} and len({f.task_hash for f in first}) == 5
    assert made == [(RETAIL,)]


# ------------------------------------------------------------ labels rewritten consistently
def _as_train(train_seeds, *, task_hash=None, ids=True):
    """Relabel episode i as train seed i: seed, split, steps, and (optionally) the ids and task hash
    an honest episode of that seed would carry (``env.task_hash(seed)`` is public)."""
    env = RetailEnv()

    def edit(i, ep):
        seed = train_seeds[i]
        fields = {"seed": seed, "split": "train"}
        if ids:
            fields |= {"episode_id": f"{ep['run_id']}:{seed}:{ep['sample_index']}", "group_id": f"{ep['run_id']}:{seed}"}
        ep.update(fields, task_hash=env.task_hash(seed) if task_hash is None else task_hash)
        for s in ep["steps"]:
            s.update({k: v for k, v in fields.items() if k != "group_id"}, group_id=fields.get("group_id", s["group_id"]))

    return edit


def _train_manifest_seeds(train_seeds):
    def edit(m):
        _train_manifest(m)
        m["source"]["seeds"] = list(train_seeds)
    return edit


def test_a_blank_task_hash_is_refused(heldout):
    """PoC 1: held-out episodes relabelled as train seeds with task_hash "" (which used to skip the check)."""
    train_seeds = RetailEnv.splits.seeds("train", N)
    forge(heldout, _as_train(train_seeds, task_hash=""), _train_manifest_seeds(train_seeds))
    assert TrajectoryStore(heldout, readonly=True).verify() == []
    with pytest.raises(TamperedDataError, match="refused: it has no task hash"):
        sft_conversations(heldout)


def test_train_task_hashes_and_ids_do_not_hide_a_heldout_task(heldout):
    """PoC 1b/4: every label says train seed i, with its real task hash and ids; the content is held out."""
    train_seeds = RetailEnv.splits.seeds("train", N)
    forge(heldout, _as_train(train_seeds), _train_manifest_seeds(train_seeds))
    assert TrajectoryStore(heldout, readonly=True).verify() == []
    with pytest.raises(TamperedDataError, match=rf"seed {train_seeds[0]}\) refused: its first observation .* is not "
                                                rf"the one {RETAIL} seed {train_seeds[0]} starts with"):
        sft_conversations(heldout)
    with pytest.raises(TamperedDataError, match="first observation"):  # train_sft's loader of run directories
        sft_rows(str(heldout))
    res = CliRunner().invoke(app, ["dataset", "sft", str(heldout), "--out", str(heldout.parent / "sft")])
    assert res.exit_code == 2 and "first observation" in res.output and "Traceback" not in res.output
    assert not (heldout.parent / "sft").exists()


def test_a_heldout_task_appended_to_a_train_task_is_refused(runs):
    """The first observation must be the train seed's exactly (tool-API resets are cheap), not merely contain it."""
    train = list(TrajectoryStore(runs["train"], readonly=True).episodes())
    held = list(TrajectoryStore(runs["heldout"], readonly=True).episodes())
    steps = list(train[0].steps)
    steps[0] = steps[0].model_copy(update={"observation": steps[0].observation + "\n" + held[0].steps[0].observation})
    with pytest.raises(TamperedDataError, match="is not the one .* starts with"):
        refuse_heldout([train[0].model_copy(update={"steps": steps})])


def test_ids_must_be_those_of_the_run_seed_and_sample(runs):
    ep = next(iter(TrajectoryStore(runs["train"], readonly=True).episodes()))

    def rename(**kw):
        steps = [s.model_copy(update={k: v for k, v in kw.items() if k in ("episode_id", "group_id")}) for s in ep.steps]
        return ep.model_copy(update={**kw, "steps": steps})

    with pytest.raises(TamperedDataError, match="group id 'elsewhere:1' is not"):
        refuse_heldout([rename(group_id="elsewhere:1")])
    with pytest.raises(TamperedDataError, match="episode id .* is not .*sample index"):
        refuse_heldout([rename(episode_id=f"{ep.run_id}:{ep.seed}:7")])


def test_honest_train_data_passes_and_a_failed_reset_needs_no_task_hash(runs, tmp_path):
    eps = list(TrajectoryStore(runs["train"], readonly=True).episodes())
    refuse_heldout(eps)
    rows = sft_conversations(runs["train"])
    assert len(rows) == N and sft_rows(rows) == rows and sft_rows(str(runs["train"])) == rows
    assert sft_rows(str(write_dataset(rows, tmp_path / "ds", sources=[runs["train"]]))) == rows
    crashed = eps[0].model_copy(update={"steps": [], "task_hash": "", "instruction": "", "verdict": None,
                                        "failure": Failure(kind="env", reason="env reset: boom")})
    refuse_heldout([crashed])  # nothing recorded, nothing to train on: its split is still checked
    with pytest.raises(TamperedDataError, match="no task hash"):
        refuse_heldout([crashed.model_copy(update={"failure": None})])


# --------------------------------------------------------------------- dataset rows
@pytest.mark.parametrize("variant", ["no_env_seed", "blank_hash", "train_labels"])
def test_dataset_rows_of_heldout_tasks_are_refused(runs, tmp_path, variant):
    """PoC 2: rows built from held-out episodes, written by the library's own writer (provenance and
    sha consistent), loaded as train_sft / `rowgym train sft DATASET` load them."""
    held = list(TrajectoryStore(runs["heldout"], readonly=True).episodes())
    train_seeds = RetailEnv.splits.seeds("train", N)
    env = RetailEnv()
    rows = []
    for i, ep in enumerate(held):
        row = {"messages": episode_messages(ep, system_prompt=RetailEnv.system_prompt), "tools": ep.tools,
               "split": "train", "episode_id": ep.episode_id}
        if variant != "no_env_seed":
            row |= {"env_id": ep.env_id, "seed": train_seeds[i],
                    "task_hash": "" if variant == "blank_hash" else env.task_hash(train_seeds[i])}
        rows.append(row)
    d = write_dataset(rows, tmp_path / variant)
    expected = {"no_env_seed": rf"row 0 \({held[0].episode_id}\) has no env_id, seed, task_hash",
                "blank_hash": rf"row 0 \({held[0].episode_id}\) has no task_hash",
                "train_labels": rf"row 0 \({held[0].episode_id}\) \({RETAIL}, seed {train_seeds[0]}\) refused: its "
                                rf"first user message .* is not the one"}[variant]
    with pytest.raises(TamperedDataError, match=expected):
        sft_rows(str(d))
    with pytest.raises(TamperedDataError):
        refuse_heldout_rows(rows)


def test_preference_rows_of_a_heldout_task_are_refused(runs):
    held = next(iter(TrajectoryStore(runs["heldout"], readonly=True).episodes()))
    seed = RetailEnv.splits.seeds("train", 1)[0]
    msgs = episode_messages(held, system_prompt=RetailEnv.system_prompt)
    row = {"prompt": msgs[:2], "chosen": msgs[2:3], "rejected": msgs[2:3], "env_id": RETAIL, "seed": seed,
           "split": "train", "task_hash": RetailEnv().task_hash(seed)}
    with pytest.raises(TamperedDataError, match="first user message"):
        refuse_heldout_rows([row])
    with pytest.raises(TamperedDataError, match="no conversation"):
        refuse_heldout_rows([{k: v for k, v in row.items() if k != "prompt"}])


def test_the_content_oracle_resets_each_seed_once(runs, monkeypatch):
    """Linear and cached: one env per env id, one reset per distinct seed, however many rows share it."""
    resets = []
    real = RetailEnv.reset
    monkeypatch.setattr(RetailEnv, "reset", lambda self, **kw: resets.append(kw["seed"]) or real(self, **kw))
    eps = list(TrajectoryStore(runs["train"], readonly=True).episodes())
    rows = sft_conversations(runs["train"])
    resets.clear()
    refuse_heldout_rows(rows * 4)
    assert sorted(resets) == sorted({e.seed for e in eps})
