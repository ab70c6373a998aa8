"""Time per GRPO step: multi-turn through rowgym vs TRL's own single-turn GRPO, same model, similar tokens.

    python benchmarks/bench_grpo.py [--steps 3] [--generations 4] [--prompts-per-step 2]

Both trainers use the tiny model on CPU, the same batch (prompts x generations), beta 0
and one optimizer step per generation. The rowgym side is ``train_grpo`` (synchronous,
k = 0): the rollout engine plays every episode of the step at once into the run store
(HFPolicy, concurrent turns sampled in one batched ``generate``, env steps in between), the
trainer reads the groups back, and each step writes a checkpoint and a consumption record
(``--credit turn --local-weight 1`` so the random model's all-zero final rewards still give
non-zero advantages and a real backward pass). The TRL side uses its default
``model.generate`` path on the same first-turn prompts (tool schemas rendered by the chat
template in the episodes, put into the system text here) with a plain reward function, and ``max_completion_length``
set to the rowgym side's mean completion length (policy + observation tokens) so both
forward/backward passes see similar token counts. Prints per-step wall and CPU seconds
and their ratio. Asserts nothing; timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


class _Timer:
    def __init__(self) -> None:
        from transformers import TrainerCallback

        outer = self
        self.wall: list[float] = []
        self.cpu: list[float] = []

        class CB(TrainerCallback):
            def on_step_begin(self, *a, **k):
                outer._t, outer._c = time.perf_counter(), time.process_time()

            def on_step_end(self, *a, **k):
                outer.wall.append(time.perf_counter() - outer._t)
                outer.cpu.append(time.process_time() - outer._c)

        self.cb = CB()

    def summary(self, skip: int = 1) -> tuple[float, float]:
        w, c = self.wall[skip:] or self.wall, self.cpu[skip:] or self.cpu
        return statistics.median(w), statistics.median(c)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--prompts-per-step", type=int, default=2)
    ap.add_argument("--turn-tokens", type=int, default=48)
    ap.add_argument("--max-turns", type=int, default=3)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401
    from trl import GRPOConfig, GRPOTrainer

    from rowgym.trainers.datasets import grpo_prompts, to_hf_dataset
    from rowgym.trainers.grpo import GRPOOptions, train_grpo
    from rowgym.trainers.tiny_model import build_tiny_model

    env_id = "rowgym/ToolAPI-Home-v0"
    md = build_tiny_model()
    tok = AutoTokenizer.from_pretrained(md)
    tmp = tempfile.mkdtemp(prefix="bench-grpo-")

    # --- multi-turn through rowgym: engine -> run store -> trainer
    from pathlib import Path

    from rowgym.store import TrajectoryStore
    from rowgym.trainers.rl.batching import episode_tokens

    opts = GRPOOptions(max_steps=args.steps + 1, num_generations=args.generations,
                       prompts_per_step=args.prompts_per_step, max_turn_tokens=args.turn_tokens,
                       max_turns=args.max_turns, learning_rate=1e-5, credit="turn", local_reward_weight=1.0)
    res = train_grpo(env_id, md, Path(tmp) / "mt", opts)
    eps = list(TrajectoryStore(Path(tmp) / "mt" / "run", readonly=True).episodes())
    toks = [episode_tokens(e) for e in eps if any(s.tokens for s in e.steps)]
    first = [len(next(s.tokens for s in e.steps if s.tokens).prompt_ids) for e in eps if any(s.tokens for s in e.steps)]
    lens = [len(t.ids) - f for t, f in zip(toks, first, strict=True)]
    mean_len = int(statistics.mean(lens))
    prompt_len = int(statistics.mean(first))
    mw, mc = statistics.median(res.step_seconds[1:]), statistics.median(res.step_cpu_s[1:])

    # --- TRL single-turn, default generation, plain reward
    rows = grpo_prompts(env_id, "train", 64)
    # the tool schemas go into the system text (TRL's `tools=` would switch on its own tool loop), so the
    # single-turn prompt has about the same length as the episodes' first prompt
    ds = to_hf_dataset([{"prompt": [{"role": "system", "content": r["prompt"][0]["content"] + "\n\n# Tools\n<tools>\n"
                                     + "\n".join(json.dumps(t) for t in json.loads(r["tools"])) + "\n</tools>"},
                                    r["prompt"][1]]} for r in rows])

    def plain_reward(prompts, completions, **_):
        return [float(len(str(c)) % 7) / 7 for c in completions]

    cfg = GRPOConfig(output_dir=tmp + "/st", max_steps=args.steps + 1, learning_rate=1e-5,
                     per_device_train_batch_size=args.generations * args.prompts_per_step,
                     num_generations=args.generations, max_completion_length=mean_len, beta=0.0, loss_type="dapo",
                     use_cpu=True, bf16=False, report_to=[], logging_steps=1, save_strategy="no", disable_tqdm=True,
                     gradient_checkpointing=False)
    st = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(md, dtype=torch.float32), reward_funcs=plain_reward,
                     args=cfg, train_dataset=ds, processing_class=tok)
    t_st = _Timer()
    st.add_callback(t_st.cb)
    st.train()
    st_len = [h.get("completions/mean_length") for h in st.state.log_history if "completions/mean_length" in h]

    sw, sc = t_st.summary()
    print(f"batch: {args.prompts_per_step} prompts x {args.generations} generations; first prompt {prompt_len} tokens")
    print(f"rowgym multi-turn : {mw:6.2f} s/step wall, {mc:6.2f} s/step CPU; mean completion {mean_len} tokens "
          f"(policy + observations, up to {args.max_turns} turns x {args.turn_tokens})")
    print(f"TRL single-turn   : {sw:6.2f} s/step wall, {sc:6.2f} s/step CPU; max_completion_length {mean_len}, "
          f"mean generated {statistics.mean(st_len) if st_len else float('nan'):.0f}")
    print(f"ratio multi-turn / single-turn: wall {mw / sw:.2f}x, CPU {mc / sc:.2f}x "
          f"(median of {args.steps} steps after a warm-up step; noisy on a shared machine)")


if __name__ == "__main__":
    main()
