"""The pipeline of ``make learn``: SFT start per training seed, five arms in parallel, table + report."""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rowgym.trainers.learn import stages as S
from rowgym.trainers.learn.arms import ArmContext, ArmResult, run_arm
from rowgym.trainers.learn.config import LearnConfig
from rowgym.trainers.learn.departures import merge as merge_departures
from rowgym.trainers.learn.env import subset_env_id
from rowgym.trainers.learn.stats import bootstrap_ci, seed_summary

BASE_SEED = 0
"""The pretrained base model is one model for every training seed (as a real base model would be)."""


def evaluate_start(ctx: ArmContext) -> ArmResult:
    """The SFT start itself on dev and held-out seeds (the 'start' row of the table)."""
    import torch

    torch.set_num_threads(1)
    subset_env_id(ctx.cfg.family, ctx.cfg.kind_list(), ctx.cfg.tools)
    t0, c0 = time.perf_counter(), time.process_time()
    model, _ = S.load(ctx.start)
    _, tok = S.load(ctx.base_tokenizer)
    ev = {"max_turns": ctx.cfg.max_turns, "max_tokens": ctx.cfg.max_turn_tokens}
    d = S.evaluate(model, tok, ctx.env_id, ctx.dev, "dev", **ev)
    h = S.evaluate(model, tok, ctx.env_id, ctx.heldout, "heldout", **ev)
    res = ArmResult("start", ctx.seed, curve=[{"stage": 0, "sampled_episodes": 0, "dev_success": d.success_rate,
                                              "dev_bad_call_rate": d.bad_call_rate, "dev_mean_turns": d.mean_turns}],
                    heldout=h.to_json(), sampled_episodes=ctx.cfg.start_expert_episodes)
    res.wall_s, res.cpu_s = round(time.perf_counter() - t0, 1), round(time.process_time() - c0, 1)
    print(f"[learn] seed {ctx.seed} SFT start: dev {d.success_rate:.3f}, held-out {h.success_rate:.3f}", flush=True)
    return res


def _child(arm: str, ctx: ArmContext) -> ArmResult:
    subset_env_id(ctx.cfg.family, ctx.cfg.kind_list(), ctx.cfg.tools)  # a spawned process registers the env again
    ctx = replace(ctx, out=ctx.out / arm)
    return evaluate_start(ctx) if arm == "start" else run_arm(arm, ctx)


def summarize(cfg: LearnConfig, results: list[ArmResult], start_wall: dict[int, float]) -> dict[str, Any]:
    """Per arm: mean and spread over seeds, a bootstrap CI over all held-out episodes, the curves."""
    rows, curves = [], {}
    arms = ["start"] + [a for a in cfg.arm_list()]
    for arm in arms:
        rs = sorted((r for r in results if r.arm == arm), key=lambda r: r.seed)
        if not rs:
            continue
        per_seed = [r.heldout["success_rate"] for r in rs]
        pooled = [x for r in rs for x in r.heldout["success"]]
        steps = sum(r.heldout["turns"] and sum(r.heldout["turns"]) for r in rs)
        bad = sum(r.heldout["bad_call_rate"] * sum(r.heldout["turns"]) for r in rs)
        wall = [r.wall_s + (start_wall.get(r.seed, 0.0) if arm == "start" else 0.0) for r in rs]
        rows.append({"arm": arm, "success": seed_summary(per_seed), "per_seed": per_seed,
                     "ci": bootstrap_ci(pooled, n_boot=cfg.n_boot, seed=0), "episodes": len(pooled),
                     "bad_call_rate": bad / max(1, steps), "mean_turns": steps / max(1, len(pooled)),
                     "sampled_episodes": rs[0].sampled_episodes, "wall_s": sum(wall) / len(wall),
                     "chosen_stages": [r.chosen_stage for r in rs],
                     "departures": merge_departures([r.heldout.get("departures", {}) for r in rs])})
        if arm != "start":
            starts = {r.seed: r.curve[0]["dev_success"] for r in results if r.arm == "start"}
            curves[arm] = [[(0, starts.get(r.seed, float("nan")))] +
                           [(c["sampled_episodes"], c["dev_success"]) for c in r.curve] for r in rs]
    return {"rows": rows, "curves": curves, "n_seeds": len(cfg.seed_list()), "budget": cfg.budget,
            "dev_episodes": cfg.dev_episodes, "heldout_episodes": cfg.heldout_episodes}


@dataclass
class Setup:
    """What every arm of every training seed starts from: the env, its splits and the cached artefacts."""

    env_id: str
    dev: list[int]
    heldout: list[int]
    base: Path
    ctxs: list[ArmContext]
    starts: dict[int, dict[str, Any]]
    """Per training seed: the start's ``start.json`` (its dev checks, the step chosen, where it stopped)."""
    times: dict[str, float]
    start_wall: dict[int, float]


def prepare(cfg: LearnConfig, out: Path) -> Setup:
    """Build (or take from the cache) the base model, the expert data and one SFT start per training seed."""
    import torch

    import rowgym

    cache = Path(cfg.cache) if cfg.cache else out / "cache"
    torch.set_num_threads(cfg.threads or max(1, cfg.workers))  # the serial parts use every worker's core
    env_id = subset_env_id(cfg.family, cfg.kind_list(), cfg.tools)
    env = rowgym.make(env_id)
    dev, heldout = env.splits.seeds("dev", cfg.dev_episodes), env.splits.seeds("heldout", cfg.heldout_episodes)
    env.close()
    S.log(f"{env_id}: {len(dev)} dev and {len(heldout)} held-out seeds; arms {cfg.arm_list()}; seeds {cfg.seed_list()}")

    times: dict[str, float] = {}
    t = time.perf_counter()
    base = S.pretrained_model(cache, cfg.pretrain_steps, BASE_SEED, cfg.pretrain_ids, cfg.layers,
                              cfg.architecture, cfg.induction_steps)
    times["pretrained base model"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    expert = S.expert_run(cache, env_id, cfg.start_expert_episodes, 0)
    times["expert data"] = round(time.perf_counter() - t, 1)
    ctxs, start_wall, starts = [], {}, {}
    for seed in cfg.seed_list():
        t = time.perf_counter()
        start = S.sft_start(cache, base, expert, steps=cfg.start_sft_steps, batch=cfg.sft_batch, lr=cfg.sft_lr,
                            seed=seed, env_id=env_id, dev=dev, target=cfg.start_target,
                            every=cfg.start_check_every, max_turns=cfg.max_turns, max_tokens=cfg.max_turn_tokens)
        starts[seed] = json.loads((start.parent / "start.json").read_text())
        start_wall[seed] = round(time.perf_counter() - t, 1)
        times[f"SFT start seed {seed}"] = start_wall[seed]
        ctxs.append(ArmContext(cfg, env_id, seed, start, base, expert, cache, out / f"seed-{seed}", dev, heldout))
    return Setup(env_id, dev, heldout, base, ctxs, starts, times, start_wall)


def run_jobs(cfg: LearnConfig, jobs: list[tuple[str, ArmContext]]) -> list[ArmResult]:
    """Run (arm, context) jobs, ``cfg.workers`` at a time, each in its own process with one torch thread."""
    import torch

    torch.set_num_threads(1)
    if cfg.workers <= 1:
        return [_child(a, c) for a, c in jobs]
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=get_context("spawn")) as pool:
        return [fut.result() for fut in [pool.submit(_child, a, c) for a, c in jobs]]


def run_learn(cfg: LearnConfig) -> dict[str, Any]:
    from rowgym.trainers.learn import report

    cfg = cfg.scaled()
    cfg.validate()
    t0, c0 = time.perf_counter(), time.process_time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    setup = prepare(cfg, out)
    env_id, dev, heldout, times, start_wall, starts = (setup.env_id, setup.dev, setup.heldout, setup.times,
                                                       setup.start_wall, setup.starts)
    prompt_tokens = _prompt_tokens(setup.base, env_id)
    jobs = [(arm, ctx) for ctx in setup.ctxs for arm in ["start"] + cfg.arm_list()]
    t = time.perf_counter()
    results = run_jobs(cfg, jobs)
    times["arms (parallel)"] = round(time.perf_counter() - t, 1)

    summary = summarize(cfg, results, start_wall)
    lines = report.table_lines(summary)
    notes = [f"seed {k}: SFT start = the checkpoint of step {v['chosen_step']} (dev success {v['dev_success']}) of "
             f"{v['steps']} SFT steps on {cfg.start_expert_episodes} expert episodes ({v['stopped']})"
             for k, v in starts.items()]
    notes += _notes(cfg, summary, results)
    res = {"config": asdict(cfg), "env_id": env_id, "prompt_tokens": prompt_tokens, "starts": starts, "dev_seeds": dev,
           "heldout_seeds": heldout, "summary": summary, "arms": [r.__dict__ for r in results], "times_s": times,
           "notes": notes, "table": lines, "wall_s": round(time.perf_counter() - t0, 1),
           "cpu_s": round(time.process_time() - c0, 1), "cpu_count": os.cpu_count()}
    png = report.plot(summary, out / "learn.png", {str(k): v for k, v in starts.items()})
    res["plot"], res["report"] = str(png), str(out / "report.html")
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    report.write_html(summary, res, png, out / "report.html")
    print()
    print(f"rowgym learn · {env_id} · budget {cfg.budget} sampled episodes per arm · {len(heldout)} held-out "
          f"episodes · seeds {cfg.seed_list()} · wall {res['wall_s']:.0f}s")
    print("\n".join(lines))
    for n in notes:
        print(f"note: {n}")
    print(f"report: {out / 'report.html'}  plot: {png}  results: {out / 'results.json'}")
    return res


def _prompt_tokens(model_dir: Path, env_id: str) -> int:
    from transformers import AutoTokenizer

    import rowgym

    tok = AutoTokenizer.from_pretrained(model_dir)
    env = rowgym.make(env_id)
    obs, _ = env.reset(seed=env.splits.seeds("train", 1)[0])
    msgs = [{"role": "system", "content": env.system_prompt}, {"role": "user", "content": obs}]
    n = len(tok.apply_chat_template(msgs, tools=env.tools, tokenize=True, add_generation_prompt=True,
                                    return_dict=True)["input_ids"])
    env.close()
    return n


def _notes(cfg: LearnConfig, summary: dict[str, Any], results: list[ArmResult]) -> list[str]:
    rows = {r["arm"]: r for r in summary["rows"]}
    notes = []
    start = rows.get("start")
    if start and start["success"]["mean"] < 0.2:
        notes.append(f"the SFT start's held-out success {start['success']['mean']:.3f} is below the intended "
                     "0.2-0.7: sampled groups rarely hold a success, so RSFT accepts few samples, DPO finds few "
                     "pairs and many GRPO groups have advantage 0 (no signal)")
    elif start and start["success"]["mean"] > 0.7:
        notes.append(f"the SFT start's held-out success {start['success']['mean']:.3f} is above the intended "
                     "0.2-0.7: little is left for the arms to gain")
    for arm in ("grpo", "grpo_turn"):
        stages = [c for r in results if r.arm == arm for c in r.curve]
        steps = sum(len(c.get("grpo_steps", [])) for c in stages)
        if steps:
            skipped = sum(int(c.get("skipped_steps", 0)) for c in stages)
            notes.append(f"{arm}: {skipped} of {steps} optimizer steps had no signal (every group's rewards equal)")
    if start:
        best = max((r for a, r in rows.items() if a != "start"), key=lambda r: r["success"]["mean"], default=None)
        if best:
            gain = best["success"]["mean"] - start["success"]["mean"]
            sep = best["ci"][0] > start["ci"][1]
            notes.append(f"best arm {best['arm']}: {gain:+.3f} held-out success over the SFT start; 95% CIs "
                         f"{'do not overlap' if sep else 'overlap'} ({'meets' if gain >= 0.10 and sep else 'misses'} "
                         f"the +0.10 / non-overlapping bar)")
    if len(cfg.seed_list()) < 3:
        notes.append(f"{len(cfg.seed_list())} training seed(s): the CI covers evaluation noise only; "
                     "run with --seeds 0,1,2 for the spread over training seeds")
    for r in results:
        for n in r.notes:
            notes.append(f"seed {r.seed} {r.arm}: {n}")
    return notes


def config_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with one option per LearnConfig field, its docstring as the help."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    docs = _field_docs()
    for f in fields(LearnConfig):
        default = f.default
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default,
                       help=f"{docs.get(f.name, '')} (default: {default})".replace("%", "%%"))
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = config_parser("python -m rowgym.trainers.learn",
                      "Which trainer moves a policy most at an equal budget of sampled episodes (docs/learn.md).")
    return run_learn(LearnConfig(**vars(p.parse_args(argv))))


def _field_docs() -> dict[str, str]:
    """Field docstrings of LearnConfig (the string literal under each field) for --help."""
    import ast
    import inspect

    from rowgym.trainers.learn import config

    tree = ast.parse(inspect.getsource(config))
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "LearnConfig":
            body = node.body
            for a, b in zip(body, body[1:], strict=False):
                if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
                    out[a.target.id] = " ".join(str(b.value.value).split())  # type: ignore[union-attr]
    return out
