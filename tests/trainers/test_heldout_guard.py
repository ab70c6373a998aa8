"""The held-out guard re-derives split and task hash from the env, never from the rows: editing
seed + split (or env id + split) of held-out episodes, even with the shard hashes and the manifest
rewritten to match, does not get them into a training set."""

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
from rowgym.store import HASH_CACHE, IntegrityError, TrajectoryStore
from rowgym.trainers.datasets import TamperedDataError, TaskOracle, refuse_heldout, sft_conversations

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
