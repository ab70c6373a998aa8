"""The five arms of ``make learn``, each from the same SFT start at the same budget of sampled episodes.

An arm spends ``budget`` sampled episodes in ``stages`` equal stages. After each stage its model is
evaluated on **dev** seeds (the learning curve); the stage with the best dev success (the earliest
on a tie) is the arm's checkpoint, and only that one is evaluated on held-out seeds.

* ``sft``: ``budget`` new scripted-expert episodes (train seeds after the start's); each stage trains
  ``arm_sft_steps`` SFT steps on the start's expert data plus every new expert episode so far.
* ``rsft``: each stage samples ``group_size`` episodes per task from the current policy (temperature
  ``temperature``) on fresh train seeds, builds ``rowgym dataset rsft`` (accepted samples, gated),
  and trains on them for ``arm_epochs`` passes, at most ``arm_sft_steps`` SFT steps (a stage with nothing
  accepted trains nothing).
* ``dpo``: the same sampling, ``rowgym dataset dpo`` pairs (same group, different final rewards),
  ``arm_epochs`` passes over them (at most ``dpo_steps`` steps) of ``train dpo`` with the stage's starting
  model as the reference.
* ``grpo`` / ``grpo_turn``: ``trainers.rl`` with ``--credit grpo`` / ``--credit turn``, ``budget /
  (grpo_prompts_per_step * group_size)`` optimizer steps; the checkpoints at stage boundaries are
  the stages' models.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rowgym.trainers.learn import stages as S
from rowgym.trainers.learn.config import LearnConfig


@dataclass
class ArmContext:
    cfg: LearnConfig
    env_id: str
    seed: int
    start: Path
    """The SFT start model directory."""
    base_tokenizer: Path
    start_run: Path
    """The expert run the start was trained on."""
    cache: Path
    out: Path
    dev: list[int]
    heldout: list[int]


@dataclass
class ArmResult:
    arm: str
    seed: int
    curve: list[dict[str, Any]] = field(default_factory=list)
    """Per stage: sampled episodes so far, dev success, bad-call rate, training details."""
    chosen_stage: int = 0
    sampled_episodes: int = 0
    heldout: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    train_wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def load_policy(model_dir: Path) -> tuple[Any, Any]:
    """A model to sample from, with the KV cache on: ``trainers.rl`` checkpoints are saved from a model in
    training mode, whose config says ``use_cache: false`` and carries no generation config, and generating
    without the cache recomputes the whole ~1,000-token context for every sampled token."""
    model, tok = S.load(model_dir)
    model.config.use_cache = True
    model.generation_config.use_cache = True
    return model, tok


def planned_samples(cfg: LearnConfig, arm: str) -> list[int]:
    """Sampled episodes of each stage of ``arm``: they sum to ``cfg.budget`` for every arm (checked by
    :meth:`LearnConfig.validate`, which needs the budget divisible into whole stages, groups and steps)."""
    if arm == "sft":
        return [cfg.budget // cfg.stages] * cfg.stages
    if arm in ("rsft", "dpo"):
        return [cfg.budget // cfg.stages // cfg.group_size * cfg.group_size] * cfg.stages
    per_step = cfg.grpo_prompts_per_step * cfg.group_size
    steps = cfg.budget // per_step
    return [steps // cfg.stages * per_step] * cfg.stages


def capped_steps(n_rows: int, batch: int, epochs: float, most: int) -> int:
    """Optimizer steps for ``epochs`` passes over ``n_rows`` examples in batches of ``batch``, at most ``most``
    and at least 1: a stage with a handful of examples makes a few steps, not ``most`` passes over them."""
    return max(1, min(most, math.ceil(epochs * n_rows / batch)))


def choose_stage(curve: list[dict[str, Any]]) -> int:
    """Index of the stage with the best dev success (the earliest on a tie). Only dev numbers are read."""
    return max(range(len(curve)), key=lambda j: (curve[j]["dev_success"], -j))


def sample_groups(ctx: ArmContext, model_dir: Path, out: Path, *, tasks: int, offset: int) -> Path:
    """``group_size`` samples of the policy ``model_dir`` on each of ``tasks`` train seeds (from ``offset``)."""
    from rowgym import aio
    from rowgym.agents.hf_policy import BatchedSampler, HFPolicy
    from rowgym.rollouts.engine import CollectConfig, Hooks, acollect

    cfg = ctx.cfg
    shutil.rmtree(out, ignore_errors=True)
    model, tok = load_policy(model_dir)
    common = {"temperature": cfg.temperature, "max_tokens": cfg.max_turn_tokens}
    k = cfg.group_size
    sampler = BatchedSampler(model, tok, max_batch=64, **common)

    def make(c: CollectConfig, env: Any) -> Any:
        return HFPolicy(model=model, tokenizer=tok, seed=ctx.seed * 7919 + offset, sampler=sampler, **common)

    ccfg = CollectConfig(env_id=ctx.env_id, agent="hf", split="train", episodes=tasks, seed_offset=offset,
                         group_size=k, out=out, concurrency=tasks * k, resume=False, progress=False,
                         agent_kwargs={"model_dir": str(model_dir), "seed": ctx.seed * 7919 + offset, **common},
                         env_kwargs={"max_turns": cfg.max_turns})
    aio.run(acollect(ccfg, Hooks(make_agent=make)))
    return out


def _stage_sft(ctx: ArmContext, i: int, cur: Path, out: Path, runs: list[Path]) -> dict[str, Any]:
    from rowgym.trainers.sft import train_sft

    b = planned_samples(ctx.cfg, "sft")[i]
    runs.append(S.expert_run(ctx.cache, ctx.env_id, b, ctx.cfg.start_expert_episodes + i * b))
    res = train_sft([str(r) for r in runs], cur, out,
                    S.sft_options(ctx.cfg.arm_sft_steps, ctx.cfg.sft_batch, ctx.cfg.arm_sft_lr, ctx.seed))
    return {"sampled": b, "trained": True, "rows": res.n_rows, "loss_first": res.losses[0], "loss_last": res.losses[-1],
            "losses": res.losses}


def _stage_groups(ctx: ArmContext, arm: str, i: int, cur: Path, out: Path) -> dict[str, Any]:
    cfg = ctx.cfg
    tasks = planned_samples(cfg, arm)[i] // cfg.group_size
    run = sample_groups(ctx, cur, out.parent / f"{out.name}-samples", tasks=tasks, offset=i * tasks)
    info: dict[str, Any] = {"sampled": tasks * cfg.group_size, "trained": False}
    if arm == "rsft":
        from rowgym.trainers.rsft import build_rsft_dataset
        from rowgym.trainers.sft import train_sft

        data = out.parent / f"{out.name}-data"
        shutil.rmtree(data, ignore_errors=True)
        _, _, rows, summary = build_rsft_dataset([run], data)
        info.update(accepted=summary.n_accepted, candidates=summary.n_candidates, rows=len(rows))
        if rows:
            steps = capped_steps(len(rows), cfg.sft_batch, cfg.arm_epochs, cfg.arm_sft_steps)
            res = train_sft(data, cur, out, S.sft_options(steps, cfg.sft_batch, cfg.arm_sft_lr, ctx.seed))
            info.update(trained=True, steps=steps, loss_first=res.losses[0], loss_last=res.losses[-1], losses=res.losses)
    else:
        from rowgym.trainers.dpo import DPOOptions, build_dpo_dataset, train_dpo

        data = out.parent / f"{out.name}-data"
        shutil.rmtree(data, ignore_errors=True)
        _, _, rows, summary = build_dpo_dataset([run], data)
        info.update(pairs=len(rows), pairs_before_gates=summary.n_pairs, groups_with_pairs=summary.groups_with_pairs)
        if rows:
            steps = capped_steps(len(rows), cfg.dpo_batch, cfg.arm_epochs, cfg.dpo_steps)
            res = train_dpo(data, cur, out, DPOOptions(max_steps=steps, batch_size=cfg.dpo_batch,
                                                      learning_rate=cfg.dpo_lr, beta=cfg.dpo_beta,
                                                      warmup_steps=max(1, steps // 10),
                                                      lr_scheduler_type="cosine", seed=ctx.seed,
                                                      extra={"max_grad_norm": 1.0}))
            info.update(trained=True, steps=steps, loss_first=res.losses[0], loss_last=res.losses[-1],
                        losses=res.losses, margins=res.margins)
    return info


def grpo_options(cfg: LearnConfig, arm: str, seed: int) -> Any:
    """The GRPO options of arm (d) ``grpo`` or (e) ``grpo_turn``.

    (e) credits each turn with its return-to-go, which includes the env's per-step rewards weighted by
    ``turn_local_weight``: with that weight at 0 (and gamma 1) every turn's return is the final reward and
    ``turn`` credit is exactly ``grpo`` (rewards/credit.py), which made (e) a copy of (d) until this was set.
    """
    from rowgym.trainers.grpo import GRPOOptions

    steps = max(1, cfg.budget // (cfg.grpo_prompts_per_step * cfg.group_size))
    turn = arm == "grpo_turn"
    return GRPOOptions(max_steps=steps, num_generations=cfg.group_size, prompts_per_step=cfg.grpo_prompts_per_step,
                       learning_rate=cfg.grpo_lr, temperature=cfg.temperature, max_turn_tokens=cfg.max_turn_tokens,
                       max_turns=cfg.max_turns, seed=seed, credit="turn" if turn else "grpo",
                       local_reward_weight=cfg.turn_local_weight if turn else 0.0, keep_checkpoints=steps)


def _grpo(ctx: ArmContext, arm: str) -> list[tuple[dict[str, Any], Path]]:
    """Run the whole GRPO budget; return (stage info, model dir) at each stage boundary."""
    from rowgym.trainers.grpo import train_grpo
    from rowgym.trainers.rl.loop import CHECKPOINTS

    opts = grpo_options(ctx.cfg, arm, ctx.seed)
    steps, per_step = opts.max_steps, opts.batch_size
    every = max(1, steps // ctx.cfg.stages)
    out = ctx.out / "grpo"
    shutil.rmtree(out, ignore_errors=True)
    res = train_grpo(ctx.env_id, ctx.start, out, opts)
    stages = []
    for n in range(every, steps + 1, every):
        ck = out / CHECKPOINTS / f"step-{n:06d}" / "model"
        for f in ctx.start.iterdir():  # checkpoints hold weights only; the tokenizer is the start's
            if f.name.startswith(("tokenizer", "chat_template", "special_tokens")):
                shutil.copy(f, ck / f.name)
        sl = slice(n - every, n)
        stages.append(({"sampled": every * per_step, "trained": True, "grpo_steps": list(range(n - every + 1, n + 1)),
                        "step_rewards": res.step_rewards[sl], "step_success": res.step_success[sl],
                        "skipped_steps": sum(int(s["stats"].get("skipped", 0)) for s in res.steps[sl])}, ck))
    return stages


def run_arm(arm: str, ctx: ArmContext) -> ArmResult:
    """Train ``arm`` stage by stage from the SFT start, choose its checkpoint on dev, evaluate it on held-out
    (unless ``ctx.heldout`` is empty: ``learn.sweep`` chooses recipes on dev alone)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(ctx.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = ctx.cfg
    ctx.out.mkdir(parents=True, exist_ok=True)
    res = ArmResult(arm, ctx.seed)
    _, tok = S.load(ctx.base_tokenizer)
    ev = {"max_turns": cfg.max_turns, "max_tokens": cfg.max_turn_tokens}
    models: list[Path] = []
    train_s = 0.0

    def stage_done(info: dict[str, Any], model_dir: Path) -> None:
        res.sampled_episodes += info["sampled"]
        m, _ = load_policy(model_dir)
        d = S.evaluate(m, tok, ctx.env_id, ctx.dev, "dev", **ev)
        res.curve.append({"stage": len(res.curve) + 1, "sampled_episodes": res.sampled_episodes,
                          "dev_success": d.success_rate, "dev_bad_call_rate": d.bad_call_rate,
                          "dev_mean_turns": d.mean_turns, **info})
        models.append(model_dir)
        print(f"[learn] seed {ctx.seed} {arm} stage {len(res.curve)}: {res.sampled_episodes} sampled episodes, "
              f"dev success {d.success_rate:.3f}", flush=True)

    if arm.startswith("grpo"):
        t = time.perf_counter()
        stages = _grpo(ctx, arm)
        train_s += time.perf_counter() - t
        for info, model_dir in stages:
            stage_done(info, model_dir)
    else:
        cur, runs = ctx.start, [ctx.start_run]
        for i in range(cfg.stages):
            out = ctx.out / f"stage-{i + 1}"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            info = _stage_sft(ctx, i, cur, out, runs) if arm == "sft" else _stage_groups(ctx, arm, i, cur, out)
            train_s += time.perf_counter() - t
            if info["trained"]:
                cur = out
            else:
                res.notes.append(f"stage {i + 1}: no training data (nothing accepted / no pairs); model unchanged")
            stage_done(info, cur)
    if res.sampled_episodes != cfg.budget:
        raise RuntimeError(f"{arm} sampled {res.sampled_episodes} episodes, not the budget {cfg.budget}")
    best = choose_stage(res.curve)
    res.chosen_stage = best + 1
    said = "no held-out seeds (a dev-only sweep)"
    if ctx.heldout:
        m, _ = load_policy(models[best])
        h = S.evaluate(m, tok, ctx.env_id, ctx.heldout, "heldout", **ev)
        res.heldout, said = h.to_json(), f"held-out success {h.success_rate:.3f}"
    res.train_wall_s = round(train_s, 1)
    res.wall_s, res.cpu_s = round(time.perf_counter() - t0, 1), round(time.process_time() - c0, 1)
    (ctx.out / "arm_result.json").write_text(json.dumps(res.__dict__, indent=2, default=str) + "\n")
    print(f"[learn] seed {ctx.seed} {arm}: chose stage {res.chosen_stage} on dev; {said} ({res.wall_s:.0f}s wall)",
          flush=True)
    return res
