"""The shared stages of ``make learn``: base model, expert data, SFT start, and evaluation on a split.

Every artefact is cached (:func:`rowgym.trainers.cache_keys.cached`) under a key that names its
parameters, its upstream artefacts and the source files that produce it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rowgym.trainers.cache_keys import cached

CODE_MODEL = ["rowgym.trainers.tiny_model", "rowgym.trainers.pretrain", "rowgym.trainers.learn.recall_probe"]
CODE_DATA = ["rowgym.envs.toolapi", "rowgym.agents.experts", "rowgym.rollouts", "rowgym.rows", "rowgym.env",
             "rowgym.tools", "rowgym.trainers.learn.env"]
CODE_SFT = ["rowgym.trainers.sft", "rowgym.trainers.datasets", "rowgym.trainers.gates"]


def log(msg: str) -> None:
    print(f"[learn] {msg}", flush=True)


def pretrained_model(cache: Path, steps: int, seed: int, ids: float = 0.0, layers: int = 2,
                     architecture: str = "qwen3", induction_steps: int = 0) -> Path:
    """The tiny model of ``seed`` (``architecture`` with ``layers`` decoder layers,
    :class:`rowgym.trainers.tiny_model.TinyModelConfig`) after ``induction_steps`` of the repeated-token
    warm-up (:func:`induction_warmup`) and ``steps`` of generic copy pretraining (``ids``: the share of
    examples that copy multi-token ids, :class:`rowgym.trainers.pretrain.PretrainConfig`)."""
    from rowgym.trainers.pretrain import PretrainConfig, build_pretrained_tiny_model
    from rowgym.trainers.tiny_model import TinyModelConfig, build_tiny_model

    def build(tmp: Path) -> None:
        base = build_tiny_model(tmp / "base", config=TinyModelConfig(seed=seed, num_hidden_layers=layers,
                                                                         architecture=architecture))
        if induction_steps > 0:
            base = induction_warmup(base, tmp / "induced", induction_steps, seed)
        if steps > 0:
            # micro-batches only with id examples (their long contexts): the word-slot path stays the
            # demo's, loss for loss
            cfg = PretrainConfig(steps=steps, seed=seed, ids=ids, micro_batch=8 if ids else 0)
            build_pretrained_tiny_model(tmp / "model", cfg, base=base)
        else:
            (tmp / "model").symlink_to("base")

    params = {"steps": steps, "seed": seed, "ids": ids, "layers": layers, "architecture": architecture,
              "induction_steps": induction_steps}
    return cached(cache, "pretrained", params, build, code=CODE_MODEL, log=log) / "model"


def induction_warmup(base: Path, out: Path, steps: int, seed: int) -> Path:
    """``base`` after ``steps`` of ``recall_probe --repeated`` (random tokens, then the same again, loss on
    the repeat), saved in ``out`` with its copy-accuracy curve (``induction.json``).

    The repeat is dense practice for the induction head (copy what followed the current token last
    time), which every id lookup of a tool-API task is built on and which the sparse answers of the
    copy pretraining do not form in 400 steps (docs/learn.md)."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rowgym.trainers.learn.recall_probe import ProbeConfig, run

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    curve = run(model, AutoTokenizer.from_pretrained(base),
                ProbeConfig(repeated=True, steps=steps, every=100, warmup_steps=min(30, steps), seed=seed),
                log=lambda line: log(f"induction warm-up {line}"))
    shutil.copytree(base, out)  # tokenizer, chat template, build info; the weights are replaced
    model.save_pretrained(out)
    (out / "induction.json").write_text(json.dumps(curve, indent=2) + "\n")
    return out


def expert_run(cache: Path, env_id: str, episodes: int, offset: int) -> Path:
    """Scripted-expert episodes on train seeds ``offset .. offset + episodes - 1`` of ``env_id`` (a run dir)."""
    from rowgym.rollouts.engine import CollectConfig, collect

    def build(tmp: Path) -> None:
        collect(CollectConfig(env_id=env_id, agent="expert", split="train", episodes=episodes, seed_offset=offset,
                              out=tmp / "run", progress=False, concurrency=4, resume=False))

    return cached(cache, "expert", {"env_id": env_id, "episodes": episodes, "offset": offset}, build,
                  code=CODE_DATA, log=log) / "run"


def sft_options(steps: int, batch: int, lr: float, seed: int, *, schedule: str = "cosine") -> Any:
    """SFT options of the learn benchmark: warm-up then ``schedule``, gradient clipping at 1."""
    from rowgym.trainers.sft import SFTOptions

    return SFTOptions(max_steps=steps, batch_size=batch, learning_rate=lr, warmup_steps=max(1, steps // 10),
                      lr_scheduler_type=schedule, max_length=4096, seed=seed, logging_steps=1,
                      extra={"max_grad_norm": 1.0})


def sft_start(cache: Path, model_dir: Path, run: Path, *, steps: int, batch: int, lr: float, seed: int,
              env_id: str, dev: list[int], target: float, every: int, max_turns: int, max_tokens: int) -> Path:
    """The SFT start: ``model_dir`` after SFT on the expert ``run`` (warm-up + cosine decay over ``steps``),
    scored on **dev** seeds every ``every`` steps, stopped at the first check whose success reaches
    ``target``; the start is the checkpoint of the best check (ties: the later one).

    This is how the start is made weak on purpose (fewer SFT steps), by a rule that reads dev seeds
    only. Keeping the best check, not the last, matters because this tiny policy's dev success falls
    again late in the schedule (0.141 at step 180, 0.078 at 240 in one run). ``start.json`` beside
    the model records every check, the step chosen, the step it stopped at and why.
    """
    from rowgym.trainers.dev_selection import DevSelection
    from rowgym.trainers.sft import train_sft

    class StartSelection(DevSelection):
        """Dev selection that also stops once the target is reached (that check is then the best)."""

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            super().on_step_end(args, state, control, model=model, **kw)
            last = self.history[-1] if self.history else None
            if last and last["step"] == state.global_step and last["dev_success"] >= target:
                control.should_training_stop = True

    def build(tmp: Path) -> None:
        tok = load(model_dir)[1]

        def score(model: Any) -> dict[str, float]:
            r = evaluate(model, tok, env_id, dev, "dev", max_turns=max_turns, max_tokens=max_tokens)
            return {"dev_success": r.success_rate, "dev_bad_call_rate": r.bad_call_rate}

        sel = StartSelection(score, every=every, key="dev_success",
                             on_check=lambda step, r: log(f"SFT start step {step}: dev success {r['dev_success']:.3f}"))
        res = train_sft(run, model_dir, tmp / "model", sft_options(steps, batch, lr, seed), callbacks=[sel])
        best = next(c for c in sel.history if c["step"] == sel.best_step)
        info = {"losses": res.losses, "checks": sel.history, "steps": res.steps, "max_steps": steps,
                "chosen_step": sel.best_step, "dev_success": best["dev_success"], "target": target,
                "stopped": "reached the dev target" if sel.history[-1]["dev_success"] >= target
                else "max steps (target not reached)"}
        (tmp / "start.json").write_text(json.dumps(info, indent=2) + "\n")
        log(f"SFT start: the checkpoint of step {sel.best_step} (dev success {best['dev_success']:.3f}) after "
            f"{res.steps} steps")

    params = {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "env_id": env_id, "dev": dev,
              "target": target, "every": every, "max_turns": max_turns, "max_tokens": max_tokens}
    return cached(cache, "sft-start", params, build, code=CODE_SFT + [__name__, "rowgym.trainers.dev_selection"],
                  upstream=[model_dir.parent, run.parent], log=log) / "model"


@dataclass
class EvalResult:
    split: str
    seeds: list[int]
    success: list[int]
    """1/0 per episode, in ``seeds`` order."""
    bad_calls: int
    steps: int
    turns: list[int]
    departures: dict[str, int] = field(default_factory=dict)
    """Where the episodes left the gold plan (``learn.departures``), label -> count."""

    @property
    def success_rate(self) -> float:
        return sum(self.success) / max(1, len(self.success))

    @property
    def bad_call_rate(self) -> float:
        return self.bad_calls / max(1, self.steps)

    @property
    def mean_turns(self) -> float:
        return sum(self.turns) / max(1, len(self.turns))

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "episodes": len(self.seeds), "success_rate": self.success_rate,
                "bad_call_rate": self.bad_call_rate, "mean_turns": self.mean_turns, "seeds": self.seeds,
                "success": self.success, "turns": self.turns, "departures": self.departures}


def evaluate(model: Any, tokenizer: Any, env_id: str, seeds: list[int], split: str, *, max_turns: int,
             max_tokens: int) -> EvalResult:
    """One greedy episode per seed through the rollout engine (all in flight, turns sampled in batches)."""
    import rowgym
    from rowgym.trainers.evaluation import greedy_episodes
    from rowgym.trainers.learn.departures import count_departures

    eps = greedy_episodes(model, tokenizer, env_id, seeds, split, max_turns=max_turns, max_tokens=max_tokens,
                          max_batch=64, key_prefix=f"eval-{split}")
    env = rowgym.make(env_id)
    try:
        departures = count_departures(env, eps)
    finally:
        env.close()
    return EvalResult(split, list(seeds), [int(e.success) for e in eps], sum(e.n_bad_calls for e in eps),
                      sum(len(e.steps) for e in eps), [len(e.steps) for e in eps], departures)


def load(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (Path(model_dir) / "tokenizer_config.json").exists():
        # AutoTokenizer would not fail here: for a qwen3 config it builds an empty tokenizer (1 token)
        raise FileNotFoundError(f"{model_dir} holds no tokenizer (tokenizer_config.json)")
    return (AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
            AutoTokenizer.from_pretrained(model_dir))
