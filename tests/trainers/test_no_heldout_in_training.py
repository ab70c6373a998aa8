"""No dev or held-out task content reaches any training input: tokenizer corpus, copy-pretraining
corpus, and every dataset file the builders write (SFT, GRPO; RSFT/DPO files are walked the same way
once they exist). Each input is searched for the content hash and the instruction text of the first
200 dev and held-out seeds of every registered tool-API env."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import rowgym
from rowgym.registry import all_specs
from rowgym.rows import Split
from rowgym.splits import content_hash

N = 200


@pytest.fixture(scope="module")
def quarantine() -> dict[str, str]:
    """text -> where it is from: task hashes and instructions of dev + held-out seeds."""
    out: dict[str, str] = {}
    for spec in all_specs():
        if "toolapi" not in spec.tags:
            continue
        env = rowgym.make(spec.id)
        u = env.unwrapped
        try:
            for split in (Split.DEV, Split.HELDOUT):
                for seed in u.splits.seeds(split, N):
                    task = u.make_task(seed)
                    out[content_hash(u.task_content(task))] = f"{spec.id} {split.value} seed {seed} (hash)"
                    out[u.instruction(task)] = f"{spec.id} {split.value} seed {seed} (instruction)"
        finally:
            env.close()
    assert len(out) > 1000
    return out


def strings(obj) -> Iterator[str]:
    """Every string inside a JSON value (keys included)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from strings(v)


def dataset_texts(root: Path) -> Iterator[str]:
    """Every string of every data file under ``root`` (any builder: *.jsonl rows, parquet columns).
    The manifests are not training inputs (isolation.json lists the quarantine by design)."""
    for path in sorted(root.rglob("*")):
        if path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                if line.strip():
                    yield from strings(json.loads(line))
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq
            yield from strings(pq.read_table(path).to_pylist())


def leaks(texts: Iterable[str], quarantine: dict[str, str]) -> list[str]:
    blob = "\n".join(texts)
    return [f"{where}: {q[:80]!r}" for q, where in quarantine.items() if q and q in blob]


def test_tokenizer_corpus_has_no_quarantined_text(quarantine):
    from rowgym.trainers.tiny_model import TinyModelConfig, tokenizer_corpus

    found = leaks(tokenizer_corpus(TinyModelConfig()), quarantine)
    assert not found, f"{len(found)} dev/held-out texts in the tokenizer corpus, e.g. {found[:3]}"


def test_the_walker_catches_the_old_env_corpus(quarantine):
    """The corpus the tiny model used before builder 4 (seeds 0..N-1 of every split) is caught."""
    from rowgym.trainers.tiny_model import _env_corpus

    def old_env_corpus(n_seeds: int) -> list[str]:
        lines = []
        for spec in all_specs():
            if "toolapi" not in spec.tags:
                continue
            env = rowgym.make(spec.id)
            try:
                for seed in range(n_seeds):
                    lines.append(env.reset(seed=seed)[0])
            finally:
                env.close()
        return lines

    assert leaks(old_env_corpus(40), quarantine)
    assert not leaks(_env_corpus(40), quarantine)


def test_builder_version_keys_the_cache():
    from rowgym.trainers.tiny_model import BUILDER_VERSION, TinyModelConfig

    assert BUILDER_VERSION >= 4  # 3 trained the tokenizer on dev/held-out text; such caches are rebuilt
    assert TinyModelConfig().params_hash("t") != TinyModelConfig(env_corpus_seeds=299).params_hash("t")


def test_pretraining_corpus_has_no_quarantined_text(quarantine):
    from rowgym.trainers.pretrain import corpus_texts

    assert not leaks(corpus_texts(3000), quarantine)
    assert not leaks(corpus_texts(3000, ids=1.0), quarantine)  # make learn --pretrain-ids


def test_dataset_files_have_no_quarantined_text(quarantine, tmp_path):
    run = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "rowgym.cli", "collect", "rowgym/ToolAPI-Home-v0", "--agent", "expert",
                    "--episodes", "30", "--out", str(run), "--no-progress"], check=True, capture_output=True)
    for args in (["sft", str(run)], ["grpo", "rowgym/ToolAPI-Retail-v0", "--n", "30"],
                 ["grpo", "rowgym/ToolAPI-Home-v0", "--n", "30"]):
        out = tmp_path / "data" / "-".join(Path(a).name for a in args)
        res = subprocess.run([sys.executable, "-m", "rowgym.cli", "dataset", *args, "--out", str(out)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
    texts = list(dataset_texts(tmp_path / "data"))
    assert len(texts) > 100
    found = leaks(texts, quarantine)
    assert not found, f"{len(found)} dev/held-out texts in the datasets, e.g. {found[:3]}"
