"""The end-to-end demo: tiny model -> expert data (train seeds) -> SFT -> GRPO -> held-out evaluation.

    python -m rowgym.trainers.demo --out runs/demo          # make demo

Steps, all on CPU:

1. build the tiny Qwen3 model (random init, offline tokenizer, TRL's Qwen3 template) and
   give it a short generic copy pretraining (:mod:`rowgym.trainers.pretrain`: synthetic
   requests -> JSON arguments, no tools and no env tasks), the stand-in for a base model;
2. collect scripted-expert episodes on **train** seeds of ``rowgym/ToolAPI-Home-v0``;
3. evaluate that base model on **held-out** seeds (success rate, greedy decoding);
4. tool-use SFT on the expert conversations (assistant-only loss); evaluate again;
5. a few steps of multi-turn GRPO on train seeds through :mod:`rowgym.trainers.rl` (the
   rollout engine plays every group of a step at once into the run store ``grpo/run``, the
   trainer consumes complete groups, observations masked); evaluate again;
6. write ``results.json``, ``curves.png`` (SFT loss, GRPO step reward) and print a table.

Held-out seeds are goals (combinations of actions) that no training seed has; the
evaluation uses the same held-out seeds at every stage.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ENV_ID = "rowgym/ToolAPI-Home-v0"


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
    grpo_steps: int = 8
    grpo_generations: int = 4
    grpo_prompts_per_step: int = 4
    grpo_lr: float = 2e-5
    grpo_temperature: float = 1.0
    grpo_max_staleness: int = 0
    grpo_credit: str = "grpo"
    eval_episodes: int = 60
    max_turns: int = 4
    max_turn_tokens: int = 60
    model: str = "tiny"
    """tiny (hidden 128, 2 layers) or small (hidden 256, 4 layers), or a model directory."""
    seed: int = 0
    threads: int = 0
    """torch threads (0: torch's default)."""


MODELS = {"tiny": {}, "small": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                                    num_attention_heads=4, num_key_value_heads=2)}


def evaluate(model: Any, tokenizer: Any, env_id: str, seeds: list[int], *, max_turns: int, max_tokens: int) -> dict:
    """Greedy held-out evaluation with the in-process HF policy, through the rollout engine (every
    episode in flight at once, their turns sampled in batches): success rate and mean final reward."""
    from rowgym import aio
    from rowgym.agents.hf_policy import BatchedSampler, HFPolicy
    from rowgym.rollouts.engine import CollectConfig, Hooks, run_keys
    from rowgym.rollouts.episode import EpisodeKey

    sampler = BatchedSampler(model, tokenizer, temperature=0.0, max_tokens=max_tokens, max_batch=len(seeds))
    cfg = CollectConfig(env_id=env_id, agent="hf", split="heldout", env_kwargs={"max_turns": max_turns},
                        progress=False)

    def make(cfg: CollectConfig, env: Any) -> Any:
        return HFPolicy(model=model, tokenizer=tokenizer, temperature=0.0, max_tokens=max_tokens, sampler=sampler)

    keys = [EpisodeKey("eval", s) for s in seeds]
    got: dict[str, Any] = {}
    was = model.training
    model.eval()
    try:
        aio.run(run_keys(cfg, keys, lambda ep: got.__setitem__(ep.episode_id, ep), concurrency=len(keys),
                         hooks=Hooks(make_agent=make)))
    finally:
        model.train(was)
    eps = [got[k.episode_id] for k in keys]
    assert all(e.split == "heldout" for e in eps)
    n = len(eps)
    return {"episodes": n, "success_rate": sum(e.success for e in eps) / n,
            "mean_final_reward": sum(e.final_reward for e in eps) / n,
            "bad_call_rate": sum(e.n_bad_calls for e in eps) / max(1, sum(len(e.steps) for e in eps)),
            "mean_turns": sum(len(e.steps) for e in eps) / n}


def plot(sft_losses: list[float], grpo_rewards: list[float], evals: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot(range(1, len(sft_losses) + 1), sft_losses, lw=1)
    axes[0].set(title="SFT training loss (assistant tokens)", xlabel="step", ylabel="loss", yscale="log")
    axes[1].plot(range(1, len(grpo_rewards) + 1), grpo_rewards, marker="o")
    axes[1].set(title="GRPO mean episode reward (train seeds)", xlabel="step", ylabel="reward", ylim=(-0.05, 1.05))
    names = list(evals)
    axes[2].bar(names, [evals[k]["success_rate"] for k in names], color=["#999", "#4a8", "#48c"][: len(names)])
    for i, k in enumerate(names):
        axes[2].text(i, evals[k]["success_rate"] + 0.02, f"{evals[k]['success_rate']:.2f}", ha="center")
    axes[2].set(title=f"held-out success ({evals[names[0]]['episodes']} episodes)", ylim=(0, 1.1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(cfg: DemoConfig) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import rowgym
    from rowgym.rollouts.engine import CollectConfig, collect
    from rowgym.trainers.grpo import GRPOOptions, train_grpo
    from rowgym.trainers.pretrain import LOSSES_FILE, PretrainConfig, build_pretrained_tiny_model
    from rowgym.trainers.sft import SFTOptions, train_sft
    from rowgym.trainers.tiny_model import TinyModelConfig, _fix_tokenizer_config, build_tiny_model

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    cpu_times: dict[str, float] = {}
    t_all = t = time.perf_counter()
    c_all = c = time.process_time()

    def lap(name: str) -> None:  # wall time, and this process's CPU time (less noisy on a shared machine)
        nonlocal t, c
        times[name], cpu_times[name] = round(time.perf_counter() - t, 1), round(time.process_time() - c, 1)
        print(f"[demo] {name}: {times[name]:.1f}s wall, {cpu_times[name]:.1f}s CPU", flush=True)
        t, c = time.perf_counter(), time.process_time()

    if cfg.model in MODELS:
        model_dir = build_tiny_model(out / f"model-{cfg.model}", config=TinyModelConfig(seed=cfg.seed, **MODELS[cfg.model]))
    else:
        model_dir = Path(cfg.model).expanduser()
    lap("build model")
    pretrain_losses: list[float] = []
    if cfg.pretrain_steps > 0:
        model_dir = build_pretrained_tiny_model(out / f"model-{cfg.model}-pretrained",
                                                PretrainConfig(steps=cfg.pretrain_steps, seed=cfg.seed), base=model_dir)
        pretrain_losses = json.loads((model_dir / LOSSES_FILE).read_text())
        lap("generic copy pretraining (no tools, no env tasks)")

    run = collect(CollectConfig(env_id=cfg.env_id, agent="expert", split="train", episodes=cfg.expert_episodes,
                                out=out / "expert", progress=False, concurrency=4, resume=False)).out
    lap("collect expert episodes (train seeds)")

    env = rowgym.make(cfg.env_id)
    heldout = env.splits.seeds("heldout", cfg.eval_episodes)
    env.close()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ev = dict(max_turns=cfg.max_turns, max_tokens=cfg.max_turn_tokens)
    evals = {"before SFT": evaluate(model, tok, cfg.env_id, heldout, **ev)}
    lap("eval before SFT (held-out)")

    sft = train_sft(run, model_dir, out / "sft", SFTOptions(max_steps=cfg.sft_steps, batch_size=cfg.sft_batch,
                                                          learning_rate=cfg.sft_lr, warmup_steps=10,
                                                          max_length=1024, seed=cfg.seed, logging_steps=1),
                    model=model, tokenizer=tok)
    lap("SFT")
    evals["after SFT"] = evaluate(model, tok, cfg.env_id, heldout, **ev)
    lap("eval after SFT (held-out)")

    sft_dir = out / "sft"
    model.save_pretrained(sft_dir)
    tok.save_pretrained(sft_dir)
    _fix_tokenizer_config(sft_dir)
    gopts = GRPOOptions(max_steps=cfg.grpo_steps, num_generations=cfg.grpo_generations,
                        prompts_per_step=cfg.grpo_prompts_per_step, learning_rate=cfg.grpo_lr,
                        temperature=cfg.grpo_temperature, max_turn_tokens=cfg.max_turn_tokens, max_turns=cfg.max_turns,
                        seed=cfg.seed, max_staleness=cfg.grpo_max_staleness, credit=cfg.grpo_credit)  # type: ignore[arg-type]
    grpo_dir = out / "grpo"
    if grpo_dir.exists():  # a fresh GRPO run each time (the SFT model it starts from is new)
        import shutil

        shutil.rmtree(grpo_dir)
    gres = train_grpo(cfg.env_id, sft_dir, grpo_dir, gopts)
    grpo_rewards = gres.step_rewards
    model = AutoModelForCausalLM.from_pretrained(grpo_dir, dtype=torch.float32)
    lap("GRPO")
    evals["after GRPO"] = evaluate(model, tok, cfg.env_id, heldout, **ev)
    lap("eval after GRPO (held-out)")

    plot(sft.losses, grpo_rewards, evals, out / "curves.png")
    wall = round(time.perf_counter() - t_all, 1)
    results = {"config": asdict(cfg), "env_id": cfg.env_id, "heldout_seeds": heldout, "eval": evals,
               "pretrain": {"steps": cfg.pretrain_steps, "losses": pretrain_losses},
               "sft": {"losses": sft.losses, "n_rows": sft.n_rows, "assistant_token_fraction": sft.assistant_token_fraction},
               "grpo": {"step_rewards": grpo_rewards, "step_seconds": gres.step_seconds,
                        "run_store": str(gres.run_dir)}, "times_s": times, "cpu_times_s": cpu_times,
               "wall_s": wall, "cpu_s": round(time.process_time() - c_all, 1),
               "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "plot": str(out / "curves.png")}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results)
    return results


def _print_table(r: dict) -> None:
    print()
    print(f"rowgym demo · {r['env_id']} · held-out seeds: {len(r['heldout_seeds'])} · wall {r['wall_s']:.0f}s "
          f"({r['torch_threads']} torch threads, {r['cpu_s']:.0f}s CPU)")
    print(f"{'stage':<12} {'success':>8} {'reward':>8} {'bad-call':>9} {'turns':>6}")
    for k, v in r["eval"].items():
        print(f"{k:<12} {v['success_rate']:>8.3f} {v['mean_final_reward']:>8.3f} {v['bad_call_rate']:>9.3f} "
              f"{v['mean_turns']:>6.2f}")
    losses = r["sft"]["losses"]
    print(f"SFT loss {losses[0]:.4g} -> {losses[-1]:.4g} over {len(losses)} steps; "
          f"GRPO step rewards {[round(x, 3) for x in r['grpo']['step_rewards']]}")
    print(f"plot: {r['plot']}")
    print("RESULTS " + json.dumps({k: round(v["success_rate"], 4) for k, v in r["eval"].items()}))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f, default in asdict(DemoConfig()).items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(default), default=default)
    return run_demo(DemoConfig(**vars(p.parse_args(argv))))


if __name__ == "__main__":
    main()
