"""The end-to-end demo: tiny model -> expert data (train seeds) -> SFT -> GRPO -> held-out evaluation,
repeated over training seeds.

    python -m rowgym.trainers.demo --out runs/demo          # make demo
    python -m rowgym.trainers.demo --out runs/demo --seeds 0,1,2,3,4 --jobs 2

Steps, all on CPU:

1. build the tiny Qwen3 model (random init, offline tokenizer, TRL's Qwen3 template) and
   give it a short generic copy pretraining (:mod:`rowgym.trainers.pretrain`: synthetic
   requests -> JSON arguments, no tools and no env tasks), the stand-in for a base model.
   It is built once and shared by every training seed, as a real base model would be;
2. collect scripted-expert episodes on **train** seeds of ``rowgym/ToolAPI-Home-v0``;
3. evaluate that base model on **held-out** seeds (success rate, greedy decoding);
4. for each training seed (``--seeds``; ``--jobs`` of them at once, one torch thread each):
   tool-use SFT on the expert conversations (assistant-only loss, warm-up then cosine decay,
   gradient clipping), scored on **dev** seeds every ``--select-every`` steps; the best dev
   checkpoint is kept (:class:`rowgym.trainers.dev_selection.DevSelection`); evaluate it on
   held-out seeds; then a few steps of multi-turn GRPO on train seeds through
   :mod:`rowgym.trainers.rl` (the rollout engine plays every group of a step at once into the
   run store ``seed-S/grpo/run``, the trainer consumes complete groups, observations masked);
   evaluate again;
5. write ``results.json`` (per seed, and mean / sd / min / max over seeds), ``curves.png``
   and print a table.

Held-out seeds are goals (combinations of actions) that no training seed has; the evaluation
uses the same held-out seeds at every stage and for every seed, and no choice looks at them.
Each seed's result is cached in ``seed-S/results.json`` under a key of the config, the base
model and the source of the code that produced it: a rerun of the same command resumes at
the first seed not done, and changed code never reuses an old result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ENV_ID = "rowgym/ToolAPI-Home-v0"
STAGES = ("before SFT", "after SFT", "after GRPO")
RESULT_FILE = "results.json"
CODE_MODULES = ("rowgym.trainers.demo", "rowgym.trainers.sft", "rowgym.trainers.grpo", "rowgym.trainers.rl",
                "rowgym.trainers.datasets", "rowgym.trainers.dev_selection", "rowgym.trainers.pretrain",
                "rowgym.trainers.tiny_model", "rowgym.agents", "rowgym.rollouts", "rowgym.envs.toolapi",
                "rowgym.rewards")
"""The source whose hash keys each seed's cached result."""


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    env_id: str = ENV_ID
    expert_episodes: int = 1000
    pretrain_steps: int = 1000
    """Generic copy pretraining of the tiny model (0: start SFT from random init)."""
    sft_steps: int = 800
    sft_batch: int = 8
    sft_lr: float = 2e-3
    """Peak SFT learning rate, reached after ``sft_warmup`` steps, then cosine decay to 0."""
    sft_warmup: int = 40
    select_every: int = 100
    """Score the SFT model on dev seeds every this many steps; the best is kept (0: keep the last)."""
    dev_episodes: int = 60
    grpo_steps: int = 8
    grpo_generations: int = 4
    grpo_prompts_per_step: int = 4
    grpo_lr: float = 2e-5
    grpo_temperature: float = 1.0
    grpo_max_staleness: int = 0
    grpo_credit: str = "grpo"
    eval_episodes: int = 100
    """Held-out episodes per evaluation."""
    max_turns: int = 4
    max_turn_tokens: int = 60
    model: str = "tiny"
    """tiny (hidden 128, 2 layers) or small (hidden 256, 4 layers), or a model directory."""
    seed: int = 0
    """Seed of the base model (init and pretraining), shared by every training seed."""
    seeds: str = "0,1,2"
    """Training seeds (SFT data order and init of the step, GRPO sampling), comma-separated."""
    jobs: int = 0
    """Training seeds run at once, each in its own process (0: one per CPU core, at most one per seed)."""
    threads: int = 0
    """torch threads per process (0: 1 when seeds run in parallel, else torch's default)."""

    def seed_list(self) -> list[int]:
        return [int(s) for s in str(self.seeds).split(",") if s.strip()]


MODELS = {"tiny": {}, "small": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                                    num_attention_heads=4, num_key_value_heads=2)}


def evaluate(model: Any, tokenizer: Any, env_id: str, seeds: list[int], *, max_turns: int, max_tokens: int,
             split: str = "heldout") -> dict:
    """Greedy evaluation with the in-process HF policy, through the rollout engine (every episode in
    flight at once, their turns sampled in batches): success rate, mean final reward, bad calls, turns."""
    from rowgym.trainers.evaluation import greedy_episodes

    eps = greedy_episodes(model, tokenizer, env_id, seeds, split, max_turns=max_turns, max_tokens=max_tokens,
                          max_batch=len(seeds))
    n = len(eps)
    return {"episodes": n, "success_rate": sum(e.success for e in eps) / n,
            "mean_final_reward": sum(e.final_reward for e in eps) / n,
            "bad_call_rate": sum(e.n_bad_calls for e in eps) / max(1, sum(len(e.steps) for e in eps)),
            "mean_turns": sum(len(e.steps) for e in eps) / n}


class _Clock:
    """Wall and CPU time per named phase (CPU time is less noisy on a shared machine)."""

    def __init__(self, tag: str):
        self.tag, self.times, self.cpu = tag, {}, {}
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.t, self.c = self.t0, self.c0

    def lap(self, name: str) -> None:
        self.times[name] = round(time.perf_counter() - self.t, 1)
        self.cpu[name] = round(time.process_time() - self.c, 1)
        print(f"[demo{self.tag}] {name}: {self.times[name]:.1f}s wall, {self.cpu[name]:.1f}s CPU", flush=True)
        self.t, self.c = time.perf_counter(), time.process_time()

    def total(self) -> tuple[float, float]:
        return round(time.perf_counter() - self.t0, 1), round(time.process_time() - self.c0, 1)


# ----------------------------------------------------------------------- shared stages
def prepare_base(cfg: DemoConfig, out: Path) -> tuple[Path, list[float]]:
    """The base model every seed starts from: the tiny model after copy pretraining (cached by config and code)."""
    from rowgym.trainers.pretrain import LOSSES_FILE, PretrainConfig, build_pretrained_tiny_model
    from rowgym.trainers.tiny_model import TinyModelConfig, build_tiny_model

    if cfg.model not in MODELS:
        return Path(cfg.model).expanduser(), []
    model_dir = build_tiny_model(out / f"model-{cfg.model}", config=TinyModelConfig(seed=cfg.seed, **MODELS[cfg.model]))
    if cfg.pretrain_steps <= 0:
        return model_dir, []
    model_dir = build_pretrained_tiny_model(out / f"model-{cfg.model}-pretrained",
                                            PretrainConfig(steps=cfg.pretrain_steps, seed=cfg.seed), base=model_dir)
    return model_dir, json.loads((model_dir / LOSSES_FILE).read_text())


def seed_key(cfg: DemoConfig, seed: int, model_dir: Path) -> str:
    """What a seed's result depends on: the config (less what only schedules the work), the base model, the code."""
    from rowgym.trainers.cache_keys import cache_key, code_version

    conf = {k: v for k, v in asdict(cfg).items() if k not in ("out", "seeds", "jobs", "threads")}
    base = [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(model_dir.glob("*")) if p.is_file()]
    return cache_key(config=conf, seed=seed, base=base, code=code_version(*CODE_MODULES))


# ----------------------------------------------------------------------- one training seed
def train_seed(cfg: DemoConfig, seed: int, model_dir: str, expert_run: str, threads: int) -> dict:
    """SFT (checkpoint chosen on dev seeds) then GRPO for one training seed; held-out evals after each."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import rowgym
    from rowgym.trainers.dev_selection import DevSelection
    from rowgym.trainers.grpo import GRPOOptions, train_grpo
    from rowgym.trainers.sft import SFTOptions, train_sft
    from rowgym.trainers.tiny_model import _fix_tokenizer_config

    if threads:
        torch.set_num_threads(threads)
    out = Path(cfg.out) / f"seed-{seed}"
    out.mkdir(parents=True, exist_ok=True)
    clock = _Clock(f" seed {seed}")
    env = rowgym.make(cfg.env_id)
    heldout, dev = env.splits.seeds("heldout", cfg.eval_episodes), env.splits.seeds("dev", cfg.dev_episodes)
    env.close()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ev = dict(max_turns=cfg.max_turns, max_tokens=cfg.max_turn_tokens)

    sel = DevSelection(lambda m: evaluate(m, tok, cfg.env_id, dev, split="dev", **ev), every=cfg.select_every,
                       on_check=lambda step, res: print(f"[demo seed {seed}] SFT step {step}: dev success "
                                                        f"{res['success_rate']:.3f}", flush=True))
    sft = train_sft(expert_run, model_dir, out / "sft",
                    SFTOptions(max_steps=cfg.sft_steps, batch_size=cfg.sft_batch, learning_rate=cfg.sft_lr,
                               warmup_steps=cfg.sft_warmup, lr_scheduler_type="cosine", max_grad_norm=1.0,
                               max_length=1024, seed=seed, logging_steps=1),
                    model=model, tokenizer=tok, callbacks=[sel] if cfg.select_every else [])
    sft_dir = out / "sft"
    model.save_pretrained(sft_dir)  # train_sft saved the last step; the chosen checkpoint replaces it
    _fix_tokenizer_config(sft_dir)
    clock.lap(f"SFT (dev checkpoint: step {sel.best_step})")
    evals = {"after SFT": evaluate(model, tok, cfg.env_id, heldout, **ev)}
    clock.lap("eval after SFT (held-out)")

    gopts = GRPOOptions(max_steps=cfg.grpo_steps, num_generations=cfg.grpo_generations,
                        prompts_per_step=cfg.grpo_prompts_per_step, learning_rate=cfg.grpo_lr,
                        temperature=cfg.grpo_temperature, max_turn_tokens=cfg.max_turn_tokens, max_turns=cfg.max_turns,
                        seed=seed, max_staleness=cfg.grpo_max_staleness, credit=cfg.grpo_credit)  # type: ignore[arg-type]
    grpo_dir = out / "grpo"
    if grpo_dir.exists():  # a fresh GRPO run each time (the SFT model it starts from is new)
        shutil.rmtree(grpo_dir)
    gres = train_grpo(cfg.env_id, sft_dir, grpo_dir, gopts)
    model = AutoModelForCausalLM.from_pretrained(grpo_dir, dtype=torch.float32)
    clock.lap("GRPO")
    evals["after GRPO"] = evaluate(model, tok, cfg.env_id, heldout, **ev)
    clock.lap("eval after GRPO (held-out)")
    wall, cpu = clock.total()
    return {"seed": seed, "eval": evals, "heldout_seeds": heldout, "dev_seeds": dev,
            "sft": {"losses": sft.losses, "n_rows": sft.n_rows, "assistant_token_fraction": sft.assistant_token_fraction,
                    "dev_checks": sel.history, "chosen_step": sel.best_step},
            "grpo": {"step_rewards": gres.step_rewards, "step_seconds": gres.step_seconds, "run_store": str(gres.run_dir)},
            "times_s": clock.times, "cpu_times_s": clock.cpu, "wall_s": wall, "cpu_s": cpu,
            "torch_threads": torch.get_num_threads()}


def _seed_job(cfg: DemoConfig, seed: int, model_dir: str, expert_run: str, threads: int, key: str) -> dict:
    res = train_seed(cfg, seed, model_dir, expert_run, threads)
    res["key"] = key
    path = Path(cfg.out) / f"seed-{seed}" / RESULT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, path)  # a killed run never leaves half a result to be taken as cached
    return res


def _cached(cfg: DemoConfig, seed: int, key: str) -> dict | None:
    try:
        res = json.loads((Path(cfg.out) / f"seed-{seed}" / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return res if res.get("key") == key else None


# ----------------------------------------------------------------------- the whole demo
def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max over seeds.

    >>> spread([0.8, 0.9, 1.0])
    {'mean': 0.9, 'sd': 0.1, 'min': 0.8, 'max': 1.0, 'n': 3}
    """
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "sd": round(sd, 4), "min": min(values), "max": max(values),
            "n": len(values)}


def run_demo(cfg: DemoConfig) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import rowgym
    from rowgym.rollouts.engine import CollectConfig, collect

    seeds = cfg.seed_list()
    if not seeds:
        raise SystemExit("--seeds: give at least one training seed, e.g. --seeds 0,1,2")
    jobs = max(1, min(len(seeds), cfg.jobs or os.cpu_count() or 1))
    threads = cfg.threads or (1 if jobs > 1 else 0)
    if threads:
        torch.set_num_threads(threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = _Clock("")
    model_dir, pretrain_losses = prepare_base(cfg, out)
    clock.lap("base model (tiny model + generic copy pretraining, no tools, no env tasks)")
    run = collect(CollectConfig(env_id=cfg.env_id, agent="expert", split="train", episodes=cfg.expert_episodes,
                                out=out / "expert", progress=False, concurrency=4, resume=True)).out
    clock.lap("collect expert episodes (train seeds)")

    env = rowgym.make(cfg.env_id)
    heldout = env.splits.seeds("heldout", cfg.eval_episodes)
    env.close()
    tok = AutoTokenizer.from_pretrained(model_dir)
    base_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    before = evaluate(base_model, tok, cfg.env_id, heldout, max_turns=cfg.max_turns, max_tokens=cfg.max_turn_tokens)
    clock.lap("eval before SFT (held-out; greedy, the same for every seed)")

    keys = {s: seed_key(cfg, s, model_dir) for s in seeds}
    per_seed: dict[int, dict] = {}
    todo = []
    for s in seeds:
        hit = _cached(cfg, s, keys[s])
        if hit is not None:
            print(f"[demo] seed {s}: cached result (same config, base model and code)", flush=True)
            per_seed[s] = hit
        else:
            todo.append(s)
    if todo:
        print(f"[demo] training seeds {todo}: {min(jobs, len(todo))} at once, {threads or 'default'} torch "
              f"thread(s) each", flush=True)
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=get_context("spawn")) as pool:
            futs = {s: pool.submit(_seed_job, cfg, s, str(model_dir), str(run), threads, keys[s]) for s in todo}
            for s, f in futs.items():
                per_seed[s] = f.result()
    clock.lap(f"train and evaluate {len(seeds)} seed(s)")

    for r in per_seed.values():
        r["eval"] = {"before SFT": before, **{k: v for k, v in r["eval"].items() if k != "before SFT"}}
    summary = {stage: {m: spread([per_seed[s]["eval"][stage][m] for s in seeds])
                       for m in ("success_rate", "bad_call_rate", "mean_turns")} for stage in STAGES}
    wall, cpu = clock.total()
    results = {"config": asdict(cfg), "env_id": cfg.env_id, "heldout_seeds": heldout, "seeds": seeds,
               "summary": summary, "per_seed": {str(s): per_seed[s] for s in seeds},
               "pretrain": {"steps": cfg.pretrain_steps, "losses": pretrain_losses, "model_dir": str(model_dir)},
               "times_s": clock.times, "cpu_times_s": clock.cpu, "wall_s": wall, "cpu_s": cpu, "jobs": jobs,
               "torch_threads": threads or torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "plot": str(out / "curves.png")}
    plot(results, out / "curves.png")
    (out / RESULT_FILE).write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results)
    return results


def plot(r: dict, path: Path) -> None:
    """SFT loss and dev success per seed, GRPO step reward per seed, held-out success per stage (seeds as dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for s, res in r["per_seed"].items():
        losses = res["sft"]["losses"]
        axes[0].plot(range(1, len(losses) + 1), losses, lw=0.8, label=f"seed {s}")
        checks = res["sft"]["dev_checks"]
        line = axes[1].plot([c["step"] for c in checks], [c["success_rate"] for c in checks], marker="o", ms=3,
                            label=f"seed {s}")[0]
        if res["sft"]["chosen_step"] is not None:
            chosen = [c for c in checks if c["step"] == res["sft"]["chosen_step"]][-1]
            axes[1].plot([chosen["step"]], [chosen["success_rate"]], marker="*", ms=14, color=line.get_color())
        axes[2].plot(range(1, len(res["grpo"]["step_rewards"]) + 1), res["grpo"]["step_rewards"], marker="o",
                     label=f"seed {s}")
    axes[0].set(title="SFT training loss (assistant tokens)", xlabel="step", ylabel="loss", yscale="log")
    axes[1].set(title="SFT: dev success (star: checkpoint kept)", xlabel="step", ylim=(-0.05, 1.05))
    axes[2].set(title="GRPO mean episode reward (train seeds)", xlabel="step", ylim=(-0.05, 1.05))
    for ax in axes[:3]:
        ax.legend(fontsize=7)
    means = [r["summary"][k]["success_rate"]["mean"] for k in STAGES]
    sds = [r["summary"][k]["success_rate"]["sd"] for k in STAGES]
    axes[3].bar(STAGES, means, yerr=sds, capsize=6, color=["#999", "#4a8", "#48c"], alpha=0.8)
    for i, k in enumerate(STAGES):
        vals = [res["eval"][k]["success_rate"] for res in r["per_seed"].values()]
        axes[3].scatter([i] * len(vals), vals, color="k", s=12, zorder=3)
        axes[3].text(i + 0.05, means[i] + 0.03, f"{means[i]:.2f}±{sds[i]:.2f}")
    axes[3].set(title=f"held-out success ({len(r['heldout_seeds'])} tasks; mean±sd over {len(r['seeds'])} seeds)",
                ylim=(0, 1.1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print_table(r: dict) -> None:
    print()
    print(f"rowgym demo · {r['env_id']} · held-out tasks: {len(r['heldout_seeds'])} · training seeds {r['seeds']} · "
          f"wall {r['wall_s']:.0f}s ({r['jobs']} at once, {r['torch_threads']} torch thread(s) each)")
    print(f"{'stage':<12} {'success mean ± sd [min, max]':>30} {'bad-call':>9} {'turns':>6}   per seed")
    for k in STAGES:
        s = r["summary"][k]
        sr = s["success_rate"]
        per = " ".join(f"{r['per_seed'][str(x)]['eval'][k]['success_rate']:.3f}" for x in r["seeds"])
        print(f"{k:<12} {sr['mean']:>11.3f} ± {sr['sd']:.3f} [{sr['min']:.3f}, {sr['max']:.3f}] "
              f"{s['bad_call_rate']['mean']:>9.3f} {s['mean_turns']['mean']:>6.2f}   {per}")
    for x in r["seeds"]:
        res = r["per_seed"][str(x)]
        losses = res["sft"]["losses"]
        print(f"seed {x}: SFT loss {losses[0]:.4g} -> {losses[-1]:.4g} over {len(losses)} steps, dev checkpoint "
              f"step {res['sft']['chosen_step']}; GRPO step rewards {[round(v, 3) for v in res['grpo']['step_rewards']]}")
    print(f"plot: {r['plot']}")
    print("RESULTS " + json.dumps({k: r["summary"][k]["success_rate"] for k in STAGES}))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f, default in asdict(DemoConfig()).items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(default), default=default)
    return run_demo(DemoConfig(**vars(p.parse_args(argv))))


if __name__ == "__main__":
    main()
