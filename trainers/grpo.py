"""Multi-turn GRPO on rowgym's one data path: rollout engine -> run store -> trainer -> policy weights.

>>> from rowgym.trainers.grpo import GRPOOptions, train_grpo
>>> res = train_grpo("rowgym/ToolAPI-Home-v0", "runs/sft", "runs/grpo",
...                  GRPOOptions(max_steps=5, num_generations=4))           # doctest: +SKIP
>>> len(res.step_rewards)                                                   # doctest: +SKIP
5

    rowgym train grpo rowgym/ToolAPI-Home-v0 --model-dir runs/sft --out runs/grpo --steps 5
    rowgym train grpo rowgym/ToolAPI-Home-v0 --policy vllm --max-staleness 1 --steps 4 --out runs/g

:func:`train_grpo` runs :mod:`rowgym.trainers.rl.loop`: every group of a step is played
concurrently by the rollout engine (:func:`rowgym.rollouts.engine.acollect`) into the run
store ``<out>/run`` (manifest, shards, identity: what ``rowgym collect`` writes); the trainer
reads each batch's complete groups back from the store, turns rowgym's per-turn credit into
per-token advantages, takes one optimizer step (truncated importance sampling on the stored
sampling logprobs), records which groups it consumed (``<out>/consumption.jsonl``), writes a
checkpoint and pushes the weights to the sampler (an in-process copy, or a vLLM server that
reloads them). See docs/training.md for the diagram and the formulas.

The TRL path stays for users who drive TRL's ``GRPOTrainer`` themselves:
:func:`make_grpo_trainer` returns one whose ``rollout_func`` (:class:`RolloutPlayer`) plays
its groups through the same engine (``run_keys``) and hands TRL each episode as one
completion (``env_mask`` = rowgym's policy mask).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rowgym import aio
from rowgym.errors import RowgymError
from rowgym.rewards.credit import trained_final_reward
from rowgym.rows import Episode
from rowgym.trainers import datasets as ds
from rowgym.trainers.rl.config import GRPOOptions
from rowgym.trainers.rl.loop import GRPOResult, run_grpo

__all__ = ["GRPOOptions", "GRPOResult", "RolloutPlayer", "episode_to_completion", "make_grpo_trainer", "train_grpo"]


# ----------------------------------------------------------------------- rollouts
def episode_to_completion(ep: Episode, eos_id: int) -> dict[str, Any]:
    """One episode as TRL's rollout output for one sample.

    Returns ``prompt_ids`` (first turn's prompt), ``completion_ids`` (all later ids),
    ``env_mask`` (1 = policy token) and ``logprobs`` (0.0 on observation tokens).
    """
    recs = [s.tokens for s in ep.steps if s.tokens is not None]
    if not recs:  # the episode failed before the policy sampled anything: an empty, fully masked completion
        return {"prompt_ids": [eos_id], "completion_ids": [eos_id], "env_mask": [0], "logprobs": [0.0]}
    prompt = recs[0].prompt_ids
    seq, mask, lps = [], [], []
    for r in recs:
        full = r.prompt_ids
        if full[: len(prompt) + len(seq)] != prompt + seq:
            raise RowgymError(f"episode {ep.episode_id}: turn prompts are not prefixes of each other; the policy "
                              f"re-tokenised its history (token fidelity broken)")
        new = full[len(prompt) + len(seq):]  # observation + template glue since the last completion
        seq += new
        mask += r.mask[len(prompt) + len(seq) - len(new): len(full)]
        lps += [0.0] * len(new)
        seq += r.completion_ids
        mask += [1] * len(r.completion_ids)
        lps += list(r.logprobs)
    if not seq:
        seq, mask, lps = [eos_id], [0], [0.0]
    return {"prompt_ids": list(prompt), "completion_ids": seq, "env_mask": mask, "logprobs": lps}


class RolloutPlayer:
    """TRL ``rollout_func``: plays the prompts' episodes through rowgym with the trainer's model.

    ``prompt_seeds`` maps :func:`rowgym.trainers.datasets.prompt_key` of a prompt to its env seed.
    After each call, ``last_episodes`` holds the episodes just played (tests compare them with
    what the reward functions received).
    """

    def __init__(self, env_id: str, prompt_seeds: dict[str, int], *, temperature: float = 1.0,
                 max_turn_tokens: int = 96, max_turns: int | None = None, seed: int = 0,
                 log_path: Path | None = None, env_kwargs: dict[str, Any] | None = None):
        self.env_id, self.prompt_seeds = env_id, prompt_seeds
        self.temperature, self.max_turn_tokens, self.max_turns, self.seed = temperature, max_turn_tokens, max_turns, seed
        self.log_path = log_path
        self.env_kwargs = dict(env_kwargs or {})
        if max_turns:
            self.env_kwargs["max_turns"] = max_turns
        self.last_episodes: list[Episode] = []
        self.calls = 0

    def groups(self, prompts: list[Any]) -> list[tuple[int, int]]:
        """(env seed, sample index) per prompt: consecutive equal prompts form one group."""
        out: list[tuple[int, int]] = []
        prev, idx = None, 0
        for p in prompts:
            key = ds.prompt_key(p)
            if key not in self.prompt_seeds:
                raise RowgymError("rollout_func got a prompt that is not in the GRPO prompt dataset; build the "
                                  "dataset with rowgym.trainers.datasets.grpo_prompts")
            idx = idx + 1 if key == prev else 0
            prev = key
            out.append((self.prompt_seeds[key], idx))
        return out

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list]:
        model, tok = trainer.model, trainer.processing_class
        step = int(trainer.state.global_step)
        was_training = model.training
        model.eval()
        try:
            episodes = asyncio.run(self._play(self.groups(prompts), model, tok, step))
        finally:
            model.train(was_training)
        self.last_episodes = episodes
        self.calls += 1
        if self.log_path is not None:
            with open(self.log_path, "a") as f:
                for ep in episodes:
                    f.write(ep.model_dump_json() + "\n")
        eos = tok.convert_tokens_to_ids(tok.eos_token)
        outs = [episode_to_completion(ep, eos) for ep in episodes]
        return {
            "prompt_ids": [o["prompt_ids"] for o in outs],
            "completion_ids": [o["completion_ids"] for o in outs],
            "logprobs": [o["logprobs"] for o in outs],
            "env_mask": [o["env_mask"] for o in outs],
            # extra keys reach the reward functions as keyword arguments
            "final_reward": [trained_final_reward(ep) for ep in episodes],
            "local_reward": [round(ep.local_return, 6) for ep in episodes],
            "success": [ep.success for ep in episodes],
            "episode_id": [ep.episode_id for ep in episodes],
        }

    async def _play(self, keys: list[tuple[int, int]], model: Any, tok: Any, step: int) -> list[Episode]:
        from rowgym.agents.hf_policy import HFPolicy
        from rowgym.rollouts.engine import CollectConfig, Hooks, run_keys
        from rowgym.rollouts.episode import EpisodeKey

        run_id = f"grpo-step{step}-call{self.calls}"
        cfg = CollectConfig(env_id=self.env_id, agent="hf", env_kwargs=self.env_kwargs, progress=False)
        # the same env seed for a group; the policy's sampling seed differs per step (and, inside
        # TokenPolicy, per sample index and turn)
        seed = self.seed * 1_000_003 + step

        def make(cfg: CollectConfig, env: Any) -> Any:
            return HFPolicy(model=model, tokenizer=tok, temperature=self.temperature, max_tokens=self.max_turn_tokens,
                            seed=seed)

        ks = [EpisodeKey(run_id, s, i) for s, i in keys]
        got: dict[str, Episode] = {}
        await run_keys(cfg, ks, lambda ep: got.__setitem__(ep.episode_id, ep), concurrency=len(ks),
                       hooks=Hooks(make_agent=make))
        return [got[k.episode_id] for k in ks]


# ------------------------------------------------------------------ reward functions
def final_reward(prompts: list, completions: list, final_reward: list[float], **_: Any) -> list[float]:
    """rowgym's final (verifier) reward of each episode, unchanged."""
    return [float(r) for r in final_reward]


def local_reward(prompts: list, completions: list, local_reward: list[float], **_: Any) -> list[float]:
    """The sum of rowgym's local (per-step) rewards of each episode, unchanged."""
    return [float(r) for r in local_reward]


# ------------------------------------------------------------------------- training
def prompt_dataset(env_id: str, n: int, *, env_kwargs: dict[str, Any] | None = None) -> tuple[list[dict], dict[str, int]]:
    """GRPO prompt rows (train split; one row per distinct first prompt) and the prompt-key -> seed map."""
    rows = ds.grpo_prompts(env_id, "train", n, env_kwargs=env_kwargs)
    seeds: dict[str, int] = {}
    uniq = []
    for r in rows:
        if r["prompt_key"] not in seeds:  # two seeds with the same first prompt would be ambiguous
            seeds[r["prompt_key"]] = r["seed"]
            uniq.append(r)
    return uniq, seeds


def grpo_config(out_dir: str | Path, opts: GRPOOptions) -> Any:
    from trl import GRPOConfig

    kw: dict[str, Any] = dict(
        output_dir=str(out_dir), max_steps=opts.max_steps, learning_rate=opts.learning_rate,
        per_device_train_batch_size=opts.prompts_per_step * opts.num_generations,
        num_generations=opts.num_generations, gradient_accumulation_steps=1, steps_per_generation=1,
        num_iterations=1, beta=opts.beta, loss_type=opts.loss_type, scale_rewards=opts.scale_rewards,
        temperature=opts.temperature, reward_weights=[1.0, opts.local_reward_weight],
        logging_steps=1, save_strategy="no", report_to=[], seed=opts.seed, gradient_checkpointing=False,
        disable_tqdm=True, lr_scheduler_type="constant", warmup_steps=0, log_completions=False,
        remove_unused_columns=False, dataloader_num_workers=0,
    )
    if opts.use_cpu:
        kw.update(use_cpu=True, bf16=False, fp16=False)
    kw.update(opts.extra)
    return GRPOConfig(**kw)


def make_grpo_trainer(env_id: str, model: Any, tokenizer: Any, out_dir: str | Path,
                      opts: GRPOOptions | None = None, *, env_kwargs: dict[str, Any] | None = None) -> Any:
    """A ready GRPOTrainer whose ``rollout_func`` (``trainer.rowgym_player``) plays rowgym episodes."""
    import os

    from trl import GRPOTrainer

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    opts = opts or GRPOOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, seeds = prompt_dataset(env_id, opts.n_prompts, env_kwargs=env_kwargs)
    player = RolloutPlayer(env_id, seeds, temperature=opts.temperature, max_turn_tokens=opts.max_turn_tokens,
                           max_turns=opts.max_turns, seed=opts.seed,
                           log_path=out / "rollouts.jsonl" if opts.log_rollouts else None, env_kwargs=env_kwargs)
    dataset = ds.to_hf_dataset([{"prompt": r["prompt"], "seed": r["seed"]} for r in rows])
    trainer = GRPOTrainer(model=model, reward_funcs=[final_reward, local_reward], args=grpo_config(out / "trainer", opts),
                          train_dataset=dataset, processing_class=tokenizer, rollout_func=player)
    trainer.rowgym_player = player
    return trainer


def train_grpo(env_id: str, model_dir: str | Path, out_dir: str | Path, opts: GRPOOptions | None = None, *,
               env_kwargs: dict[str, Any] | None = None) -> GRPOResult:
    """Train ``model_dir`` with multi-turn GRPO on ``env_id``'s train seeds; save to ``out_dir``.

    Returns:
        A :class:`GRPOResult` with each step's mean reward, success rate, wall seconds and record.
    """
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise RowgymError("GRPO needs the train extra: pip install 'rowgym[train]'") from e
    return aio.run(run_grpo(env_id, Path(model_dir).expanduser(), Path(out_dir), opts or GRPOOptions(),
                            env_kwargs=env_kwargs))
