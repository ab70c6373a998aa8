"""Preference pairs from grouped runs, and DPO on them with TRL's DPOTrainer (assistant tokens only).

>>> import tempfile
>>> from rowgym.rollouts.engine import CollectConfig, collect
>>> from rowgym.trainers.dpo import dpo_pairs
>>> run = collect(CollectConfig(env_id="rowgym/ToolAPI-Retail-v0", agent="rowgym.evals.demo:FlakyExpert",
...                             episodes=3, group_size=4, concurrency=1, out=tempfile.mkdtemp(),
...                             progress=False)).out
>>> pairs, _, _, _ = dpo_pairs(run)
>>> all(p["chosen_reward"] > p["rejected_reward"] and p["margin"] > 0 for p in pairs)
True

    rowgym collect rowgym/ToolAPI-Retail-v0 --agent vllm --group-size 8 --out runs/k8
    rowgym dataset dpo runs/k8 --out data/dpo
    rowgym train dpo data/dpo --model-dir runs/sft --out runs/dpo

**Pairs.** A run collected with ``--group-size k`` holds k samples of one seed per group. Within
a group, every two samples whose final rewards differ by more than ``min_margin`` make a pair
(the higher one ``chosen``); ties are dropped and counted. Only samples without a failure and
with a verdict (not flagged ``suspicious``) are paired. Pairs never cross groups, seeds or runs.
Each row, in TRL's conversational preference format:

* ``prompt``: the messages both samples share (system, first observation and any identical
  leading turns), ending just before the first assistant turn where they differ;
* ``chosen`` / ``rejected``: the rest of each conversation (assistant turns with their tool
  calls, tool and user replies), as :func:`rowgym.trainers.datasets.episode_messages` renders it;
* ``tools`` (JSON string), ``env_id``, ``seed``, ``split``, ``task_hash``, ``group_id``,
  ``run_id``, ``chosen_episode_id`` / ``rejected_episode_id``, ``chosen_reward`` /
  ``rejected_reward``, ``margin`` and ``group_size``.

**Gates.** :func:`build_dpo_dataset` runs the format, semantic and leakage gates on *both*
conversations of every pair (each episode checked once; a pair falls when either side does,
its reason prefixed ``chosen:`` / ``rejected:``), then the distribution gate on the pairs (a
pair's text is both conversations), and writes the four manifests.

**Training.** TRL masks the prompt, but counts every completion token, tool responses included.
:class:`AssistantOnlyDPOTrainer` replaces the completion mask by the chat template's assistant
mask (the training variant of the template, with ``{% generation %}`` markers), so only the
policy's own tokens (``<think>`` block, tool call, ``<|im_end|>``) enter the log-ratios. Held-out
rows are refused as for SFT (:func:`rowgym.trainers.sft.check_training_rows`): every message of
``prompt``, ``chosen`` and ``rejected`` is checked, not only the first user message.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rowgym.errors import RowgymError
from rowgym.rows import Episode, RunManifest, Split
from rowgym.trainers import datasets as ds
from rowgym.trainers.gates import GateConfig, GateReport, default_gates, gate_and_write, quarantine_for
from rowgym.trainers.gates.base import Candidate, Gate, GateContext, Rejection
from rowgym.trainers.gates.distribution import DistributionGate
from rowgym.trainers.gates.manifests import write_consumption

_TOL = 1e-9


# ---------------------------------------------------------------------------- pairs
@dataclass
class PairSummary:
    """What pairing did over a run."""

    n_groups: int = 0
    groups_with_pairs: int = 0
    n_pairs: int = 0
    ties_dropped: int = 0
    below_margin: int = 0
    unpairable: int = 0
    """Samples left out of pairing (a failure, no verdict, or a ``suspicious`` flag)."""

    def line(self) -> str:
        return (f"dpo: {self.n_pairs} pairs from {self.groups_with_pairs} of {self.n_groups} groups; "
                f"{self.ties_dropped} tied pairs dropped, {self.below_margin} below the margin, "
                f"{self.unpairable} samples unpairable")


def split_prompt(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[list, list, list]:
    """(shared prompt, rest of ``a``, rest of ``b``): the prompt is the longest common prefix that ends
    just before an assistant turn of both, so each rest starts with the assistant."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    n = min(n, len(a) - 1, len(b) - 1)
    while n > 2 and not (a[n]["role"] == b[n]["role"] == "assistant"):
        n -= 1
    if n < 2 or a[n]["role"] != "assistant" or b[n]["role"] != "assistant" or a[:2] != b[:2]:
        raise ds.TamperedDataError("two samples of one group do not share their system and first user message")
    return a[:n], a[n:], b[n:]


def _pairable(ep: Episode) -> bool:
    """No failure, a verdict with a finite reward (NaN would pass every margin test), steps, not flagged."""
    return (ep.failure is None and ep.verdict is not None and bool(ep.steps)
            and math.isfinite(ep.final_reward) and not ds.EXCLUDED_FLAGS.intersection(ep.verdict.flags))


def dpo_pairs(source: ds.Source, *, min_margin: float = 0.0, max_pairs_per_group: int | None = None,
              splits: Sequence[str | Split] = ("train",), system_prompt: str | None = None,
              allow_unverified: bool = False,
              ) -> tuple[list[dict[str, Any]], list[Episode], list[RunManifest], PairSummary]:
    """Preference rows from the groups of ``source`` (see the module docstring), the episodes and
    manifests read, and a summary.

    Args:
        source: a grouped run directory, a list of them, or Episodes.
        min_margin: a pair needs ``chosen_reward - rejected_reward > min_margin`` (ties always dropped).
        max_pairs_per_group: keep the pairs of largest margin first, at most this many per group.
        splits: splits to keep; ``heldout`` is refused, ``dev`` only when listed.
        system_prompt: override the env's ``system_prompt``.
        allow_unverified: use runs that fail verification.

    Raises:
        HeldOutLeakError: if any episode in ``source`` is held out (whatever ``splits`` says).
        IntegrityError: if a run fails verification and ``allow_unverified`` is off.
    """
    wanted = set(ds.check_splits(splits))
    episodes, manifests = ds.load_episodes(source, allow_unverified=allow_unverified)
    ds.refuse_heldout(episodes, manifests)
    prompts: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    s = PairSummary()
    for gid, group in ds.episode_groups(episodes).items():
        if group[0].split not in wanted:
            continue
        s.n_groups += 1
        ok = [e for e in group if _pairable(e)]
        s.unpairable += len(group) - len(ok)
        env_id = group[0].env_id
        if system_prompt is None and env_id not in prompts:
            prompts[env_id] = ds.system_prompt_of(env_id)
        sp = system_prompt if system_prompt is not None else prompts[env_id]
        msgs = {e.episode_id: ds.episode_messages(e, system_prompt=sp) for e in ok}
        found = []
        for i, a in enumerate(ok):
            for b in ok[i + 1:]:
                hi, lo = (a, b) if a.final_reward >= b.final_reward else (b, a)
                margin = hi.final_reward - lo.final_reward
                if margin <= _TOL:
                    s.ties_dropped += 1
                elif margin <= min_margin + _TOL:
                    s.below_margin += 1
                else:
                    found.append((margin, hi, lo))
        found.sort(key=lambda t: (-t[0], t[1].sample_index, t[2].sample_index))
        for margin, hi, lo in found[:max_pairs_per_group]:
            prompt, chosen, rejected = split_prompt(msgs[hi.episode_id], msgs[lo.episode_id])
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "tools": hi.tools,
                         "env_id": hi.env_id, "seed": hi.seed, "split": hi.split.value, "task_hash": hi.task_hash,
                         "group_id": gid, "run_id": hi.run_id, "group_size": len(group),
                         "chosen_episode_id": hi.episode_id, "rejected_episode_id": lo.episode_id,
                         "chosen_reward": hi.final_reward, "rejected_reward": lo.final_reward,
                         "margin": round(margin, 9)})
        s.groups_with_pairs += bool(found)
    s.n_pairs = len(rows)
    return rows, episodes, manifests, s


# ---------------------------------------------------------------------------- gates
@dataclass
class PairCandidate(Candidate):
    """A preference row for the gates: its histograms describe the chosen conversation, its
    dedup text is both conversations."""

    chosen_ep: Episode | None = None
    rejected_ep: Episode | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.row["prompt"]) + list(self.row["chosen"])

    def conversation_text(self) -> str:
        rej = Candidate(self.key, {"messages": list(self.row["prompt"]) + list(self.row["rejected"])})
        return super().conversation_text() + "\n--- rejected ---\n" + rej.conversation_text()

    def side(self, which: str) -> Candidate:
        ep = self.chosen_ep if which == "chosen" else self.rejected_ep
        row = {"messages": list(self.row["prompt"]) + list(self.row[which]), "tools": self.row.get("tools"),
               "env_id": self.row["env_id"], "seed": self.row["seed"], "task_hash": self.row.get("task_hash"),
               "final_reward": self.row[f"{which}_reward"]}
        return Candidate(str(self.row[f"{which}_episode_id"]), row, ep)


class BothSides(Gate):
    """An episode-level gate applied to both conversations of each pair (each episode checked once)."""

    def __init__(self, inner: Gate):
        self.inner = inner
        self.name, self.version = inner.name, inner.version  # type: ignore[misc]

    def params(self) -> dict[str, Any]:
        return {**self.inner.params(), "applied_to": "chosen and rejected conversations"}

    def check(self, cands: list[Candidate], ctx: GateContext) -> list[Rejection]:
        sides: dict[str, Candidate] = {}
        for c in cands:
            assert isinstance(c, PairCandidate)
            for which in ("chosen", "rejected"):
                sc = c.side(which)
                sides.setdefault(sc.key, sc)
        bad = {r.key: r for r in self.inner.check(list(sides.values()), ctx)}
        out = []
        for c in cands:
            for which in ("chosen", "rejected"):
                r = bad.get(str(c.row[f"{which}_episode_id"]))
                if r is not None:
                    out.append(self.reject(c, f"{which}:{r.reason}", f"{which} {r.key}: {r.detail}"))
                    break
        return out


def build_dpo_dataset(runs: Sequence[str | Path], out: str | Path, *, min_margin: float = 0.0,
                      max_pairs_per_group: int | None = None, splits: Sequence[str] = ("train",),
                      allow_unverified: bool = False,
                      cfg: GateConfig | None = None) -> tuple[Path, GateReport, list[dict[str, Any]], PairSummary]:
    """Gate the preference pairs of ``runs`` and write the kept rows plus the four manifests into ``out``."""
    cfg = cfg or GateConfig()
    rows, episodes, manifests, summary = dpo_pairs([str(r) for r in runs], min_margin=min_margin,
                                                   max_pairs_per_group=max_pairs_per_group, splits=splits,
                                                   allow_unverified=allow_unverified)
    by_id = {e.episode_id: e for e in episodes}
    cands: list[Candidate] = [
        PairCandidate(f"{r['chosen_episode_id']}>{r['rejected_episode_id']}", r, by_id.get(r["chosen_episode_id"]),
                      by_id.get(r["chosen_episode_id"]), by_id.get(r["rejected_episode_id"])) for r in rows]
    q = quarantine_for(cfg)
    gates = [g if isinstance(g, DistributionGate) else BothSides(g) for g in default_gates(cfg, q)]
    params = {"min_margin": min_margin, "max_pairs_per_group": max_pairs_per_group, "splits": list(splits),
              "gates": asdict(cfg), "pairing": asdict(summary)}
    path, report, kept_rows = gate_and_write(cands, gates, q, runs=runs, manifests=manifests, out=out, kind="dpo",
                                             params=params, allow_unverified=allow_unverified,
                                             notes=[summary.line()])
    return path, report, kept_rows, summary


# ---------------------------------------------------------------------------- train
@dataclass
class DPOOptions:
    """Training knobs (the CLI's options map onto these fields)."""

    max_steps: int = 100
    """Optimizer steps."""
    batch_size: int = 4
    """Pairs per step (per device)."""
    learning_rate: float = 1e-4
    """Peak learning rate (the tiny model takes a large one; use ~5e-7 to 1e-6 for real models)."""
    beta: float = 0.1
    """DPO's KL coefficient: how far the policy may move from the reference (the starting model)."""
    loss_type: str = "sigmoid"
    warmup_steps: int = 0
    lr_scheduler_type: str = "constant_with_warmup"
    max_length: int | None = 4096
    """Longer prompt + completion sequences are truncated (keep_start); a pair whose prompt alone fills it is
    dropped (tool schemas make long prompts: the tiny model's prompts run to ~2,400 tokens)."""
    min_margin: float = 0.0
    """When training straight from run directories: the pairing margin."""
    seed: int = 0
    logging_steps: int = 1
    use_cpu: bool = True
    """CPU training (``use_cpu=True, bf16=False``); set False on a GPU machine."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Any other DPOConfig fields, passed through."""


@dataclass
class DPOResult:
    """Where the model is, the loss and reward-margin curves, the data size and the wall time."""

    out_dir: Path
    losses: list[float]
    margins: list[float]
    """TRL's ``rewards/margins`` per logged step (beta-scaled log-ratio of chosen minus rejected)."""
    n_pairs: int
    wall_s: float
    steps: int

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "out_dir": str(self.out_dir)}


def _is_row_list(source: Any) -> bool:
    return isinstance(source, list | tuple) and bool(source) and isinstance(source[0], dict)


def _is_dataset_dir(source: Any) -> bool:
    return isinstance(source, str | Path) and (Path(source) / ds.PROVENANCE_FILE).exists()


def preference_rows(source: Any, *, min_margin: float = 0.0, allow_unverified: bool = False) -> list[dict[str, Any]]:
    """DPO rows from grouped run directories, a ``rowgym dataset dpo`` directory or ready rows; held-out refused."""
    from rowgym.trainers.sft import check_training_rows

    prov: dict[str, Any] | None = None
    if _is_row_list(source):
        rows = list(source)
    elif _is_dataset_dir(source):
        rows, prov = ds.read_dataset(source, allow_unverified=allow_unverified)
        if prov.get("kind") != "dpo":
            raise RowgymError(f"{source} is a {prov.get('kind')!r} dataset, not preference pairs; build one with "
                              f"`rowgym dataset dpo RUN --out DIR`")
    else:
        rows = dpo_pairs(source, min_margin=min_margin, allow_unverified=allow_unverified)[0]
    for r in rows:
        missing = {"prompt", "chosen", "rejected"} - set(r)
        if missing:
            raise RowgymError(f"a preference row lacks {sorted(missing)}; build rows with `rowgym dataset dpo`")
    check_training_rows(rows, prov)  # labels, then every message of prompt, chosen and rejected
    return rows


def trl_preference_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """The columns DPOTrainer reads (``prompt``, ``chosen``, ``rejected``, ``tools`` as a JSON string)."""
    keep = []
    for r in rows:
        tools = r.get("tools")
        keep.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
                     "tools": tools if isinstance(tools, str) or tools is None else json.dumps(tools)})
    return ds.to_hf_dataset(keep)


def _trainer_classes() -> tuple[type, type]:
    """:class:`AssistantOnlyDPOTrainer` and its collator (built lazily: TRL is an optional extra)."""
    import torch
    from trl import DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    @dataclass
    class AssistantMaskCollator(DataCollatorForPreference):
        """TRL's preference collator with the completion mask cut down to assistant tokens."""

        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            out = super().torch_call(examples)
            masks = [[0] * len(e["prompt_ids"]) + list(e[f"{side}_assistant_mask"])
                     for side in ("chosen", "rejected") for e in examples]  # (2B, T_i): chosen first, as TRL
            if self.max_length is not None:
                sl = slice(None, self.max_length) if self.truncation_mode == "keep_start" else slice(-self.max_length, None)
                masks = [m[sl] for m in masks]
            cm = torch.zeros_like(out["completion_mask"])  # (2B, T)
            for i, m in enumerate(masks):
                cm[i, :len(m)] = torch.tensor(m[:cm.shape[1]], dtype=cm.dtype)
            out["completion_mask"] = cm
            return out

    class AssistantOnlyDPOTrainer(DPOTrainer):
        """DPOTrainer whose completion mask covers the assistant's tokens only (not tool or user replies)."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            c = self.data_collator
            self.data_collator = AssistantMaskCollator(pad_token_id=c.pad_token_id, max_length=c.max_length,
                                                       truncation_mode=c.truncation_mode,
                                                       pad_to_multiple_of=c.pad_to_multiple_of)

        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)

            def add_masks(example: dict[str, Any]) -> dict[str, Any]:
                tools = example.get("tools")
                tools = json.loads(tools) if isinstance(tools, str) else tools
                n = len(example["prompt_ids"])
                res = {}
                for side in ("chosen", "rejected"):
                    full = processing_class.apply_chat_template(
                        example["prompt"] + example[side], tools=tools, tokenize=True, return_dict=True,
                        return_assistant_tokens_mask=True)
                    ids, mask = list(full["input_ids"]), list(full["assistant_masks"])
                    if ids[:n] != list(example["prompt_ids"]) or ids[n:] != list(example[f"{side}_ids"]):
                        raise RowgymError("the chat template renders a preference pair differently with and without "
                                          "its assistant mask; use a prefix-preserving training template")
                    res[f"{side}_assistant_mask"] = mask[n:]
                return res

            return dataset.map(add_masks)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if self._signature_columns is not None:
                self._signature_columns = list(self._signature_columns) + ["chosen_assistant_mask",
                                                                           "rejected_assistant_mask"]

    return AssistantOnlyDPOTrainer, AssistantMaskCollator


def dpo_config(out_dir: str | Path, opts: DPOOptions) -> Any:
    """The TRL ``DPOConfig`` for these options."""
    from trl import DPOConfig

    kw: dict[str, Any] = dict(
        output_dir=str(out_dir), max_steps=opts.max_steps, per_device_train_batch_size=opts.batch_size,
        learning_rate=opts.learning_rate, beta=opts.beta, loss_type=[opts.loss_type], warmup_steps=opts.warmup_steps,
        lr_scheduler_type=opts.lr_scheduler_type, logging_steps=opts.logging_steps, save_strategy="no",
        report_to=[], seed=opts.seed, max_length=opts.max_length, gradient_checkpointing=False,
        disable_tqdm=True, dataloader_num_workers=0,
    )
    if opts.use_cpu:
        kw.update(use_cpu=True, bf16=False, fp16=False)
    kw.update(opts.extra)
    return DPOConfig(**kw)


def train_dpo(source: str | Path | Iterable[Any], model_dir: str | Path, out_dir: str | Path,
              opts: DPOOptions | None = None, *, allow_unverified: bool = False) -> DPOResult:
    """DPO on preference pairs, starting from (and with the reference model) ``model_dir``; saved in ``out_dir``.

    Args:
        source: a ``rowgym dataset dpo`` directory, grouped run directories (paired here, without the
            gates), or preference rows.
        model_dir: a local Hugging Face model directory (typically the SFT output).
        out_dir: where the model, its tokenizer (with the model's own chat template),
            ``dpo_result.json`` and ``consumption.json`` are written.
        opts: training options.
        allow_unverified: accept a dataset or runs that failed verification.

    Raises:
        HeldOutLeakError: if any row or episode is held out.
    """
    opts = opts or DPOOptions()
    rows = preference_rows(source, min_margin=opts.min_margin, allow_unverified=allow_unverified)
    if not rows:
        raise RowgymError("no preference pairs: the groups have no two samples with different final rewards; "
                          "collect with --group-size k (k >= 2) from a policy whose samples differ")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl.chat_template_utils import get_training_chat_template
    except ImportError as e:
        raise RowgymError("DPO needs the train extra: pip install 'rowgym[train]'") from e
    trainer_cls, _ = _trainer_classes()
    model_dir = Path(model_dir).expanduser()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    own_template = tokenizer.chat_template
    tokenizer.chat_template = get_training_chat_template(tokenizer) or own_template  # {% generation %} markers
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    out = Path(out_dir)
    t0 = time.perf_counter()
    trainer = trainer_cls(model=model, ref_model=ref, args=dpo_config(out / "trainer", opts),
                          train_dataset=trl_preference_dataset(rows), processing_class=tokenizer)
    if len(trainer.train_dataset) == 0:
        raise RowgymError(f"every pair's prompt is at least max_length={opts.max_length} tokens long; raise it")
    trainer.train()
    hist = trainer.state.log_history
    losses = [float(h["loss"]) for h in hist if "loss" in h]
    margins = [float(h["rewards/margins"]) for h in hist if "rewards/margins" in h]
    trainer.model.save_pretrained(out)
    tokenizer.chat_template = own_template  # serving and GRPO use the model's own template
    tokenizer.save_pretrained(out)
    from rowgym.trainers.tiny_model import _fix_tokenizer_config

    _fix_tokenizer_config(out)
    res = DPOResult(out, losses, margins, len(rows), round(time.perf_counter() - t0, 2), trainer.state.global_step)
    (out / "dpo_result.json").write_text(json.dumps(res.to_json(), indent=2) + "\n")
    ids = [str(r[k]) for r in rows for k in ("chosen_episode_id", "rejected_episode_id") if r.get(k)]
    write_consumption(out, model=model_dir, run=f"dpo:{out}", trainer="dpo",
                      dataset=source if _is_dataset_dir(source) else None, episode_ids=ids,
                      task_hashes=[str(r["task_hash"]) for r in rows if r.get("task_hash")])
    return res
