"""The learn benchmark: bootstrap CIs, equal budgets, dev-only checkpoint choice, the kind subset, the cache."""

import json
from pathlib import Path

import pytest

import rowgym
from rowgym.envs.toolapi.airline import AirlineEnv
from rowgym.trainers import cache_keys as C
from rowgym.trainers.learn import arms as A
from rowgym.trainers.learn.config import ARMS, LearnConfig
from rowgym.trainers.learn.env import subset_env_id
from rowgym.trainers.learn.stats import bootstrap_ci, cis_overlap, seed_summary

FAMILY = "rowgym/ToolAPI-Airline-v0"


# ------------------------------------------------------------------------------ statistics
def test_bootstrap_ci_hand_computed_cases():
    # constant data: every resample has the same mean
    assert bootstrap_ci([1, 1, 1, 1]) == (1.0, 1.0)
    assert bootstrap_ci([0] * 10) == (0.0, 0.0)
    # two values {0, 1}: resample means are 0, 0.5, 1 with probability 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% percentiles are exactly 0 and 1
    assert bootstrap_ci([0, 1], n_boot=4000) == (0.0, 1.0)
    # 100 episodes at p = 0.5: the normal approximation gives 0.5 +- 1.96 * sqrt(0.25 / 100) = 0.5 +- 0.098
    lo, hi = bootstrap_ci([1, 0] * 50, n_boot=4000, seed=1)
    assert 0.38 <= lo <= 0.42 and 0.58 <= hi <= 0.62
    # deterministic for a seed
    assert bootstrap_ci([1, 0, 0, 1, 1], seed=3) == bootstrap_ci([1, 0, 0, 1, 1], seed=3)


def test_seed_summary_and_overlap():
    s = seed_summary([0.2, 0.4, 0.6])
    assert s["mean"] == pytest.approx(0.4) and s["std"] == pytest.approx(0.2) and s["n"] == 3
    assert seed_summary([0.5])["std"] == 0.0
    assert cis_overlap((0.1, 0.3), (0.25, 0.5)) and not cis_overlap((0.1, 0.2), (0.3, 0.4))


# ------------------------------------------------------------------------------ equal budgets
@pytest.mark.parametrize("budget,stages,k,p", [(128, 2, 4, 4), (96, 3, 4, 2), (256, 4, 8, 4)])
def test_every_arm_spends_exactly_the_budget(budget, stages, k, p):
    cfg = LearnConfig(budget=budget, stages=stages, group_size=k, grpo_prompts_per_step=p)
    cfg.validate()
    for arm in ARMS:
        plan = A.planned_samples(cfg, arm)
        assert len(plan) == stages and sum(plan) == budget, arm


def test_a_budget_that_does_not_split_evenly_is_refused():
    with pytest.raises(ValueError, match="budget"):
        LearnConfig(budget=100, stages=2, group_size=4, grpo_prompts_per_step=4).validate()


def test_a_pretrain_ids_share_outside_0_1_is_refused_before_any_work():
    with pytest.raises(ValueError, match="pretrain_ids is a share"):
        LearnConfig(pretrain_ids=1.5).validate()


@pytest.mark.parametrize("bad", [{"layers": 0}, {"architecture": "gpt2"}, {"induction_steps": -1}])
def test_a_base_model_that_cannot_be_built_is_refused_before_any_work(bad):
    with pytest.raises(ValueError, match="layers must be >= 1, architecture qwen3 or llama and induction_steps >= 0"):
        LearnConfig(**bad).validate()


def test_scale_multiplies_budget_not_the_start():
    cfg = LearnConfig(scale=4).scaled()
    assert cfg.budget == 4 * LearnConfig().budget and cfg.heldout_episodes == 4 * LearnConfig().heldout_episodes
    assert cfg.start_expert_episodes == LearnConfig().start_expert_episodes
    assert cfg.start_sft_steps == LearnConfig().start_sft_steps
    cfg.validate()


# ------------------------------------------------------------------------------ dev-only choice
def test_choose_stage_reads_dev_success_only_and_prefers_the_earliest_tie():
    curve = [{"dev_success": 0.3, "heldout": 0.9}, {"dev_success": 0.5, "heldout": 0.1},
             {"dev_success": 0.5, "heldout": 0.0}]
    assert A.choose_stage(curve) == 1


def test_capped_steps_bound_the_passes_over_a_stage_s_data():
    # 3 DPO pairs in batches of 4, 2 passes: 2 steps (the first runs made 16 = 21 passes and collapsed)
    assert A.capped_steps(3, 4, 2.0, 16) == 2
    assert A.capped_steps(11, 8, 2.0, 32) == 3
    assert A.capped_steps(1000, 8, 2.0, 32) == 32  # plenty of data: the cap is the step limit
    assert A.capped_steps(1, 8, 0.5, 32) == 1  # at least one step when there is data


def test_run_arm_evaluates_heldout_once_on_the_dev_chosen_stage(monkeypatch, tmp_path):
    """Every evaluation before the choice is on dev seeds; held-out is evaluated once, on the dev-best model."""
    cfg = LearnConfig(budget=24, stages=3, group_size=2, grpo_prompts_per_step=2)
    dev_score = {"stage-1": 0.2, "stage-2": 0.6, "stage-3": 0.4}  # stage 2 is best on dev
    calls = []

    def fake_stage_sft(ctx, i, cur, out, runs):
        out.mkdir(parents=True)
        return {"sampled": A.planned_samples(ctx.cfg, "sft")[i], "trained": True}

    def fake_evaluate(model, tok, env_id, seeds, split, **kw):
        calls.append((split, model))
        s = dev_score.get(model, 0.0) if split == "dev" else 0.99
        return A.S.EvalResult(split, list(seeds), [1] * int(s * len(seeds)) + [0] * (len(seeds) - int(s * len(seeds))),
                              0, len(seeds), [1] * len(seeds))

    monkeypatch.setattr(A, "_stage_sft", fake_stage_sft)
    monkeypatch.setattr(A.S, "load", lambda d: (Path(d).name, None))
    monkeypatch.setattr(A, "load_policy", lambda d: (Path(d).name, None))
    monkeypatch.setattr(A.S, "evaluate", fake_evaluate)
    ctx = A.ArmContext(cfg, "env", 0, tmp_path / "start", tmp_path / "base", tmp_path / "expert", tmp_path / "cache",
                       tmp_path / "arm", dev=list(range(10)), heldout=list(range(100, 110)))
    res = A.run_arm("sft", ctx)
    assert [c[0] for c in calls] == ["dev", "dev", "dev", "heldout"]
    assert calls[-1] == ("heldout", "stage-2") and res.chosen_stage == 2
    assert res.sampled_episodes == cfg.budget == res.curve[-1]["sampled_episodes"]
    assert json.loads((tmp_path / "arm" / "arm_result.json").read_text())["chosen_stage"] == 2


# ------------------------------------------------------------------------------ kind subset env
def test_notes_say_where_the_start_lies_and_how_many_grpo_steps_had_no_signal():
    from rowgym.trainers.learn.run import _notes

    def row(arm, mean, ci):
        return {"arm": arm, "success": {"mean": mean}, "ci": ci}

    grpo = [A.ArmResult("grpo", s, curve=[{"grpo_steps": [1, 2, 3, 4], "skipped_steps": k}]) for s, k in [(0, 3), (1, 1)]]
    summary = {"rows": [row("start", 0.15, [0.12, 0.18]), row("grpo", 0.30, [0.26, 0.34])]}
    notes = _notes(LearnConfig(seeds="0,1"), summary, grpo)
    assert any("below the intended 0.2-0.7" in n for n in notes)
    assert "grpo: 4 of 8 optimizer steps had no signal (every group's rewards equal)" in notes
    assert any("+0.150" in n and "do not overlap" in n and "meets" in n for n in notes)
    summary["rows"][0] = row("start", 0.8, [0.75, 0.85])
    assert any("above the intended" in n for n in _notes(LearnConfig(), summary, []))


def test_departures_name_the_first_call_that_leaves_the_gold_plan():
    from types import SimpleNamespace

    from rowgym.rows import Action
    from rowgym.trainers.learn.departures import ON_PLAN, SUCCESS, count_departures, departure, merge

    env = rowgym.make(subset_env_id(FAMILY, ["cancel", "cabin", "baggage"], "gold"))
    tools = {t.name: t for t in env.tool_list}
    seed = next(s for s in env.splits.seeds("train", 40) if env.make_task(s).kind == "cancel")
    gold = env.make_task(seed).gold

    def text(name, args):
        return f'<think>\n\n</think>\n\n<tool_call>\n{json.dumps({"name": name, "arguments": args})}\n</tool_call>'

    def steps(*texts):
        return [SimpleNamespace(action=Action(text=t)) for t in texts]

    plan = [text(g.name, json.loads(g.arguments)) for g in gold]
    assert departure(gold, steps(*plan), tools, success=True) == SUCCESS
    assert departure(gold, steps(*plan), tools, success=False) == ON_PLAN
    # the same arguments, keys reordered and spaced differently, are the same call
    args = json.loads(gold[0].arguments)
    respaced = '<tool_call>\n{"arguments": ' + json.dumps(dict(reversed(list(args.items()))), indent=2) + \
        f', "name": "{gold[0].name}"}}\n</tool_call>'
    assert departure(gold, steps(respaced, *plan[1:]), tools, success=False) == ON_PLAN
    wrong_tool = text("update_reservation_baggages", {"reservation_id": json.loads(gold[2].arguments)["reservation_id"],
                                                      "total_baggages": 1})
    assert departure(gold, steps(*plan[:2], wrong_tool), tools, False) == "call 3 (cancel_reservation): wrong tool"
    wrong_id = text(gold[1].name, {"reservation_id": "R000000"})
    assert departure(gold, steps(plan[0], wrong_id), tools, False) == "call 2 (get_reservation_details): wrong arguments"
    assert departure(gold, steps("<tool_call>{nope"), tools, False) == "call 1 (get_user_details): malformed"
    assert departure(gold, steps(text("no_such_tool", {})), tools, False) == "call 1 (get_user_details): wrong tool"
    assert departure(gold, steps(*plan[:2]), tools, False) == "call 3 (cancel_reservation): not made (episode ended)"
    eps = [SimpleNamespace(seed=seed, steps=steps(*plan), success=True),
           SimpleNamespace(seed=seed, steps=steps(*plan[:2], wrong_tool), success=False)] * 2
    counts = count_departures(env, eps)
    assert counts == {SUCCESS: 2, "call 3 (cancel_reservation): wrong tool": 2}
    assert merge([counts, {SUCCESS: 1}]) == {SUCCESS: 3, "call 3 (cancel_reservation): wrong tool": 2}
    assert count_departures(object(), eps) == {}  # an env without gold plans: nothing to compare


def test_subset_env_keeps_the_family_split_and_tasks():
    env_id = subset_env_id(FAMILY, ("cancel", "baggage"), "gold")
    env = rowgym.make(env_id)
    fam = AirlineEnv()
    try:
        for split in ("train", "dev", "heldout"):
            seeds = env.splits.seeds(split, 12)
            assert len(set(seeds)) == 12
            for s in seeds:
                assert fam.splits.split_of(s).value == split
                assert env.make_task(s).kind in ("cancel", "baggage")
                assert env.task_hash(s) == fam.task_hash(s)
        names = {t["function"]["name"] for t in env.tools}
        assert names == {"get_user_details", "get_reservation_details", "cancel_reservation",
                         "update_reservation_baggages", "finish"}
        # the gold plan still solves a held-out task with the reduced tool list
        obs, info = env.reset(seed=env.splits.seeds("heldout", 1)[0])
        assert info["split"] == "heldout"
        for c in env.task.gold:
            obs, r, term, trunc, info = env.step(c)
        assert term and info["verdict"].success
    finally:
        env.close()
        fam.close()


# ------------------------------------------------------------------------------ cache keys
def test_cache_key_changes_with_code_params_and_upstream(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "learn_cache_mod.py").write_text("x = 1\n")
    built = []

    def build(d):
        built.append(d)
        (d / "out.txt").write_text(str(len(built)))

    a = C.cached(tmp_path / "c", "art", {"n": 1}, build, code=["learn_cache_mod"])
    assert C.cached(tmp_path / "c", "art", {"n": 1}, build, code=["learn_cache_mod"]) == a and len(built) == 1
    (tmp_path / "src" / "learn_cache_mod.py").write_text("x = 2\n")  # same params, new code: a stale artefact must not be reused
    b = C.cached(tmp_path / "c", "art", {"n": 1}, build, code=["learn_cache_mod"])
    assert b != a and len(built) == 2
    c = C.cached(tmp_path / "c", "down", {}, build, upstream=[a])
    d = C.cached(tmp_path / "c", "down", {}, build, upstream=[b])
    assert c != d and len(built) == 4


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def boom(d):
        (d / "half.txt").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        C.cached(tmp_path, "art", {}, boom)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ smoke
@pytest.mark.train
@pytest.mark.slow
def test_pipeline_smoke_tiny_sizes(tmp_path, capsys):
    from rowgym.trainers.learn.run import main

    res = main(["--out", str(tmp_path / "learn"), "--arms", "sft,grpo", "--pretrain-steps", "2", "--induction-steps", "2",
                "--start-expert-episodes", "4", "--start-sft-steps", "1", "--budget", "8", "--stages", "2",
                "--group-size", "2", "--grpo-prompts-per-step", "2", "--arm-sft-steps", "1", "--dev-episodes", "2",
                "--heldout-episodes", "3", "--workers", "1", "--max-turns", "2", "--max-turn-tokens", "8"])
    out = capsys.readouterr().out
    assert "held-out success [95% CI]" in out and "(a) more SFT" in out and "(d) GRPO" in out
    rows = {r["arm"]: r for r in res["summary"]["rows"]}
    assert set(rows) == {"start", "sft", "grpo"}
    assert rows["sft"]["sampled_episodes"] == rows["grpo"]["sampled_episodes"] == 8
    assert all(r["episodes"] == 3 for r in rows.values())
    assert all(sum(r["departures"].values()) == 3 for r in rows.values())  # every held-out episode placed
    html = (tmp_path / "learn" / "report.html").read_text()
    assert "Where held-out episodes leave the gold plan" in html
    assert "data:image/png;base64," in html and (tmp_path / "learn" / "learn.png").stat().st_size > 1000
    results = json.loads((tmp_path / "learn" / "results.json").read_text())
    assert results["env_id"].startswith("rowgym-learn/") and results["starts"]["0"]["checks"]
    from rowgym.trainers.learn.report import render

    png, page = render(tmp_path / "learn")  # re-rendered from results.json alone
    assert png.stat().st_size > 1000 and "SFT start" in page.read_text()


def test_pretrained_base_with_an_induction_warm_up(tmp_path):
    """make learn's base: the llama network, a few repeated-token steps, then the copy pretraining."""
    import json

    from transformers import AutoConfig

    from rowgym.trainers.learn import stages as S

    model = S.pretrained_model(tmp_path, steps=1, seed=0, architecture="llama", induction_steps=3)
    curve = json.loads((model.parent / "induced" / "induction.json").read_text())
    assert [c["step"] for c in curve] == [0, 3] and all(0 <= c["copy_acc"] <= 1 for c in curve)
    assert AutoConfig.from_pretrained(model).model_type == "llama"
    assert json.loads((model / "rowgym_pretrain.json").read_text())["base"].endswith("induced")
    plain = S.pretrained_model(tmp_path, steps=1, seed=0, architecture="llama")
    assert plain != model and not (plain.parent / "induced").exists()  # the warm-up is part of the key


def test_loading_a_model_dir_without_a_tokenizer_fails_loudly(tmp_path):
    """An RL checkpoint holds weights only; AutoTokenizer would give an empty tokenizer for it, silently."""
    from rowgym.trainers.learn import stages as S

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        S.load(tmp_path)


@pytest.mark.train
def test_the_sft_start_is_its_best_dev_check_and_stops_at_the_target(tmp_path, monkeypatch):
    """Dev success 0.0, 0.5, 0.25, 0.25 at steps 1-4 (scripted: the test is about the choice, not the
    evaluation): the start holds step 2's weights, not the last step's. A target of 0.5 stops it at step 2."""
    import torch
    from transformers import AutoModelForCausalLM

    from rowgym.trainers.learn import stages as S

    env_id = subset_env_id(FAMILY, ("cancel",), "gold")
    base = S.pretrained_model(tmp_path, steps=1, seed=0)
    expert = S.expert_run(tmp_path, env_id, 4, 0)

    def run(cache: Path, target: float) -> tuple[Path, dict, list[dict]]:
        dev_success, weights = iter([0.0, 0.5, 0.25, 0.25]), []

        def scripted(model, tok, env_id, seeds, split, **kw):
            weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return S.EvalResult(split, list(seeds), [0] * len(seeds), 0, 1, [1] * len(seeds)), next(dev_success)

        monkeypatch.setattr(S, "evaluate", lambda *a, **kw: _with_rate(*scripted(*a, **kw)))
        start = S.sft_start(cache, base, expert, steps=4, batch=2, lr=1e-3, seed=0, env_id=env_id, dev=[1, 2, 3, 4],
                            target=target, every=1, max_turns=2, max_tokens=8)
        return start, json.loads((start.parent / "start.json").read_text()), weights

    start, info, weights = run(tmp_path / "never", target=1.0)
    assert [c["step"] for c in info["checks"]] == [1, 2, 3, 4] and info["steps"] == 4
    assert info["chosen_step"] == 2 and info["dev_success"] == 0.5 and info["stopped"].startswith("max steps")
    saved = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32).state_dict()
    assert all(torch.equal(saved[k], weights[1][k]) for k in weights[1])  # step 2's weights
    assert not all(torch.equal(saved[k], weights[3][k]) for k in weights[3])  # not the last step's
    _, info, _ = run(tmp_path / "target", target=0.5)
    assert [c["step"] for c in info["checks"]] == [1, 2] and info["chosen_step"] == 2
    assert info["stopped"] == "reached the dev target"


def _with_rate(result, rate: float):
    """An EvalResult whose success rate is ``rate`` (the scripted dev success of a check)."""
    n = len(result.seeds)
    result.success = [1] * round(rate * n) + [0] * (n - round(rate * n))
    return result


def test_arm_e_credits_turns_unlike_arm_d():
    """With the env's per-step rewards at weight 0 (and gamma 1), turn credit is exactly GRPO's: (e) must use them."""
    from dataclasses import asdict

    cfg = LearnConfig()
    d, e = A.grpo_options(cfg, "grpo", 0), A.grpo_options(cfg, "grpo_turn", 0)
    assert (d.credit, d.local_reward_weight) == ("grpo", 0.0)
    assert e.credit == "turn" and e.local_reward_weight == cfg.turn_local_weight > 0
    rest = lambda o: {k: v for k, v in asdict(o).items() if k not in ("credit", "local_reward_weight")}  # noqa: E731
    assert rest(d) == rest(e) and d.max_steps * d.batch_size == cfg.budget  # everything else equal, the same budget


# ------------------------------------------------------------------------------ the dev-only sweep
def test_sweep_grid_is_every_combination_and_refuses_what_is_not_a_recipe():
    from rowgym.trainers.learn.sweep import parse_grid

    grid = parse_grid(["temperature=0.7,1.0", "grpo-lr=1e-4,3e-4"])
    assert grid == [{"temperature": 0.7, "grpo_lr": 1e-4}, {"temperature": 0.7, "grpo_lr": 3e-4},
                    {"temperature": 1.0, "grpo_lr": 1e-4}, {"temperature": 1.0, "grpo_lr": 3e-4}]
    assert parse_grid([]) == [{}]  # no grid: the defaults, once
    assert parse_grid(["arm_sft_steps=8"]) == [{"arm_sft_steps": 8}]  # typed as the option
    for bad, said in [("nope=1", "one of make learn's options"), ("grpo_lr", "OPTION=V1"),
                      ("grpo_lr=fast", "could not convert"), ("temperature=", "no values"),
                      ("heldout_episodes=10,20", "not a recipe option"), ("seeds=0,1", "not a recipe option")]:
        with pytest.raises(ValueError, match=said):
            parse_grid([bad])


@pytest.mark.train
@pytest.mark.slow
def test_sweep_trains_each_point_and_never_plays_a_heldout_seed(tmp_path, monkeypatch, capsys):
    from rowgym.trainers.learn import stages
    from rowgym.trainers.learn.sweep import main

    played = []
    real = stages.evaluate

    def spy(model, tokenizer, env_id, seeds, split, **kw):
        played.append((split, tuple(seeds)))
        return real(model, tokenizer, env_id, seeds, split, **kw)

    monkeypatch.setattr(stages, "evaluate", spy)
    res = main(["--out", str(tmp_path / "sweep"), "--arms", "grpo", "--grid", "grpo_lr=1e-4,1e-2",
                "--pretrain-steps", "2", "--induction-steps", "2", "--start-expert-episodes", "4",
                "--start-sft-steps", "1", "--budget", "8", "--stages", "2", "--group-size", "2",
                "--grpo-prompts-per-step", "2", "--dev-episodes", "2", "--heldout-episodes", "3", "--workers", "1",
                "--max-turns", "2", "--max-turn-tokens", "8"])
    out = capsys.readouterr().out
    assert "grpo_lr=0.0001" in out and "grpo_lr=0.01" in out and "held-out episodes played: 0" in out
    assert [r["point"] for r in res["rows"]] == [{"grpo_lr": 1e-4}, {"grpo_lr": 1e-2}]
    assert all(len(r["curves"]) == 1 and len(r["curves"][0]) == 2 for r in res["rows"])  # one seed, two stages
    heldout = set(rowgym.make(subset_env_id(FAMILY, ["cancel", "cabin", "baggage"], "gold")).splits.seeds("heldout", 3))
    assert played and {s for s, _ in played} == {"dev"}
    assert not heldout & {x for _, seeds in played for x in seeds}
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["heldout_episodes_played"] == 0
    # both points share the one cached start: its options are not swept
    assert len(list((tmp_path / "sweep" / "cache").glob("sft-start-*"))) == 1
