"""`rowgym train ...`: SFT, DPO and GRPO on collected trajectories with TRL (needs the train extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rowgym.cli.common import AllowUnverifiedOpt, _fail, _finite, _positive, console

train_app = typer.Typer(help="Train on collected trajectories with TRL (needs the train extra).", no_args_is_help=True)


@train_app.command("sft")
def train_sft_cmd(sources: Annotated[list[Path], typer.Argument(help="Run directories (train split) or one dataset dir")],
                  model_dir: Annotated[Path, typer.Option(help="Local model directory")],
                  out: Annotated[Path, typer.Option(help="Where the fine-tuned model is saved")] = Path("runs/sft"),
                  steps: Annotated[int, typer.Option(help="Optimizer steps", min=1)] = 100,
                  batch_size: Annotated[int, typer.Option(help="Conversations per step", min=1)] = 8,
                  lr: Annotated[float, typer.Option(help="Learning rate", callback=_positive)] = 1e-3,
                  min_reward: Annotated[float, typer.Option(help="Keep episodes with final reward >= this")] = 1.0,
                  cpu: Annotated[bool, typer.Option(help="Train on CPU (use_cpu=True, bf16=False)")] = True,
                  allow_unverified: AllowUnverifiedOpt = False) -> None:
    """Tool-use SFT (TRL SFTTrainer, loss on assistant tokens only). Held-out data are refused,
    and so are runs that fail verification unless --allow-unverified."""
    from rowgym.errors import RowgymError
    from rowgym.trainers.sft import SFTOptions, train_sft

    if not (model_dir / "config.json").exists():
        _fail(f"--model-dir {model_dir} is not a model directory (no config.json)")
    src = sources[0] if len(sources) == 1 else list(sources)
    try:
        if allow_unverified:  # build the rows here, where the override is known; train_sft takes rows too
            src = _unverified_sft_rows(list(sources), min_reward)
    except RowgymError as e:
        _fail(str(e))
    try:
        res = train_sft(src, model_dir, out, SFTOptions(max_steps=steps, batch_size=batch_size, learning_rate=lr,
                                                        min_reward=min_reward, use_cpu=cpu))
    except RowgymError as e:
        _fail(str(e))
    console.print(f"SFT {res.steps} steps on {res.n_rows} conversations in {res.wall_s:.0f}s: loss "
                  f"{res.losses[0]:.3f} -> {res.losses[-1]:.3f}; model saved to {res.out_dir}")


def _unverified_sft_rows(sources: list[Path], min_reward: float) -> list[dict]:
    from rowgym.errors import RowgymError
    from rowgym.trainers.datasets import PROVENANCE_FILE, read_dataset, sft_conversations

    if len(sources) == 1 and (sources[0] / PROVENANCE_FILE).exists():
        rows, _ = read_dataset(sources[0], allow_unverified=True)
    else:
        rows = sft_conversations([str(s) for s in sources], min_reward=min_reward, allow_unverified=True)
    if not rows:
        raise RowgymError("no SFT rows in the sources")
    return rows


@train_app.command("dpo")
def train_dpo_cmd(sources: Annotated[list[Path], typer.Argument(help="One `rowgym dataset dpo` dir, or grouped run "
                                                                    "directories (paired without the gates)")],
                  model_dir: Annotated[Path, typer.Option(help="Local model directory (policy and reference), "
                                                               "e.g. the SFT output")],
                  out: Annotated[Path, typer.Option(help="Where the trained model is saved")] = Path("runs/dpo"),
                  steps: Annotated[int, typer.Option(help="Optimizer steps", min=1)] = 100,
                  batch_size: Annotated[int, typer.Option(help="Pairs per step", min=1)] = 4,
                  lr: Annotated[float, typer.Option(help="Learning rate", callback=_positive)] = 1e-4,
                  beta: Annotated[float, typer.Option(help="DPO beta (KL strength)", callback=_positive)] = 0.1,
                  max_length: Annotated[int, typer.Option(help="Tokens per prompt + completion", min=16)] = 4096,
                  cpu: Annotated[bool, typer.Option(help="Train on CPU (use_cpu=True, bf16=False)")] = True,
                  allow_unverified: AllowUnverifiedOpt = False) -> None:
    """DPO (TRL DPOTrainer) on preference pairs, loss on assistant tokens only. Held-out rows are refused,
    and so are runs or datasets that fail verification unless --allow-unverified."""
    from rowgym.errors import RowgymError
    from rowgym.trainers.dpo import DPOOptions, train_dpo

    if not (model_dir / "config.json").exists():
        _fail(f"--model-dir {model_dir} is not a model directory (no config.json)")
    src = sources[0] if len(sources) == 1 else [str(s) for s in sources]
    try:
        res = train_dpo(src, model_dir, out, DPOOptions(max_steps=steps, batch_size=batch_size, learning_rate=lr,
                                                        beta=beta, max_length=max_length, use_cpu=cpu),
                        allow_unverified=allow_unverified)
    except RowgymError as e:
        _fail(str(e))
    console.print(f"DPO {res.steps} steps on {res.n_pairs} pairs in {res.wall_s:.0f}s: loss {res.losses[0]:.3f} -> "
                  f"{res.losses[-1]:.3f}, reward margin {res.margins[0]:.3f} -> {res.margins[-1]:.3f}; model saved "
                  f"to {res.out_dir}", highlight=False, soft_wrap=True)


@train_app.command("grpo")
def train_grpo_cmd(env_id: Annotated[str, typer.Argument(help="Environment id (train seeds are used)")],
                   model_dir: Annotated[Path | None, typer.Option(help="Local model directory (e.g. the SFT output; "
                                                                       "default: the tiny model)")] = None,
                   out: Annotated[Path, typer.Option(help="Run directory: run store, checkpoints, consumption "
                                                          "record, final model")] = Path("runs/grpo"),
                   steps: Annotated[int, typer.Option(help="Optimizer steps", min=1)] = 10,
                   generations: Annotated[int, typer.Option(help="Episodes per seed (GRPO group size)", min=2)] = 4,
                   prompts_per_step: Annotated[int, typer.Option(help="Seeds (groups) per step", min=1)] = 2,
                   lr: Annotated[float, typer.Option(help="Learning rate", callback=_positive)] = 1e-5,
                   temperature: Annotated[float, typer.Option(help="Sampling temperature", callback=_positive)] = 1.0,
                   turn_tokens: Annotated[int, typer.Option(help="Tokens per policy turn", min=1)] = 96,
                   max_turns: Annotated[int | None, typer.Option(help="Turn limit per episode", min=1)] = None,
                   local_weight: Annotated[float, typer.Option(help="Weight of summed local rewards", callback=_finite)] = 0.0,
                   policy: Annotated[str, typer.Option(help="hf (the trainer's model in process) or vllm (a vLLM "
                                                            "server whose weights follow the trainer)")] = "hf",
                   max_staleness: Annotated[int, typer.Option(help="k: train on groups sampled by versions >= "
                                                                   "v - k (0: synchronous)", min=0)] = 0,
                   credit: Annotated[str, typer.Option(help="grpo, turn or gigpo (per-token advantages)")] = "grpo",
                   resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last "
                                                                        "checkpoint")] = False,
                   base_url: Annotated[str | None, typer.Option(help="A running vLLM server started in dev mode "
                                                                     "(default: start one)")] = None,
                   seed: Annotated[int, typer.Option(help="Training seed")] = 0) -> None:
    """Multi-turn GRPO on the rollout engine: groups stream into a run store, the trainer consumes complete groups."""
    from rowgym.errors import RowgymError
    from rowgym.trainers.grpo import GRPOOptions, train_grpo

    if policy not in ("hf", "vllm"):
        _fail(f"--policy must be hf or vllm, got {policy!r}")
    if credit not in ("grpo", "turn", "gigpo"):
        _fail(f"--credit must be grpo, turn or gigpo, got {credit!r}")
    opts = GRPOOptions(max_steps=steps, num_generations=generations, prompts_per_step=prompts_per_step,
                       learning_rate=lr, temperature=temperature, max_turn_tokens=turn_tokens, max_turns=max_turns,
                       local_reward_weight=local_weight, policy=policy, max_staleness=max_staleness,  # type: ignore[arg-type]
                       credit=credit, resume=resume, base_url=base_url, seed=seed)  # type: ignore[arg-type]
    try:
        if model_dir is None:
            from rowgym.trainers.tiny_model import build_tiny_model

            model_dir = build_tiny_model()
        res = train_grpo(env_id, model_dir, out, opts)
    except RowgymError as e:
        _fail(str(e))
    console.print(f"GRPO steps {res.start_step + 1}..{res.start_step + len(res.step_rewards)} in {res.wall_s:.0f}s; "
                  f"step rewards {[round(r, 3) for r in res.step_rewards]}; run store {res.run_dir}; "
                  f"consumption record {out / 'consumption.jsonl'}; model saved to {res.out_dir}")
