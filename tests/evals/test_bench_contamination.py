"""`rowgym bench` refuses (or flags) agents whose training data contains a held-out task."""

import json
import shutil

import pytest
from typer.testing import CliRunner

import rowgym
from rowgym.cli import app
from rowgym.errors import RowgymError
from rowgym.evals.contamination import ContaminationError, load_training_hashes
from rowgym.evals.runner import run_bench
from rowgym.rollouts.engine import CollectConfig, collect

RETAIL = "rowgym/ToolAPI-Retail-v0"
AIRLINE = "rowgym/ToolAPI-Airline-v0"


@pytest.fixture(scope="module")
def training_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    # a "training" run that (wrongly) played the first two held-out seeds of retail
    collect(CollectConfig(env_id=RETAIL, agent="expert", split="heldout", episodes=2, out=root / "leaky",
                          progress=False))
    collect(CollectConfig(env_id=RETAIL, agent="expert", split="train", episodes=6, out=root / "clean",
                          progress=False))
    return root


def _bench(*args: str):
    return CliRunner().invoke(app, ["bench", "--env", RETAIL, "--agent", "expert", "--episodes", "3",
                                    "--no-progress", *args])


def test_bench_refuses_training_data_with_a_heldout_task(training_runs, tmp_path):
    leaky = training_runs / "leaky"
    seeds = rowgym.make(RETAIL).unwrapped.splits.seeds("heldout", 2)
    r = _bench("--training-data", str(leaky), "--out", str(tmp_path / "b"))
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "contaminated" in text and RETAIL in text
    assert f"seeds {seeds}" in text
    h = rowgym.make(RETAIL).unwrapped.task_hash(seeds[0])
    assert h in text
    assert not (tmp_path / "b" / "runs").exists()        # refused before playing anything


def test_clean_training_run_passes(training_runs, tmp_path):
    r = _bench("--training-data", str(training_runs / "clean"), "--out", str(tmp_path / "b"))
    assert r.exit_code == 0, r.output
    assert "Contamination check: clean" in (tmp_path / "b" / "report.html").read_text()
    report = json.loads((tmp_path / "b" / "contamination.json").read_text())
    assert report["clean"] and report["n_training_hashes"] == 6 and report["n_heldout_tasks"] == 3


def test_flag_mode_runs_and_marks_the_report(training_runs, tmp_path):
    r = _bench("--training-data", str(training_runs / "leaky"), "--contamination", "flag", "--out", str(tmp_path / "b"))
    assert r.exit_code == 0, r.output
    assert "CONTAMINATED" in r.output
    page = (tmp_path / "b" / "report.html").read_text()
    assert 'class="banner bad"' in page and "CONTAMINATED" in page
    assert "CONTAMINATED" in (tmp_path / "b" / "report.md").read_text()
    line = json.loads((tmp_path / "leaderboard.jsonl").read_text().splitlines()[0])
    assert line["contaminated"] is True and line["contamination_checked"] is True
    assert json.loads((tmp_path / "b" / "contamination.json").read_text())["overlaps"][0]["env_id"] == RETAIL


def test_dataset_provenance_is_read(tmp_path):
    env = rowgym.make(AIRLINE).unwrapped
    heldout = env.splits.seeds("heldout", 3)
    data = tmp_path / "sft"
    data.mkdir()
    (data / "data.jsonl").write_text("")
    (data / "provenance.json").write_text(json.dumps({"task_hashes": [env.task_hash(heldout[1]), "unrelated"]}))
    with pytest.raises(ContaminationError, match=rf"{AIRLINE}: seeds \[{heldout[1]}\]"):
        run_bench([AIRLINE], ["expert"], episodes=3, training_data=[data], out_dir=tmp_path / "b", progress=False)
    # pointing at the data file finds the provenance beside it
    assert env.task_hash(heldout[1]) in load_training_hashes([data / "data.jsonl"]).hashes


def test_dataset_written_by_trainers_is_read(training_runs, tmp_path):
    datasets = pytest.importorskip("rowgym.trainers.datasets")
    eps = [json.loads(line) for p in (training_runs / "clean").glob("shards/*.jsonl") for line in p.read_text().splitlines()]
    rows = [{"env_id": e["env_id"], "split": e["split"], "task_hash": e["task_hash"], "run_id": e["run_id"]} for e in eps]
    out = datasets.write_dataset(rows, tmp_path / "ds", sources=[training_runs / "clean"])
    found = load_training_hashes([out])
    assert found.hashes == {e["task_hash"] for e in eps}


def test_manifest_alone_recomputes_hashes(training_runs, tmp_path):
    manifest = tmp_path / "leaky-manifest.json"
    shutil.copy(training_runs / "leaky" / "manifest.json", manifest)
    with pytest.raises(ContaminationError):
        run_bench([RETAIL], ["expert"], episodes=2, training_data=[manifest], out_dir=tmp_path / "b", progress=False)


def test_unreadable_training_data_is_a_clear_error(tmp_path):
    with pytest.raises(RowgymError, match="does not exist"):
        load_training_hashes([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RowgymError, match="found no task hashes"):
        load_training_hashes([tmp_path / "empty"])
