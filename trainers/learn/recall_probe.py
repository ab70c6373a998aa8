"""Can a model learn to look up an id by its key? A synthetic probe of what ``make learn`` needs.

    python -m rowgym.trainers.learn.recall_probe --pairs 1 --steps 250            # one id: copied
    python -m rowgym.trainers.learn.recall_probe --pairs 2 --filler --steps 750   # two ids: the lookup
    python -m rowgym.trainers.learn.recall_probe --repeated --architecture llama  # is there an induction head?

An Airline task names several same-shaped values (member id, reservation id, flight number, a
date, the reservations in a tool response), and each call must copy the one its argument's key
names. This probe isolates that skill on short token sequences, cheap enough to train thousands
of steps on a CPU:

    [filler words] k1 : 3 5 8 8 0 6 ; k2 : 7 1 0 2 9 4 ; [filler words] ? k2 :  ->  7 1 0 2 9 4
    --adjacent:    k1 3 5 8 8 0 6 ; k2 7 1 0 2 9 4 ; ? k2  ->  7 1 0 2 9 4

``pairs`` key/value pairs (random one-token words as keys, six random digits as values), then a
query naming one key; the loss is on the six answer digits only. ``--filler`` puts 0-30 random
words before the pairs and 0-10 before the query, so the answer's distance to its value varies.
It prints, every ``--every`` steps, on 256 fresh examples: digit accuracy (teacher-forced),
first-digit accuracy and exact answers. The first digit is the lookup itself: a model that picks
a random pair gets ``1/pairs + (1 - 1/pairs) / 10`` of them right (0.55 for two pairs, 0.325 for
four), which is where the tiny model stays (docs/learn.md).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

DIGITS = 6


@dataclass(frozen=True)
class ProbeConfig:
    pairs: int = 2
    filler: bool = False
    adjacent: bool = False
    """No ``:`` after a key: its value follows it directly and the query ends with the key, so that the
    token before the answer is the key itself (a one-token match, what an induction head does)."""
    repeated: bool = False
    """Instead of key/value pairs: 8-30 random tokens (after 0-20 others; any token but the chat
    template's), then the same tokens again, with the loss on the repeat. Only an induction head (find
    where the current token stood before, copy what followed it) gets the repeat right; the measure is
    its token accuracy (``copy_acc``)."""
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        small = {k: v for k, v in (("pairs", self.pairs), ("steps", self.steps), ("batch_size", self.batch_size),
                                   ("every", self.every)) if v < 1}
        if small or self.warmup_steps < 0 or not self.learning_rate > 0:
            raise ValueError(f"pairs, steps, batch_size and every must be >= 1, warmup_steps >= 0 and learning_rate "
                             f"> 0; got {small or {'warmup_steps': self.warmup_steps, 'learning_rate': self.learning_rate}}")


class RecallTask:
    """Endless seeded stream of (input ids, labels) of the probe, from the tokenizer's own tokens."""

    def __init__(self, tokenizer: Any, cfg: ProbeConfig):
        from rowgym.trainers.tiny_model import _WORDS

        enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
        self.digits = [enc(str(d))[0] for d in range(10)]
        self.words = sorted({enc(w)[0] for w in _WORDS if "_" not in w and len(enc(w)) == 1})
        self.colon, self.semi, self.query = (enc(s)[0] for s in (":", ";", "?"))
        self.ordinary = sorted(set(range(len(tokenizer))) - set(tokenizer.added_tokens_decoder))
        if cfg.pairs > len(self.words):
            raise ValueError(f"pairs must be at most {len(self.words)} (the one-token words the keys are drawn from); "
                             f"got {cfg.pairs}")
        self.cfg, self.rng = cfg, random.Random(cfg.seed)

    def example(self) -> tuple[list[int], list[int]]:
        rng, cfg = self.rng, self.cfg
        if cfg.repeated:  # from every ordinary token, so a token rarely stands twice in one sequence
            pool = self.ordinary
            before = [rng.choice(pool) for _ in range(rng.randint(0, 20))]
            seq = [rng.choice(pool) for _ in range(rng.randint(8, 30))]
            return before + seq + seq, [-100] * (len(before) + len(seq) + 1) + seq[1:]
        keys = rng.sample(self.words, cfg.pairs)
        values = [[rng.choice(self.digits) for _ in range(DIGITS)] for _ in keys]
        x = [rng.choice(self.words) for _ in range(rng.randint(0, 30))] if cfg.filler else []
        sep = [] if cfg.adjacent else [self.colon]
        for k, v in zip(keys, values, strict=True):
            x += [k, *sep, *v, self.semi]
        if cfg.filler:
            x += [rng.choice(self.words) for _ in range(rng.randint(0, 10))]
        asked = rng.randrange(cfg.pairs)
        x += [self.query, keys[asked], *sep]
        return x + values[asked], [-100] * len(x) + values[asked]

    def batch(self, n: int, pad: int) -> tuple[Any, Any]:
        import torch

        xs = [self.example() for _ in range(n)]
        width = max(len(x) for x, _ in xs)  # right padding: causal attention never looks at it
        return (torch.tensor([x + [pad] * (width - len(x)) for x, _ in xs]),
                torch.tensor([y + [-100] * (width - len(y)) for _, y in xs]))


def measure(model: Any, task: RecallTask, n: int = 256, pad: int = 0) -> dict[str, float]:
    """Teacher-forced digit accuracy, first-digit accuracy and exact answers on ``n`` fresh examples."""
    import torch

    model.eval()
    with torch.no_grad():
        x, y = task.batch(n, pad)
        pred = model(input_ids=x).logits[:, :-1].argmax(-1)
    model.train()
    target = y[:, 1:]
    keep = target != -100
    if task.cfg.repeated:
        return {"copy_acc": round((pred[keep] == target[keep]).float().mean().item(), 3)}
    hits = (pred[keep] == target[keep]).view(n, DIGITS)
    return {"digit_acc": round(hits.float().mean().item(), 3), "first_digit_acc": round(hits[:, 0].float().mean().item(), 3),
            "exact": round(hits.all(-1).float().mean().item(), 3)}


def run(model: Any, tokenizer: Any, cfg: ProbeConfig, log: Any = print) -> list[dict[str, float]]:
    """Train ``model`` in place on the probe; returns the measurements (step 0, every ``every``, the last)."""
    import torch

    from rowgym.trainers.pretrain import ClippedAdamW

    torch.manual_seed(cfg.seed)
    task = RecallTask(tokenizer, cfg)
    pad = tokenizer.pad_token_id or 0
    opt = ClippedAdamW(model, cfg.learning_rate, cfg.warmup_steps, cfg.steps)
    curve, t0 = [], time.perf_counter()
    for step in range(cfg.steps + 1):
        if step % cfg.every == 0 or step == cfg.steps:
            curve.append({"step": step, **measure(model, task, pad=pad)})
            log(f"step {step:5d}  " + "  ".join(f"{k} {v:.3f}" for k, v in curve[-1].items() if k != "step")
                + f"  ({time.perf_counter() - t0:.0f}s)")
        if step == cfg.steps:
            break
        x, y = task.batch(cfg.batch_size, pad)
        model(input_ids=x, labels=y).loss.backward()
        opt.step()
    return curve


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rowgym.trainers.tiny_model import ARCHITECTURES, default_model_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model dir (default: the tiny model, built if missing)")
    p.add_argument("--layers", type=int, default=None,
                   help="a fresh tiny model with this many decoder layers instead (the default tiny model has 2)")
    p.add_argument("--architecture", choices=ARCHITECTURES, default=None,
                   help="a fresh tiny model of this network instead (the default tiny model is qwen3)")
    p.add_argument("--threads", type=int, default=1)
    for f, default in asdict(ProbeConfig()).items():
        if isinstance(default, bool):
            p.add_argument(f"--{f}", action="store_true")
        else:
            p.add_argument(f"--{f.replace('_', '-')}", type=type(default), default=default)
    a = vars(p.parse_args(argv))
    model_dir, threads, layers, arch = a.pop("model"), a.pop("threads"), a.pop("layers"), a.pop("architecture")
    fresh = layers is not None or arch is not None
    if (layers is not None and layers < 1) or (fresh and model_dir is not None):
        p.error(f"--layers must be >= 1, and --layers and --architecture build a fresh model, so they cannot be "
                f"combined with --model; got --layers {layers}, --architecture {arch}, --model {model_dir}")
    try:
        cfg = ProbeConfig(**a)
    except ValueError as e:
        p.error(str(e))
    if model_dir is None:
        from rowgym.trainers.tiny_model import TinyModelConfig, build_tiny_model

        if not fresh:
            model_dir = build_tiny_model(default_model_dir())
        else:  # same vocabulary, width and seed: only the depth or the network differs
            d, cfg_ = default_model_dir(), TinyModelConfig()
            layers, arch = layers or cfg_.num_hidden_layers, arch or cfg_.architecture
            model_dir = build_tiny_model(d.with_name(f"tiny-{arch}-{layers}-layers"),
                                         config=TinyModelConfig(num_hidden_layers=layers, architecture=arch))
    torch.set_num_threads(threads)
    print(f"{cfg}" + ("" if cfg.repeated else "; first-digit accuracy of a random pick among the pairs: "
                                               f"{1 / cfg.pairs + (1 - 1 / cfg.pairs) / 10:.3f}"))
    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), AutoTokenizer.from_pretrained(model_dir)
    try:
        RecallTask(tokenizer, cfg)  # refuses more pairs than there are key words, before any training
    except ValueError as e:
        p.error(str(e))
    return run(model, tokenizer, cfg)


if __name__ == "__main__":
    main()
