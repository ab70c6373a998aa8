"""The options of ``make learn`` (each field is a CLI option; its docstring is the help)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from rowgym.trainers.tiny_model import ARCHITECTURES

ARMS = ("sft", "rsft", "dpo", "grpo", "grpo_turn")
"""(a) more SFT on expert data, (b) RSFT, (c) DPO, (d) GRPO --credit grpo, (e) GRPO --credit turn."""


@dataclass
class LearnConfig:
    out: str = "runs/learn"
    """Output directory (results.json, report.html, learn.png, one folder per seed and arm)."""
    cache: str = ""
    """Where cached artefacts live (pretrained model, expert data, SFT start); default <out>/cache."""
    family: str = "rowgym/ToolAPI-Airline-v0"
    """The tool-API family."""
    kinds: str = "cancel,cabin,baggage"
    """Comma-separated task kinds of the family (every seed of another kind is skipped)."""
    tools: str = "gold"
    """gold: only the tools these kinds' gold plans call (a 925-token Airline prompt); all: every family tool."""
    seeds: str = "0"
    """Training seeds (comma-separated): one full pipeline per seed; the table reports mean and spread."""
    arms: str = ",".join(ARMS)
    """Arms to run (comma-separated subset of sft, rsft, dpo, grpo, grpo_turn)."""
    scale: int = 1
    """Multiplies the budget, the arms' training steps and the evaluation sizes (4: a GPU box; docs/learn.md).
    The SFT start is not scaled: it stays a start that solves a fraction of the tasks."""
    workers: int = 2
    """Arms trained at once, each in its own process with one torch thread."""
    threads: int = 0
    """torch threads of the serial parts (pretraining, SFT start); 0: one per worker."""
    # ---- base model
    architecture: str = "llama"
    """The tiny model's network: llama, or qwen3 (the demo's: the same with Qwen3's per-head query/key
    normalisation, which in this tiny model keeps an induction head from forming and its SFT start at 0: docs/learn.md)."""
    induction_steps: int = 600
    """Steps of a repeated-token warm-up before the copy pretraining (recall_probe --repeated), which forms the
    induction head id lookups need in the llama network (600: copy accuracy 0.985; docs/learn.md); 0: none."""
    layers: int = 2
    """Decoder layers of the tiny model (2: the demo's; the recall probe's results by depth: docs/learn.md)."""
    pretrain_steps: int = 400
    """Generic copy pretraining of the tiny model (trainers/pretrain.py; the demo uses 1000: 400 is what fits)."""
    pretrain_ids: float = 0.5
    """Share of pretraining examples that copy multi-token ids (member ids, reservation codes, dates) across
    long contexts, as Airline's tasks need; 0: the demo's word-slot corpus only (docs/learn.md)."""
    # ---- the SFT start
    start_expert_episodes: int = 1920
    """Expert episodes (train seeds) the SFT start is trained on: 1,920 = each seen about once in 240 steps of
    batch 8. With 160 (12 epochs) the start memorised their ids and its dev success fell late (docs/learn.md)."""
    start_sft_steps: int = 240
    """At most this many SFT steps for the start (batch sft_batch, warm-up + cosine decay over them)."""
    start_target: float = 0.3
    """The start stops at the first dev check whose success reaches this (a start that solves ~0.2-0.7)."""
    start_check_every: int = 30
    """SFT steps between the start's dev checks."""
    sft_batch: int = 8
    sft_lr: float = 2e-3
    # ---- the arms
    budget: int = 128
    """Sampled episodes per arm (expert episodes for 'sft', policy samples for the others)."""
    stages: int = 2
    """Each arm spends its budget in this many equal stages; after each, dev success is measured (the
    learning curve) and the stage with the best dev success is the arm's checkpoint."""
    group_size: int = 4
    """k samples per task (RSFT, DPO) = G generations per group (GRPO)."""
    temperature: float = 1.0
    arm_sft_steps: int = 32
    """At most this many SFT steps per stage for 'sft' and 'rsft' (batch sft_batch; see arm_epochs)."""
    arm_sft_lr: float = 2e-4
    """Peak learning rate of the arms' SFT, a tenth of the start's: the start has already decayed to ~0, and
    1e-3 (the first runs) lowered the start's dev success in every SFT-based arm (docs/learn.md)."""
    arm_epochs: float = 2.0
    """At most this many passes over a stage's own new data (RSFT's accepted samples, DPO's pairs): the
    first runs trained 20+ passes over 3-11 examples, drove the loss to ~1e-3 and collapsed the policy."""
    dpo_steps: int = 16
    """At most this many DPO steps per stage (batch dpo_batch pairs; see arm_epochs)."""
    dpo_batch: int = 4
    dpo_lr: float = 5e-5
    """A tenth of the first runs' 5e-4, which took the DPO arm to a bad-call rate of 0.66-1.0."""
    dpo_beta: float = 0.1
    grpo_prompts_per_step: int = 4
    """Groups per GRPO step: steps = budget / (prompts_per_step * group_size)."""
    grpo_lr: float = 1e-4
    turn_local_weight: float = 1.0
    """Weight of the env's per-step rewards in arm (e)'s per-turn returns (0 would make (e) equal (d))."""
    # ---- evaluation
    dev_episodes: int = 64
    """Dev seeds for the learning curves and the checkpoint choice (never held-out)."""
    heldout_episodes: int = 200
    """Held-out seeds, one greedy episode each, for the reported numbers."""
    n_boot: int = 2000
    """Bootstrap resamples for the 95% CIs."""
    max_turns: int = 6
    max_turn_tokens: int = 64

    def validate(self) -> None:
        """Every arm must spend exactly ``budget`` sampled episodes in ``stages`` whole stages."""
        self.arm_list()
        per_step = self.grpo_prompts_per_step * self.group_size
        if self.stages < 1 or self.group_size < 2:
            raise ValueError("stages must be >= 1 and group_size >= 2")
        if self.layers < 1 or self.architecture not in ARCHITECTURES or self.induction_steps < 0:
            raise ValueError(f"layers must be >= 1, architecture {' or '.join(ARCHITECTURES)} and induction_steps >= 0; got "
                             f"{self.layers}, {self.architecture!r}, {self.induction_steps}")
        if not 0.0 <= self.pretrain_ids <= 1.0:
            raise ValueError(f"pretrain_ids is a share in [0, 1]; got {self.pretrain_ids}")
        if self.budget % (self.stages * self.group_size) or self.budget % (self.stages * per_step):
            raise ValueError(f"budget {self.budget} must split into {self.stages} stages of whole groups of "
                             f"{self.group_size} and of whole GRPO steps of {per_step} episodes")

    def arm_list(self) -> list[str]:
        arms = [a.strip() for a in self.arms.split(",") if a.strip()]
        bad = [a for a in arms if a not in ARMS]
        if bad:
            raise ValueError(f"unknown arms {bad}; choose from {', '.join(ARMS)}")
        return arms

    def seed_list(self) -> list[int]:
        return [int(s) for s in self.seeds.split(",") if s.strip()]

    def kind_list(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.kinds.split(",") if k.strip())

    def scaled(self) -> LearnConfig:
        """The sizes multiplied by ``scale`` (learning rates, batch sizes and turn limits unchanged)."""
        s = self.scale
        if s == 1:
            return self
        return replace(self, budget=self.budget * s,
                       arm_sft_steps=self.arm_sft_steps * s, dpo_steps=self.dpo_steps * s,
                       dev_episodes=self.dev_episodes * s, heldout_episodes=self.heldout_episodes * s,
                       stages=self.stages * 2 if s >= 4 else self.stages)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
