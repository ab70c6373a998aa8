"""The options of a GRPO run (the CLI's ``rowgym train grpo`` options map onto these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class GRPOOptions:
    """Training knobs."""

    max_steps: int = 10
    num_generations: int = 4
    """G: episodes per seed (one GRPO group = one rowgym group)."""
    prompts_per_step: int = 2
    """Distinct seeds (groups) per optimizer step; the batch is ``prompts_per_step * num_generations`` episodes."""
    n_prompts: int = 256
    """Training seeds in the prompt dataset (the TRL ``rollout_func`` path only)."""
    learning_rate: float = 1e-5
    temperature: float = 1.0
    max_turn_tokens: int = 96
    """Tokens the policy may sample per turn."""
    max_turns: int | None = None
    """Episode turn limit (default: the env's)."""
    local_reward_weight: float = 0.0
    """Weight of the summed local (per-step) rewards next to the final reward (weight 1)."""
    beta: float = 0.0
    """KL coefficient (TRL path only; the rowgym loop has no reference model, as in DAPO / Dr. GRPO)."""
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    """'group' (GRPO: divide by the group std) or 'none' (Dr. GRPO)."""
    seed: int = 0
    use_cpu: bool = True
    log_rollouts: bool = True
    """TRL path: append played episodes to ``<out>/rollouts.jsonl`` (the rowgym loop always stores them)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """TRL path: any other GRPOConfig fields, passed through."""

    # ---- the rowgym loop (trainers.rl)
    policy: Literal["hf", "vllm"] = "hf"
    """Who samples: the trainer's model in process (``hf``) or a vLLM server whose weights are reloaded."""
    max_staleness: int = 0
    """k: a step may train on groups sampled by versions >= (its version - k); 0 is synchronous."""
    credit: Literal["grpo", "turn", "gigpo"] = "grpo"
    gamma: float = 1.0
    """Discount of per-turn returns (credit 'turn' and 'gigpo')."""
    omega: float = 1.0
    """Weight of GiGPO's step-level advantage."""
    is_cap: float = 2.0
    """Truncation C of the importance weight min(pi_old / pi_sample, C) (off-policy correction)."""
    clip_eps: float = 0.2
    max_grad_norm: float = 1.0
    micro_batch: int = 0
    """Episodes per forward/backward pass (0: the whole batch at once)."""
    resume: bool = False
    base_url: str | None = None
    """An already running vLLM server (started in dev mode) instead of one started for the run."""
    vllm_port: int | None = None
    concurrency: int | None = None
    """Episodes in flight (default: one batch, so every group of a step plays at once)."""
    batched_sampling: bool = True
    """HF policy: sample concurrent turns in one batched ``generate`` (False: one at a time)."""
    keep_checkpoints: int = 2

    @property
    def batch_size(self) -> int:
        return self.prompts_per_step * self.num_generations

    def validate(self) -> None:
        from rowgym.errors import RowgymError

        if self.policy not in ("hf", "vllm"):
            raise RowgymError(f"policy must be 'hf' or 'vllm', got {self.policy!r}")
        if self.credit not in ("grpo", "turn", "gigpo"):
            raise RowgymError(f"credit must be grpo, turn or gigpo, got {self.credit!r}")
        if self.max_staleness < 0:
            raise RowgymError(f"max_staleness must be >= 0, got {self.max_staleness}")
        if self.num_generations < 2:
            raise RowgymError("num_generations must be >= 2 (a group of one has no baseline)")
        if self.is_cap <= 0:
            raise RowgymError(f"is_cap must be > 0, got {self.is_cap}")
