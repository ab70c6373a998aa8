"""Tool-use SFT with TRL's SFTTrainer, loss on assistant tokens only, on CPU or any device.

>>> from rowgym.trainers.sft import SFTOptions, train_sft
>>> res = train_sft("runs/home-expert", "~/.cache/rowgym/models/tiny-qwen3", "runs/sft",
...                 SFTOptions(max_steps=50))                       # doctest: +SKIP
>>> res.losses[0] > res.losses[-1]                                  # doctest: +SKIP
True

    rowgym train sft runs/home-expert --model-dir ~/.cache/rowgym/models/tiny-qwen3 --out runs/sft

The data are rowgym trajectories turned into chat conversations by
:func:`rowgym.trainers.datasets.sft_conversations`: ``messages`` with ``tool_calls``
(arguments as JSON strings) and a per-row ``tools`` column (a JSON string, which
SFTTrainer ``json.loads`` per row). ``assistant_only_loss=True``: TRL swaps in the
training variant of the Qwen3 template, whose ``{% generation %}`` markers cover each
assistant turn (``<think>`` block, tool call and ``<|im_end|>``), so system, user and
tool-response tokens carry label -100. The saved tokenizer keeps the model's own chat
template, the one serving and GRPO use.

Held-out data are refused (:class:`rowgym.errors.HeldOutLeakError`) whatever the
source: run directories and episodes go through ``sft_conversations``; ready rows and
dataset directories are checked row by row, by their ``split`` and by their env's
split of their seed (re-derived from the env); each row must name its env, seed and task
hash, the hash must be its seed's, and its first user message must be its seed's task; then the
gates run again on every conversation (:mod:`rowgym.trainers.gates.onload`): ``tools`` must be the
env's, a tool-API conversation is replayed so every tool and user message is the env's own reply,
and every message on its own is checked against the quarantine (no held-out or dev task or gold
answer anywhere in a row, whatever turn it hides in).
Every trained model gets a ``consumption.json`` (dataset version, episode ids, task hashes;
:func:`rowgym.trainers.gates.manifests.write_consumption`), which ``rowgym bench`` checks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rowgym.errors import HeldOutLeakError, RowgymError
from rowgym.rows import Episode, Split
from rowgym.trainers import datasets as ds
from rowgym.trainers.gates.manifests import write_consumption
from rowgym.trainers.tiny_model import _fix_tokenizer_config

Source = str | Path | Episode | Iterable[Any]


@dataclass
class SFTOptions:
    """Training knobs (the CLI's options map onto these fields)."""

    max_steps: int = 100
    """Optimizer steps."""
    batch_size: int = 8
    """Conversations per step (per device)."""
    learning_rate: float = 1e-3
    """Peak learning rate (a tiny random-init model wants a large one; use ~1e-5 for real models)."""
    warmup_steps: int = 0
    lr_scheduler_type: str = "cosine"
    """Warm-up then cosine decay to 0: at a constant rate a small model's loss climbs back late in the run."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    max_length: int | None = 4096
    """Longer conversations are truncated (keep_start). The tiny model's context; a Retail prompt with its
    tool schemas is ~2,400 tokens, and a limit below the prompt leaves no assistant token to train on."""
    min_reward: float = 1.0
    """Only episodes with at least this final reward become SFT data."""
    keep_bad_calls: bool = True
    """Keep bad calls and the errors they got, so the model learns to repair."""
    seed: int = 0
    logging_steps: int = 1
    use_cpu: bool = True
    """CPU training (``use_cpu=True, bf16=False``); set False on a GPU machine."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Any other SFTConfig fields, passed through."""


@dataclass
class SFTResult:
    """What a run did: where the model is, the loss curve, the data size and the wall time."""

    out_dir: Path
    losses: list[float]
    n_rows: int
    wall_s: float
    steps: int
    assistant_token_fraction: float
    """Share of training tokens with a label (the assistant-only mask); 0 < x < 1."""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


# ------------------------------------------------------------------------------ data
def _is_row_list(source: Any) -> bool:
    return isinstance(source, list | tuple) and bool(source) and isinstance(source[0], dict)


def refuse_heldout_rows(rows: Sequence[dict[str, Any]]) -> None:
    """Raise :class:`HeldOutLeakError` if a row is held out by its label or by its env's split of its seed,
    and :class:`rowgym.trainers.datasets.TamperedDataError` if it cannot be checked or its content is not
    its seed's task.

    Split and task hash are re-derived from the env (:class:`rowgym.task_oracle.TaskOracle`),
    as for run directories; the row's own ``split`` / ``task_hash`` only have to agree. Every row
    must name ``env_id``, ``seed`` and ``task_hash`` (a row without them could be anything), and
    the first user message of each conversation it carries must be its seed's first observation
    (:meth:`~rowgym.task_oracle.TaskOracle.content_problem`).
    """
    with ds.TaskOracle() as oracle:
        for i, r in enumerate(rows):
            name = f"row {i} ({r.get('episode_id') or r.get('chosen_episode_id') or 'no episode id'})"
            if r.get("split") == Split.HELDOUT.value:
                raise HeldOutLeakError(f"{name} is from the held-out split; held-out rows never become training data")
            env_id, seed = _row_task(r, name)
            facts = oracle.facts(env_id, seed)
            if facts.split == Split.HELDOUT:
                raise HeldOutLeakError(f"{name}: {env_id} seed {seed} is held out (whatever its split label says); "
                                       f"held-out seeds never become training data")
            if r["task_hash"] != facts.task_hash:
                raise ds.TamperedDataError(f"{name}: stored task hash {r['task_hash']} is not the hash of {env_id} "
                                           f"seed {seed}'s task ({facts.task_hash})")
            problem = _row_content_problem(r, env_id, seed, oracle)
            if problem:
                raise ds.TamperedDataError(f"{name} ({env_id}, seed {seed}) refused: {problem}")


def _row_task(r: dict[str, Any], name: str) -> tuple[str, int]:
    """The (env id, seed) a row claims; a row that lacks them, or a task hash, cannot be checked and is refused."""
    missing = [k for k in ("env_id", "seed", "task_hash") if r.get(k) in (None, "")]
    if missing:
        raise ds.TamperedDataError(f"{name} has no {', '.join(missing)}: a training row must name its env, seed "
                                   f"and task hash so the held-out guard can check it; rebuild the dataset with "
                                   f"`rowgym dataset sft RUN`")
    seed = r["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int | str) or not str(seed).isdigit():
        raise ds.TamperedDataError(f"{name}: seed {seed!r} is not a non-negative integer")
    return str(r["env_id"]), int(seed)


def _row_content_problem(r: dict[str, Any], env_id: str, seed: int, oracle: ds.TaskOracle) -> str | None:
    """Why a row's conversations are not its seed's (first user message, ids), or None."""
    convs = [c for c in (r.get("messages"), r.get("prompt")) if c is not None]
    convs += [n.get("messages") for n in r.get("hard_negatives") or [] if isinstance(n, dict)]
    if not convs:
        return "it has no conversation (messages or prompt) whose task could be checked"
    for conv in convs:
        first = next((m.get("content") for m in conv or [] if isinstance(m, dict) and m.get("role") == "user"), None)
        if not isinstance(first, str):
            return "a conversation has no user message (the task), so its task cannot be checked"
        wrong = oracle.content_problem(env_id, seed, first)
        if wrong:
            return f"{wrong.replace('its first observation', 'its first user message')}: the task is another seed's"
    ids = [r.get(k) for k in ("episode_id", "chosen_episode_id", "rejected_episode_id")]
    if r.get("run_id") is not None:
        return ds.id_problem(r["run_id"], seed, episode_ids=ids, group_id=r.get("group_id"),
                             sample_index=r.get("sample_index"))
    return None


def check_training_rows(rows: Sequence[dict[str, Any]], provenance: dict[str, Any] | None = None) -> None:
    """Everything a trainer checks on ready rows or a dataset directory's rows before training on them:
    :func:`refuse_heldout_rows` (labels, seed, task hash, first user message, ids), then the gates again on
    every conversation and message (:func:`rowgym.trainers.gates.onload.refuse_leaked_rows`: tools, replay of
    deterministic envs, leakage per message, finite rewards). ``provenance`` (a dataset directory's) may widen
    the quarantine to the one the dataset was built against."""
    from rowgym.trainers.gates.onload import refuse_leaked_rows

    refuse_heldout_rows(rows)
    gates = ((provenance or {}).get("params") or {}).get("gates") or {}
    seeds = gates.get("quarantine_seeds")
    files = [f for f in gates.get("eval_files") or [] if isinstance(f, str) and Path(f).is_file()]
    refuse_leaked_rows(rows, quarantine_seeds=seeds if isinstance(seeds, int) else None, eval_files=files)


def sft_rows(source: Source, *, min_reward: float = 1.0, keep_bad_calls: bool = True) -> list[dict[str, Any]]:
    """SFT rows from run directories, Episodes, a dataset directory or ready rows; held-out refused.

    Ready rows and a dataset directory's rows are re-checked in full (:func:`check_training_rows`):
    its ``provenance.json`` and hash vouch for nothing, since anyone can rewrite them.
    """
    if _is_row_list(source):
        rows = list(source)
        check_training_rows(rows)
        return rows
    paths = [source] if isinstance(source, str | Path) else None
    if paths is not None and (Path(paths[0]) / ds.PROVENANCE_FILE).exists():
        rows, prov = ds.read_dataset(paths[0])
        check_training_rows(rows, prov)
        return rows
    rows = ds.sft_conversations(source, min_reward=min_reward, keep_bad_calls=keep_bad_calls)
    check_training_rows(rows)  # a run's episodes are re-derived from the env already; their text is checked here
    return rows


def trl_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """The two columns SFTTrainer needs (``messages``, ``tools`` as a JSON string) as a ``datasets.Dataset``.

    Tool-call arguments stay JSON strings and ``tools`` a string: Arrow mangles dicts
    whose keys differ from row to row.
    """
    keep = []
    for r in rows:
        tools = r.get("tools")
        keep.append({"messages": r["messages"], "tools": tools if isinstance(tools, str) or tools is None
                     else json.dumps(tools)})
    return ds.to_hf_dataset(keep)


# ---------------------------------------------------------------------------- train
def sft_config(out_dir: str | Path, opts: SFTOptions) -> Any:
    """The TRL ``SFTConfig`` for these options."""
    from trl import SFTConfig

    kw: dict[str, Any] = dict(
        output_dir=str(out_dir), max_steps=opts.max_steps, per_device_train_batch_size=opts.batch_size,
        learning_rate=opts.learning_rate, warmup_steps=opts.warmup_steps, lr_scheduler_type=opts.lr_scheduler_type,
        max_grad_norm=opts.max_grad_norm,
        logging_steps=opts.logging_steps, save_strategy="no", report_to=[], seed=opts.seed,
        assistant_only_loss=True, max_length=opts.max_length, gradient_checkpointing=False,
        disable_tqdm=True, dataloader_num_workers=0,
    )
    if opts.use_cpu:
        kw.update(use_cpu=True, bf16=False, fp16=False)
    kw.update(opts.extra)
    return SFTConfig(**kw)


def train_sft(dataset_or_run_dirs: Source, model_dir: str | Path, out_dir: str | Path,
              opts: SFTOptions | None = None, *, model: Any = None, tokenizer: Any = None,
              callbacks: Sequence[Any] = ()) -> SFTResult:
    """Fine-tune ``model_dir`` on tool-use conversations and save the result in ``out_dir``.

    Args:
        dataset_or_run_dirs: run directory (or a list of them), Episodes, a dataset
            directory from :func:`rowgym.trainers.datasets.write_dataset`, or SFT rows.
        model_dir: a local Hugging Face model directory (the tiny model or any other).
        out_dir: where the fine-tuned model and tokenizer are saved (plus ``sft_result.json``).
        opts: training options.
        model, tokenizer: already-loaded objects to train instead of loading ``model_dir``.
        callbacks: transformers ``TrainerCallback``s, e.g. a
            :class:`rowgym.trainers.dev_selection.DevSelection` (checkpoint choice on dev seeds).

    Returns:
        An :class:`SFTResult` with the per-step training losses.

    Raises:
        HeldOutLeakError: if any source row or episode is held out.
    """
    opts = opts or SFTOptions()
    rows = sft_rows(dataset_or_run_dirs, min_reward=opts.min_reward, keep_bad_calls=opts.keep_bad_calls)
    if not rows:
        raise RowgymError("no SFT rows: the sources have no training-split episodes with final reward >= "
                          f"{opts.min_reward}; collect expert episodes with `rowgym collect ... --split train`")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import SFTTrainer
    except ImportError as e:
        raise RowgymError("SFT needs the train extra: pip install 'rowgym[train]'") from e

    model_dir = Path(model_dir).expanduser()
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_dir)
    model = model or AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    out = Path(out_dir)
    t0 = time.perf_counter()
    trainer = SFTTrainer(model=model, args=sft_config(out / "trainer", opts), train_dataset=trl_dataset(rows),
                         processing_class=tokenizer, callbacks=list(callbacks) or None)
    labels = trainer.train_dataset["labels"]
    n_lab = sum(sum(1 for x in lab if x != -100) for lab in labels)
    frac = n_lab / max(1, sum(len(lab) for lab in labels))
    trainer.train()
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _fix_tokenizer_config(out)  # loadable by the older transformers in a vLLM venv too
    res = SFTResult(out, losses, len(rows), round(time.perf_counter() - t0, 2), trainer.state.global_step, frac)
    (out / "sft_result.json").write_text(json.dumps(res.to_json(), indent=2) + "\n")
    write_consumption(out, model=model_dir, run=f"sft:{out}", trainer="sft",
                      dataset=dataset_or_run_dirs if _is_dataset_dir(dataset_or_run_dirs) else None,
                      episode_ids=[str(r["episode_id"]) for r in rows if r.get("episode_id")],
                      task_hashes=[str(r["task_hash"]) for r in rows if r.get("task_hash")])
    return res


def _is_dataset_dir(source: Any) -> bool:
    return isinstance(source, str | Path) and (Path(source) / ds.PROVENANCE_FILE).exists()
