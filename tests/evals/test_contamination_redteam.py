"""The bench's contamination check finds held-out tasks by what the training data says, not by its labels:
a held-out run relabelled as train seeds (task hashes blanked, manifest seed list rewritten, resealed), a
run edited without resealing, a step-level export (no task_hash column) and unreadable lines."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import rowgym
from rowgym.cli import app
from rowgym.envs.toolapi.retail import RetailEnv
from rowgym.errors import RowgymError
from rowgym.evals.contamination import ContaminationError, check_contamination, load_training_hashes, refuse
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.splits import seed_set_hash
from rowgym.store import HASH_CACHE, TrajectoryStore, flatten

pytestmark = pytest.mark.redteam

RETAIL = "rowgym/ToolAPI-Retail-v0"
N = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("contam")
    return {split: collect(CollectConfig(env_id=RETAIL, agent="expert", split=split, episodes=N, out=base / split,
                                         progress=False)).out for split in ("train", "heldout")}


@pytest.fixture
def held_seeds() -> list[int]:
    return RetailEnv.splits.seeds("heldout", N)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _forge_as_train(run: Path, *, reseal: bool = True) -> list[int]:
    """PoC 4: relabel every episode as train seed i, task_hash blanked, manifest seeds rewritten, resealed."""
    train = RetailEnv.splits.seeds("train", N)
    m = json.loads((run / "manifest.json").read_text())
    for p in sorted((run / "shards").glob("*.jsonl")):
        eps = [json.loads(line) for line in p.read_text().splitlines()]
        for i, ep in enumerate(eps):
            ep.update(seed=train[i], split="train", task_hash="")
            for s in ep["steps"]:
                s.update(seed=train[i], split="train")
        p.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in eps))
        for s in m["shards"]:
            if reseal and s["name"] == p.name:
                s["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    m["source"].update(split="train", seeds=train, seed_set_hash=seed_set_hash(RETAIL, "train", train))
    m["identity"]["split"] = "train"
    m["identity_hash"] = None
    (run / "manifest.json").write_text(json.dumps(m))
    (run / HASH_CACHE).unlink(missing_ok=True)
    return train


def test_a_relabelled_resealed_heldout_run_is_found_by_its_content(runs, tmp_path, held_seeds):
    run = _copy(runs["heldout"], tmp_path / "forged")
    _forge_as_train(run)
    assert TrajectoryStore(run, readonly=True).verify() == []  # the forgery passes verification
    report = check_contamination([run], {RETAIL: held_seeds})
    assert not report.clean and sorted(o.seed for o in report.overlaps) == held_seeds
    assert all(o.found_in == (str(run),) for o in report.overlaps)
    assert any("not the task of the seed they claim" in p for p in report.problems)
    with pytest.raises(ContaminationError, match=re.escape(f"seeds {held_seeds}")):
        refuse(report)
    r = CliRunner().invoke(app, ["bench", "--env", RETAIL, "--agent", "expert", "--episodes", str(N), "--no-progress",
                                 "--training-data", str(run), "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "contaminated" in r.output and not (tmp_path / "b" / "runs").exists()


def test_a_run_that_fails_verification_is_read_by_content_and_reported(runs, tmp_path, held_seeds):
    """PoC 3: task_hash fields overwritten in place (the run no longer verifies)."""
    run = _copy(runs["heldout"], tmp_path / "edited")
    for p in (run / "shards").glob("*.jsonl"):
        p.write_text(p.read_text().replace('"task_hash":"', '"task_hash":"00'))
    assert TrajectoryStore(run, readonly=True).verify()
    report = check_contamination([run], {RETAIL: held_seeds})
    assert sorted(o.seed for o in report.overlaps) == held_seeds
    assert any("fails verification" in p for p in report.problems)
    assert "fails verification" in report.message() and report.to_dict()["problems"]


def test_unverified_clean_content_is_still_not_clean(runs, tmp_path, held_seeds):
    """A train run that fails verification overlaps nothing, but cannot be vouched for: refused unless flagged."""
    run = _copy(runs["train"], tmp_path / "train")
    for p in (run / "shards").glob("*.jsonl"):
        p.write_text(p.read_text() + "\n")
    report = check_contamination([run], {RETAIL: held_seeds})
    assert not report.overlaps and not report.clean
    with pytest.raises(ContaminationError, match="cannot rule out contamination: .*fails verification"):
        refuse(report)


def test_a_step_export_without_task_hash_counts(runs, tmp_path, held_seeds):
    """PoC 9: the default `rowgym export` (step rows: env_id/seed/split, no task_hash) in a --training-data folder."""
    folder = tmp_path / "training"
    _copy(runs["train"], folder / "clean_run")
    TrajectoryStore(runs["heldout"], readonly=True).export_parquet(folder / "held_steps.parquet")
    report = check_contamination([folder], {RETAIL: held_seeds})
    assert sorted(o.seed for o in report.overlaps) == held_seeds
    assert any("labelled held-out" in p for p in report.problems)
    # the same export with its labels rewritten to train seeds is still found by its turn-0 observations
    train = RetailEnv.splits.seeds("train", N)
    rows = [r for ep in TrajectoryStore(runs["heldout"], readonly=True).episodes() for r in flatten(ep)]
    for r in rows:
        r.update(seed=train[held_seeds.index(r["seed"])], split="train")
    (folder / "held_steps.parquet").unlink()
    (folder / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = check_contamination([folder], {RETAIL: held_seeds})
    assert sorted(o.seed for o in report.overlaps) == held_seeds
    assert all(o.found_in == (str(folder / "steps.jsonl"),) for o in report.overlaps)


def test_a_file_that_names_no_task_is_an_error(runs, tmp_path):
    folder = _copy(runs["train"], tmp_path / "training" / "run").parent
    (folder / "notes.jsonl").write_text('{"loss": 0.5}\n{"loss": 0.4}\n')
    with pytest.raises(RowgymError, match="notes.jsonl has 2 rows but none names a task"):
        load_training_hashes([folder])


def test_a_jsonl_line_that_is_not_an_object_is_a_clear_error(tmp_path):
    """PoC 8: a list line used to crash the bench with AttributeError."""
    path = tmp_path / "export.jsonl"
    path.write_text('{"task_hash":"abc"}\n["task_hash"]\n')
    with pytest.raises(RowgymError, match="line 2 is a JSON list, not a row object"):
        load_training_hashes([path])


def test_heldout_training_data_off_the_plan_is_reported(runs, held_seeds):
    """Held-out episodes in the training data make the report unclean even for other bench seeds."""
    others = RetailEnv.splits.seeds("heldout", N, start=N)
    report = check_contamination([runs["heldout"]], {RETAIL: others})
    assert not report.overlaps and not report.clean
    assert any(f"{N} x item(s) labelled held-out" in p for p in report.problems)


def test_honest_train_run_is_clean_and_hashes_come_from_content(runs, held_seeds):
    found = load_training_hashes([runs["train"]])
    env = rowgym.make(RETAIL).unwrapped
    eps = list(TrajectoryStore(runs["train"], readonly=True).episodes())
    assert found.hashes == {env.task_hash(e.seed) for e in eps} and not found.problems
    report = check_contamination([runs["train"]], {RETAIL: held_seeds})
    assert report.clean and report.problems == [] and report.message().startswith("clean")
