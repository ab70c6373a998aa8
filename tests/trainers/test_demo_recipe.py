"""The demo's recipe: checkpoint choice on dev seeds, cache keys that include the code, several seeds."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

torch = pytest.importorskip("torch")


def test_dev_selection_keeps_the_best_checkpoint_and_prefers_the_later_on_ties():
    from rowgym.trainers.dev_selection import DevSelection

    model = torch.nn.Linear(2, 1)
    scores = iter([0.2, 0.7, 0.4, 0.7, 0.1])
    sel = DevSelection(lambda m: {"success_rate": next(scores)}, every=10)
    weights = {}
    for step in (10, 20, 30, 40, 50):
        with torch.no_grad():
            model.weight.fill_(step)
        weights[step] = model.weight.clone()
        sel.check(model, step)
    sel.restore(model)
    assert sel.best_step == 40  # 0.7 at steps 20 and 40: the later one
    assert torch.equal(model.weight, weights[40])
    assert [h["step"] for h in sel.history] == [10, 20, 30, 40, 50]


def test_sft_schedule_decays_and_clips_by_default(tmp_path):
    from rowgym.trainers.sft import SFTOptions, sft_config

    conf = sft_config(tmp_path, SFTOptions(max_steps=10, warmup_steps=2))
    assert getattr(conf.lr_scheduler_type, "value", conf.lr_scheduler_type) == "cosine" and conf.max_grad_norm == 1.0


def test_code_version_changes_when_the_source_changes(tmp_path, monkeypatch):
    from rowgym.trainers.cache_keys import code_version

    pkg = tmp_path / "kpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    before = code_version("kpkg")
    assert code_version("kpkg") == before
    (pkg / "a.py").write_text("X = 2\n")
    assert code_version("kpkg") != before
    sys.modules.pop("kpkg", None)


@pytest.mark.train
@pytest.mark.slow
def test_demo_trains_several_seeds_chooses_on_dev_and_resumes_from_cache(tmp_path, capsys):
    from rowgym.trainers import demo

    args = ["--out", str(tmp_path / "demo"), "--pretrain-steps", "2", "--expert-episodes", "12", "--sft-steps", "4",
            "--sft-warmup", "1", "--select-every", "2", "--dev-episodes", "4", "--eval-episodes", "4",
            "--grpo-steps", "1", "--grpo-prompts-per-step", "2", "--grpo-generations", "2", "--seeds", "0,1",
            "--jobs", "2"]
    r = demo.main(args)
    assert r["seeds"] == [0, 1] and set(r["per_seed"]) == {"0", "1"}
    for res in r["per_seed"].values():
        checks = [c["step"] for c in res["sft"]["dev_checks"]]
        assert checks == [2, 4] and res["sft"]["chosen_step"] in checks
        assert not set(res["dev_seeds"]) & set(res["heldout_seeds"])  # choices never look at held-out seeds
        assert set(res["eval"]) == set(demo.STAGES)
    assert r["summary"]["after SFT"]["success_rate"]["n"] == 2
    assert json.loads((tmp_path / "demo" / "results.json").read_text())["seeds"] == [0, 1]
    stamp = (tmp_path / "demo" / "seed-1" / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    demo.main(args)  # same command again: both seeds come from the cache, nothing is retrained
    out = capsys.readouterr().out
    assert out.count("cached result") == 2
    assert (tmp_path / "demo" / "seed-1" / "results.json").stat().st_mtime_ns == stamp
