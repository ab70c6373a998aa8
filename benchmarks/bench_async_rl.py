"""Wall seconds per optimizer step of rowgym's GRPO loop: the old serial schedule, k = 0 and k = 1.

    python benchmarks/bench_async_rl.py [--steps 4] [--generations 4] [--prompts-per-step 2]

All three run the same loop (:mod:`rowgym.trainers.rl`: engine -> run store -> trainer) on the
tiny model with the in-process HF policy, the same batch and the same env:

* ``serial``: the schedule of the old trainer loop: one episode at a time, one ``generate`` per
  turn (concurrency 1, no batched sampling), synchronous;
* ``k=0``: every group of the step in flight at once, concurrent turns sampled in one batched
  ``generate``, synchronous (on-policy);
* ``k=1``: the same, and the collectors sample the next batch with the current weights while
  the trainer trains (a copy of the model samples; weights are copied after each step).

``--credit turn --local-weight 1`` so every step has non-zero advantages (the random tiny model's
final rewards are all 0) and really runs its backward pass. Prints the median wall and CPU
seconds per step (after a warm-up step) and the ratios to ``serial``. Timings on a shared
machine are noisy; the script asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def run(name: str, md: Path, args: argparse.Namespace, **kw) -> tuple[float, float, list[float]]:
    from rowgym.trainers.grpo import GRPOOptions, train_grpo

    opts = GRPOOptions(max_steps=args.steps + 1, num_generations=args.generations, prompts_per_step=args.prompts_per_step,
                       max_turn_tokens=args.turn_tokens, max_turns=args.max_turns, learning_rate=1e-4,
                       credit="turn", local_reward_weight=1.0, **kw)
    res = train_grpo("rowgym/ToolAPI-Home-v0", md, Path(tempfile.mkdtemp(prefix=f"bench-rl-{name}-")), opts)
    w, c = res.step_seconds[1:], res.step_cpu_s[1:]
    return statistics.median(w), statistics.median(c), res.step_seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--prompts-per-step", type=int, default=2)
    ap.add_argument("--turn-tokens", type=int, default=48)
    ap.add_argument("--max-turns", type=int, default=3)
    args = ap.parse_args()

    import torch

    from rowgym.trainers.tiny_model import build_tiny_model

    md = build_tiny_model()
    rows = {
        "serial": run("serial", md, args, concurrency=1, batched_sampling=False, max_staleness=0),
        "k=0": run("k0", md, args, max_staleness=0),
        "k=1": run("k1", md, args, max_staleness=1),
    }
    base = rows["serial"][0]
    print(f"batch: {args.prompts_per_step} groups x {args.generations} episodes, up to {args.max_turns} turns x "
          f"{args.turn_tokens} tokens; {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads")
    print(f"{'schedule':<8} {'wall s/step':>12} {'CPU s/step':>11} {'wall vs serial':>15}   all steps (s)")
    for name, (w, c, all_w) in rows.items():
        print(f"{name:<8} {w:>12.2f} {c:>11.2f} {w / base:>14.2f}x   {all_w}")
    print(f"RATIOS k=0/serial {rows['k=0'][0] / base:.2f} k=1/serial {rows['k=1'][0] / base:.2f} "
          f"k=1/k=0 {rows['k=1'][0] / rows['k=0'][0]:.2f}")


if __name__ == "__main__":
    main()
