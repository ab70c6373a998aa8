"""A short generic "copy" pretraining for the tiny model, so that SFT teaches tool use, not copying.

    python -m rowgym.trainers.pretrain --out runs/tiny-pretrained --steps 1000

Why: a real base model already copies words from a request into its answer; SFT on tool
calls then only has to teach the format and which tool. A random-init tiny model cannot
copy, and learning to while learning tool use is beyond a few minutes of CPU: measured on
rowgym/ToolAPI-Home-v0, 1,200 SFT steps from random init leave every argument value
collapsed to one constant word (teacher-forced held-out episode accuracy 0.00), while the
same model after 1,000 steps of this pretraining reaches 0.17 after 400 SFT steps.

What it trains on: synthetic single-turn requests, generated in-process, answered with
one ``<tool_call>`` whose JSON arguments copy the request's values::

    <|im_start|>system\n<random words><|im_end|>
    <|im_start|>user\nPlease the lounge and also color red.<|im_end|>
    <|im_start|>assistant\n<tool_call>\n{"name": "<random word>", "arguments": {"color": "red", "room": "lounge"}}
    </tool_call><|im_end|>

Slot values are words of a few everyday categories (rooms, doors, colours, cities, ...),
numbers (copied digit by digit) and booleans (on/off, yes/no); the loss is on the answer
only. With ``ids > 0`` a share of the examples copies opaque multi-token ids instead
(``word_word_780``, ``R358806``, dates), named by a cue among same-shaped distractors or by
key from a tool response, after filler system texts as long as a tool-schema prompt: what an
airline or retail API asks of a model (``make learn --pretrain-ids``; off by default and in the
demo; docs/learn.md has what it measured).

Nothing here is an environment's task: there are no tool schemas, no tool of the Home env,
no env's episodes, and no instruction phrasings of the Home env, so no train or held-out seed
of any env is in it. The word-slot examples draw their filler (and their random tool names)
from the tokenizer's generic word list, which holds a few tool-like words such as
``get_user_details``; the id examples use only its words without an underscore, so they name
no tool or field of any env. The categories include house words because a
real base model knows what a kitchen is; the demo's README section says so.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CATEGORIES: dict[str, tuple[str, ...]] = {
    "room": ("kitchen", "bedroom", "bathroom", "office", "hallway", "garage", "study", "nursery", "attic",
             "cellar", "lounge", "porch"),
    "door": ("front", "back", "side", "garage", "main", "rear"),
    "color": ("red", "green", "blue", "white", "black", "yellow"),
    "city": ("paris", "london", "berlin", "rome", "madrid", "oslo"),
    "animal": ("cat", "dog", "horse", "bird", "fish", "cow"),
    "fruit": ("apple", "pear", "plum", "lemon", "grape", "melon"),
    "size": ("small", "medium", "large", "tiny", "huge"),
    "day": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
}
_TRUE, _FALSE = ("on", "yes", "enabled", "true"), ("off", "no", "disabled", "false")
_FLAGS = ("active", "visible", "enabled", "open", "muted", "locked")
_NUMBERS = ("count", "level", "amount", "limit", "target", "celsius")
INFO_FILE, LOSSES_FILE = "rowgym_pretrain.json", "rowgym_pretrain_losses.json"
"""Written beside the pretrained weights: what was trained (the cache key), and the loss per step."""


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    seed: int = 0
    ids: float = 0.0
    """Share of examples that copy multi-token ids (:meth:`SlotFillingCorpus.id_example`); 0 keeps the
    original word-slot corpus, stream for stream."""
    long_context: float = 0.5
    """Share of id examples whose filler system text is long (60-400 words instead of 5-60)."""
    micro_batch: int = 0
    """Split each batch, sorted by length, into micro-batches of this size (gradients accumulated, the
    loss still the mean over the batch's answer tokens), so that a few long examples do not pad the whole
    batch to their length, and the vocabulary projection runs on answer tokens only; 0: one forward pass
    per batch (the demo's setting)."""

    def __post_init__(self) -> None:
        if not (0.0 <= self.ids <= 1.0 and 0.0 <= self.long_context <= 1.0) or self.micro_batch < 0:
            raise ValueError(f"ids and long_context are shares in [0, 1] and micro_batch >= 0; got ids={self.ids}, "
                             f"long_context={self.long_context}, micro_batch={self.micro_batch}")


class SlotFillingCorpus:
    """Endless, seeded stream of (input ids, labels) for requests answered by one tool call."""

    def __init__(self, tokenizer: Any, seed: int = 0, ids: float = 0.0, long_context: float = 0.5):
        from rowgym.trainers.tiny_model import _WORDS

        self.tok, self.rng, self.ids, self.long_context = tokenizer, random.Random(seed), ids, long_context
        self.filler = sorted(set(_WORDS) - {w for ws in CATEGORIES.values() for w in ws} - set(_TRUE + _FALSE))
        self.plain = [w for w in self.filler if "_" not in w]  # id examples: no tool or field names of any env

    def example(self) -> tuple[str, str]:
        """(prompt text, answer text) of one request."""
        rng = self.rng
        if self.ids and rng.random() < self.ids:
            return self.id_example()
        slots: dict[str, Any] = {}
        mentions = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.random()
            if kind < 0.65:
                key = rng.choice(sorted(CATEGORIES))
                value: Any = rng.choice(CATEGORIES[key])
                said = value
            elif kind < 0.85:
                key, value = rng.choice(_NUMBERS), rng.randint(0, 99)
                said = str(value)
            else:
                key, value = rng.choice(_FLAGS), rng.random() < 0.5
                said = rng.choice(_TRUE if value else _FALSE)
            if key in slots:
                continue
            slots[key] = value
            words = rng.choices(self.filler, k=rng.randint(1, 4))
            if rng.random() < 0.3:  # sometimes the key is said too, before or after the value
                words += [key, said] if rng.random() < 0.5 else [said, key]
            else:
                words.append(said)
            mentions.append(" ".join(words))
        system = " ".join(rng.choices(self.filler, k=rng.randint(5, 60)))
        user = rng.choice((" and ", " and also ", ", then ")).join(mentions).capitalize() + "."
        prompt = (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                  "<|im_start|>assistant\n")
        args = json.dumps({k: slots[k] for k in sorted(slots)})
        answer = f'<tool_call>\n{{"name": "{rng.choice(self.filler)}", "arguments": {args}}}\n</tool_call><|im_end|>'
        return prompt, answer

    def id_value(self) -> str:
        """An opaque id of one of the shapes a tool API hands out: ``word_word_123``, ``R358806``,
        ``QK12``, ``word_word_405112``, a date. Copying one takes copying 3-10 tokens in order."""
        rng, w = self.rng, self.plain
        shape = rng.random()
        if shape < 0.3:
            return f"{rng.choice(w)}_{rng.choice(w)}_{rng.randint(0, 999)}"
        if shape < 0.6:
            letters = "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ", k=rng.randint(1, 2)))
            return letters + str(rng.randint(0, 10 ** rng.randint(2, 6) - 1))
        if shape < 0.85:
            return f"{rng.choice(w)}_{rng.choice(w)}_{rng.randint(100000, 999999)}"
        return f"20{rng.randint(10, 39)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"

    def id_example(self) -> tuple[str, str]:
        """A request that names 1-3 ids by a cue (``member id nora_x_780``) among same-shaped distractors,
        sometimes after a tool response whose JSON holds more ids; the answer copies the asked ids, from
        the request by cue or from the response by key. Long filler system texts (60-400 words, a
        ``long_context`` share of them) make the copy reach across a context as long as a tool-schema
        prompt."""
        rng, w = self.rng, self.plain
        keys = list(dict.fromkeys("_".join(rng.choices(w, k=rng.randint(1, 2))) for _ in range(rng.randint(2, 5))))
        values = {k: self.id_value() for k in keys}
        asked = rng.sample(keys, rng.randint(1, min(3, len(keys))))
        long = rng.random() < self.long_context
        system = " ".join(rng.choices(w, k=rng.randint(60, 400) if long else rng.randint(5, 60)))
        mentions = [f"{rng.choice(('my', 'the', 'our', ''))} {k.replace('_', ' ')} {values[k]}".strip() for k in keys]
        rng.shuffle(mentions)
        request = rng.choice((', ', ' and ', '. ')).join(mentions)
        turns = f"<|im_start|>user\n{request[:1].upper()}{request[1:]}.<|im_end|>\n"  # ids keep their case
        if rng.random() < 0.5:  # a tool response with more ids; some answers copy from it by key
            more = list(dict.fromkeys("_".join(rng.choices(w, k=rng.randint(1, 2))) for _ in range(rng.randint(2, 6))))
            response = {k: self.id_value() for k in more if k not in values}
            first = json.dumps({"name": rng.choice(w), "arguments": {asked[0]: values[asked[0]]}})
            turns += (f"<|im_start|>assistant\n<tool_call>\n{first}\n</tool_call><|im_end|>\n"
                      f"<|im_start|>user\n<tool_response>\n{json.dumps(dict(sorted(response.items())))}\n"
                      "</tool_response><|im_end|>\n")
            values.update(response)
            pool = sorted(set(asked) | set(rng.sample(sorted(response), min(2, len(response)))))
            asked = rng.sample(pool, k=rng.randint(1, min(3, len(pool))))
        prompt = f"<|im_start|>system\n{system}<|im_end|>\n{turns}<|im_start|>assistant\n"
        args = json.dumps({k: values[k] for k in asked})
        answer = f'<tool_call>\n{{"name": "{rng.choice(w)}", "arguments": {args}}}\n</tool_call><|im_end|>'
        return prompt, answer

    def sample(self) -> tuple[list[int], list[int]]:
        prompt, answer = self.example()
        p = self.tok.encode(prompt, add_special_tokens=False)
        a = self.tok.encode(answer, add_special_tokens=False)
        return p + a, [-100] * len(p) + a


def corpus_texts(n: int, seed: int = 0, ids: float = 0.0) -> list[str]:
    """The first ``n`` pretraining texts (prompt + answer) of seed ``seed``, as :func:`pretrain` sees them
    (the leak test walks these)."""
    corpus = SlotFillingCorpus(None, seed=seed, ids=ids)
    return ["".join(corpus.example()) for _ in range(n)]


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 0 (no late divergence at a high rate).

    >>> [round(warmup_cosine(s, 2, 10), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


class ClippedAdamW:
    """AdamW (no weight decay) under :func:`warmup_cosine` over ``total`` steps, gradients clipped at 1:
    the optimiser of the copy pretraining and of the recall probe (``trainers/learn/recall_probe.py``)."""

    def __init__(self, model: Any, lr: float, warmup: int, total: int):
        import torch

        self.model = model
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: warmup_cosine(s, warmup, total))

    def step(self) -> None:
        """Clip the accumulated gradients, take the step, advance the schedule, clear the gradients."""
        import torch

        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad()


def pretrain(model: Any, tokenizer: Any, cfg: PretrainConfig = PretrainConfig(),
             log: Any = None) -> list[float]:
    """Train ``model`` in place on the slot-filling corpus; returns the loss of every step."""
    import torch

    torch.manual_seed(cfg.seed)
    corpus = SlotFillingCorpus(tokenizer, seed=cfg.seed, ids=cfg.ids, long_context=cfg.long_context)
    pad = tokenizer.pad_token_id or 0
    opt = ClippedAdamW(model, cfg.learning_rate, cfg.warmup_steps, cfg.steps)
    model.train()
    losses: list[float] = []
    for step in range(cfg.steps):
        batch = [corpus.sample() for _ in range(cfg.batch_size)]
        if cfg.micro_batch:
            batch.sort(key=lambda xy: len(xy[0]))
            parts = [batch[i:i + cfg.micro_batch] for i in range(0, len(batch), cfg.micro_batch)]
            answer_tokens = sum(sum(t != -100 for t in y[1:]) for _, y in batch)  # the model's shifted labels
        else:
            parts = [batch]
        loss = 0.0
        for part in parts:
            n = max(len(x) for x, _ in part)
            ids = torch.tensor([x + [pad] * (n - len(x)) for x, _ in part])
            labels = torch.tensor([y + [-100] * (n - len(y)) for _, y in part])
            attn = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _ in part])
            if cfg.micro_batch:
                part_loss = _answer_loss(model, ids, attn, labels, answer_tokens)
            else:
                part_loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
            part_loss.backward()
            loss += part_loss.detach()
        opt.step()
        losses.append(round(float(loss), 5))
        if log is not None and (step % 100 == 0 or step == cfg.steps - 1):
            log(step, losses[-1])
    return losses


def _answer_loss(model: Any, ids: Any, attn: Any, labels: Any, batch_tokens: int) -> Any:
    """Summed cross-entropy of the answer tokens divided by the whole batch's answer-token count.

    The vocabulary projection runs on answer positions only: with prompts of ~1,000 tokens and
    answers of ~40, projecting every position to the vocabulary is most of a step's time.
    """
    import torch.nn.functional as F

    hidden = model.model(input_ids=ids, attention_mask=attn).last_hidden_state[:, :-1]
    target = labels[:, 1:]
    keep = target != -100
    return F.cross_entropy(model.lm_head(hidden[keep]), target[keep], reduction="sum") / batch_tokens


def build_pretrained_tiny_model(out: str | Path, cfg: PretrainConfig = PretrainConfig(), *,
                                base: str | Path | None = None, model_config: Any = None) -> Path:
    """The tiny model (built or given as ``base``) after :func:`pretrain`, saved in ``out``.

    Cached: if ``out`` holds a model pretrained with the same base, config and code (the source of
    this module and of the tiny model's builder), it is reused.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rowgym.trainers.tiny_model import TinyModelConfig, _fix_tokenizer_config, build_tiny_model

    out = Path(out)
    base_dir = Path(base) if base else build_tiny_model(out.parent / (out.name + "-base"),
                                                         config=model_config or TinyModelConfig())
    from rowgym.trainers.cache_keys import atomic_dir, code_version

    info = {"base": str(base_dir), "base_build": _read_json(base_dir / "rowgym_build.json"), "pretrain": asdict(cfg),
            "code": code_version("rowgym.trainers.pretrain", "rowgym.trainers.tiny_model")}
    if _read_json(out / INFO_FILE) == info:
        return out
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    t0 = time.perf_counter()
    losses = pretrain(model, tok, cfg, log=lambda s, loss: print(f"[pretrain] step {s} loss {loss:.3f} "
                                                                f"({time.perf_counter() - t0:.0f}s)", flush=True))
    with atomic_dir(out, mode=0o755) as tmp:  # a killed run leaves no half-written model to reuse
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _fix_tokenizer_config(tmp)
        (tmp / LOSSES_FILE).write_text(json.dumps(losses))
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--base", default=None, help="model directory to start from (default: build the tiny model)")
    for f, default in asdict(PretrainConfig()).items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(default), default=default)
    a = vars(p.parse_args(argv))
    out, base = a.pop("out"), a.pop("base")
    path = build_pretrained_tiny_model(out, PretrainConfig(**a), base=base)
    print(path)
    return path


if __name__ == "__main__":
    main()
