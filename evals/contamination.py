"""Contamination check: did the agent train on any task it is about to be evaluated on?

>>> from rowgym.evals.contamination import heldout_hashes
>>> hashes = heldout_hashes("rowgym/ToolAPI-Retail-v0", [3, 8])
>>> sorted(hashes) == [3, 8] and all(len(h) == 24 for h in hashes.values())
True

Tasks are compared by *content*, not by seed, so a task that reached the training data under
another seed, split or env version is still caught. Nothing a row says about itself is trusted
alone: labels (``task_hash``, ``seed``, ``split``) can be rewritten and a run resealed, so

* every stored or exported task hash is taken, *and* the hash of the task of every (env id,
  seed) named, re-derived from the env (:class:`rowgym.task_oracle.TaskOracle`);
* the text the agent was given (an episode's first observation, a step export's turn-0
  observation, a dataset row's first user message) is searched for the instruction of every
  task about to be evaluated, so a held-out task relabelled as a train seed is found by what it
  says; so is *all* the other text of each item (every later user, tool and assistant message,
  tool-call arguments, ``chosen`` / ``rejected`` / hard negatives, the tools column, every step of
  an episode), since a held-out task appended after a train task's first message is trained on
  all the same;
* a training item from a held-out seed (by its label or by its env), a run that fails
  verification, a line that does not parse, content that is not the task of the seed it claims,
  or a file that names no task make the report not clean (:attr:`ContaminationReport.problems`):
  ``rowgym bench`` refuses it unless ``--contamination flag``.

:func:`load_training_hashes` accepts what a practitioner has at hand:

* a run directory (``manifest.json`` + ``shards/``): its episodes (never its manifest's seed
  list alone when episodes are stored);
* a dataset directory or file with a ``provenance.json`` beside it (written by
  ``rowgym.trainers.datasets``): its ``task_hashes`` list, its data file's rows, plus any run
  directories or manifests it names as sources that still exist;
* a run manifest alone (``manifest.json``): the hashes of its source seeds, recomputed
  from the environment;
* an exported ``.jsonl``/``.parquet`` file (episode or step level, or dataset rows): its
  ``task_hash`` column, its (env id, seed) pairs and its first observations;
* a directory of any of these (searched recursively).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rowgym
from rowgym.errors import HeldOutLeakError, RowgymError
from rowgym.rows import RunManifest, Split
from rowgym.store import TrajectoryStore
from rowgym.task_oracle import TaskOracle

DATA_FILE = "data.jsonl"  # a dataset dir's rows (rowgym.trainers.datasets writes it; evals do not import trainers)

PROVENANCE = "provenance.json"


class ContaminationError(HeldOutLeakError):
    """Held-out tasks about to be evaluated appear in the agent's training data."""


MAX_EXAMPLES = 3  # per kind of problem and source: the first ones are kept, the rest counted


@dataclass
class TrainingHashes:
    """Task content hashes and task texts found in training data, each with where it was found, and
    what in the training data cannot be vouched for."""

    sources: dict[str, set[str]] = field(default_factory=dict)
    """source path -> task hashes found there."""
    texts: dict[str, set[str]] = field(default_factory=dict)
    """source path -> the texts the agent was given (first observations, first user messages)."""
    problems: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """source path -> what cannot be vouched for there (see the module docstring) -> a few examples."""
    n_problems: dict[tuple[str, str], int] = field(default_factory=dict)
    read: set[str] = field(default_factory=set)
    """Files already read (a data file reached twice counts once)."""

    @property
    def hashes(self) -> set[str]:
        return set().union(*self.sources.values()) if self.sources else set()

    def where(self, h: str) -> list[str]:
        return sorted(src for src, hs in self.sources.items() if h in hs)

    def where_text(self, instruction: str) -> list[str]:
        """Sources whose texts contain ``instruction``."""
        return sorted(src for src, ts in self.texts.items() if any(instruction in t for t in ts))

    def add(self, source: str | Path, hashes: Iterable[str]) -> None:
        self.sources.setdefault(str(source), set()).update(h for h in hashes if h)

    def add_text(self, source: str | Path, text: str) -> None:
        if text:
            self.texts.setdefault(str(source), set()).add(text)

    def problem(self, source: str | Path, what: str, example: str = "") -> None:
        """Note that ``what`` (a kind of problem, counted per source) holds for ``example`` in ``source``."""
        src = str(source)
        self.n_problems[(src, what)] = self.n_problems.get((src, what), 0) + 1
        examples = self.problems.setdefault(src, {}).setdefault(what, [])
        if example and len(examples) < MAX_EXAMPLES:
            examples.append(example)

    def problem_lines(self) -> list[str]:
        out = []
        for src, kinds in sorted(self.problems.items()):
            for what, examples in kinds.items():
                n = self.n_problems[(src, what)]
                eg = f" (e.g. {'; '.join(examples)}{'; ...' if n > len(examples) else ''})" if examples else ""
                out.append(f"{src}: {f'{n} x ' if n > 1 else ''}{what}{eg}")
        return out

    def size(self) -> int:
        return len(self.hashes) + sum(map(len, self.texts.values())) + sum(self.n_problems.values())

    def found_anything(self, source: str | Path) -> bool:
        src = str(source)
        return any(src == s or s.startswith(src.rstrip("/") + "/")
                   for s in (*self.sources, *self.texts, *self.problems))


@dataclass(frozen=True)
class Overlap:
    """One held-out task found in the training data."""

    env_id: str
    seed: int
    task_hash: str
    found_in: tuple[str, ...]


@dataclass
class ContaminationReport:
    """Outcome of the check for one bench (clean: no overlap and nothing that cannot be vouched for)."""

    training_paths: list[str]
    n_training_hashes: int
    n_heldout_tasks: int
    overlaps: list[Overlap] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """What in the training data cannot be vouched for (held-out items, unverified runs, forged content)."""

    @property
    def clean(self) -> bool:
        return not self.overlaps and not self.problems

    def seeds_of(self, env_id: str) -> set[int]:
        return {o.seed for o in self.overlaps if o.env_id == env_id}

    def message(self) -> str:
        if self.clean:
            return (f"clean: none of {self.n_heldout_tasks} evaluated tasks appear among "
                    f"{self.n_training_hashes} training task hashes")
        lines = []
        if self.overlaps:
            lines.append(f"{len(self.overlaps)} of {self.n_heldout_tasks} evaluated tasks appear in the training data:")
        for o in self.overlaps[:20]:
            lines.append(f"  {o.env_id} seed {o.seed} task_hash {o.task_hash} (in {', '.join(o.found_in)})")
        if len(self.overlaps) > 20:
            lines.append(f"  ... and {len(self.overlaps) - 20} more")
        if self.problems:
            lines.append(f"the training data cannot be vouched for ({len(self.problems)} problem(s)):")
            lines += [f"  {p}" for p in self.problems[:20]]
            if len(self.problems) > 20:
                lines.append(f"  ... and {len(self.problems) - 20} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"training_paths": self.training_paths, "n_training_hashes": self.n_training_hashes,
                "n_heldout_tasks": self.n_heldout_tasks, "clean": self.clean,
                "overlaps": [o.__dict__ | {"found_in": list(o.found_in)} for o in self.overlaps],
                "problems": list(self.problems)}


# ---------------------------------------------------------------------------- reading
def _record(out: TrainingHashes, source: Path, oracle: TaskOracle, what: str, *, env_id: Any = None,
            seed: Any = None, split: Any = None, task_hash: Any = None, text: Any = None, rest: str = "") -> bool:
    """Take one training item (episode or row): its stored hash, the hash of the task of the (env, seed) it
    names, its text (``text`` the first thing the agent was given, ``rest`` all the rest: every later
    message, tool reply, assistant turn and the tools column); note a held-out item and content that is not
    its seed's. True if it named a task."""
    named = False
    if isinstance(task_hash, str) and task_hash:
        out.add(source, [task_hash])
        named = True
    if isinstance(text, str) and text:
        out.add_text(source, text)
        named = True
    if rest:
        out.add_text(source, rest)
    if str(split) == Split.HELDOUT.value:
        out.problem(source, "item(s) labelled held-out (held-out data is never training data)", what)
    if not env_id or seed is None:
        return named
    try:
        facts = oracle.facts(str(env_id), int(seed))
    except (HeldOutLeakError, TypeError, ValueError) as e:
        out.problem(source, "item(s) whose task cannot be re-made from env id + seed", f"{what}: {e}")
        return True
    out.add(source, [facts.task_hash])
    if facts.split == Split.HELDOUT and str(split) != Split.HELDOUT.value:
        out.problem(source, "item(s) of held-out seeds labelled otherwise", f"{what}: {env_id} seed {seed}")
    if isinstance(text, str) and text and facts.instruction and facts.instruction not in text:
        out.problem(source, "item(s) whose text is not the task of the seed they claim (relabelled)",
                    f"{what}: {env_id} seed {seed}")
    return True


def _from_run_dir(path: Path, out: TrainingHashes, oracle: TaskOracle) -> int:
    """The episodes of a run, by content (read-only: never repair or write inside someone's training run).
    Returns how many episodes were read."""
    store = TrajectoryStore(path, readonly=True)
    failed = store.verify(fast=True)
    if failed:
        out.problem(path, f"fails verification, so its labels cannot be trusted (see `rowgym verify {path}`)",
                    "; ".join(str(p) for p in failed[:3]))
    n = 0
    for ep in store.episodes():
        n += 1
        text = ep.steps[0].observation if ep.steps else ep.instruction
        rest = _strings(ep.tools or "")
        for s in ep.steps:
            rest += [s.observation if s.turn else "", s.action.text, s.next_observation]
            if s.action.tool_call is not None:
                call = s.action.tool_call
                rest += [f"{call.name} {call.arguments}", *_strings(call.arguments)]
        _record(out, path, oracle, f"episode {ep.episode_id}", env_id=ep.env_id, seed=ep.seed, split=ep.split.value,
                task_hash=ep.task_hash, text=text, rest="\n".join(t for t in rest if t))
    for (shard, line), _ in sorted(store.quarantined.items()):
        out.problem(path, "line(s) that do not parse, so their task is unknown", f"{shard} line {line + 1}")
    return n


def _from_manifest(path: Path, out: TrainingHashes, oracle: TaskOracle) -> None:
    """A run's manifest: its stored episodes when there are any (the seed list is only a plan, and editable),
    the tasks of its source seeds otherwise."""
    m = RunManifest.model_validate_json(path.read_text())
    if m.source.split == Split.HELDOUT or (m.identity is not None and m.identity.split == Split.HELDOUT):
        out.problem(path, f"run {m.run_id} was collected from the held-out split")
    shards = path.parent / "shards"
    if shards.is_dir() and any(shards.iterdir()) and _from_run_dir(path.parent, out, oracle):
        return
    for seed in m.source.seeds:
        _record(out, path, oracle, f"manifest seed {seed}", env_id=m.source.env_id, seed=seed)


def _from_provenance(path: Path, out: TrainingHashes, oracle: TaskOracle) -> None:
    data = json.loads(path.read_text())
    out.add(path, data.get("task_hashes") or [])
    if data.get("unverified"):
        out.problem(path, "the dataset was built from runs that failed verification")
    data_file = path.parent / str(data.get("data_file") or DATA_FILE)
    if data_file.is_file():
        _from_table(data_file, out, oracle)
    for key in ("sources", "source_runs", "runs", "manifests"):
        for src in data.get(key) or []:
            ref = src.get("path") or src.get("run_dir") if isinstance(src, dict) else src
            if isinstance(ref, str) and Path(ref).exists() and Path(ref).resolve() != path.parent.resolve():
                _load(Path(ref), out, oracle, depth=1)


TABLE_COLUMNS = ("task_hash", "env_id", "seed", "split", "turn", "observation", "instruction", "messages", "prompt",
                 "episode_id", "chosen_episode_id", "chosen", "rejected", "hard_negatives", "tools",
                 "next_observation", "action", "action_text", "text", "completion", "response")


def _table_rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=[c for c in TABLE_COLUMNS if c in pq.read_schema(path).names])
        yield from table.to_pylist()
        return
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {i} is a JSON {type(row).__name__}, not a row object")
            yield row


def _conversations(row: dict[str, Any]) -> list[list[Any]]:
    """Every conversation a row carries: ``messages``, ``prompt``, ``chosen``, ``rejected``, each hard negative."""
    out = []
    for key in ("messages", "prompt", "chosen", "rejected"):
        conv = row.get(key)
        if isinstance(conv, str):
            with contextlib.suppress(ValueError):
                conv = json.loads(conv)
        if isinstance(conv, list):
            out.append(conv)
    for neg in row.get("hard_negatives") or []:
        if isinstance(neg, dict) and isinstance(neg.get("messages"), list):
            out.append(neg["messages"])
    return out


def _row_text(row: dict[str, Any]) -> str | None:
    """The text the agent was given first in a row: first user message, turn-0 observation or instruction."""
    for conv in _conversations(row):
        for m in conv:
            if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
                return m["content"]
    if isinstance(row.get("observation"), str) and row.get("turn") in (0, None):
        return row["observation"]
    return row.get("instruction") if isinstance(row.get("instruction"), str) else None


def _strings(value: Any) -> list[str]:
    """Every string in a JSON value (or JSON text), unescaped: tool schemas and call arguments hold text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
        if isinstance(value, str):
            return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [t for v in value for t in _strings(v)]
    return []


def _row_rest(row: dict[str, Any]) -> str:
    """All the other text of a row, every message of every conversation (any role; tool calls included), the
    tools column and a step export's texts: a held-out task can hide in any turn, not only the first."""
    parts: list[str] = []
    for conv in _conversations(row):
        for m in conv:
            if not isinstance(m, dict):
                continue
            parts.append(str(m.get("content") or ""))
            for call in m.get("tool_calls") or []:
                fn = (call.get("function") or {}) if isinstance(call, dict) else {}
                if isinstance(fn, dict):
                    parts += [f"{fn.get('name', '')} {fn.get('arguments', '')}", *_strings(fn.get("arguments"))]
    for key in ("observation", "next_observation", "action_text", "text", "completion", "response"):
        if isinstance(row.get(key), str):
            parts.append(row[key])
    for key in ("tools", "action"):
        if row.get(key) is not None:
            parts += _strings(row[key])
    return "\n".join(p for p in parts if p)


def _from_table(path: Path, out: TrainingHashes, oracle: TaskOracle) -> None:
    """An exported or dataset table. A row without ``task_hash`` still names its task by env id + seed and
    by its text; a file with rows none of which names a task is an error (it would count for nothing)."""
    key = str(path.resolve())
    if key in out.read:
        return
    out.read.add(key)
    n = named = 0
    for row in _table_rows(path):
        n += 1
        what = f"row {n} ({row.get('episode_id') or row.get('chosen_episode_id') or 'no episode id'})"
        named += _record(out, path, oracle, what, env_id=row.get("env_id"), seed=row.get("seed"),
                         split=row.get("split"), task_hash=row.get("task_hash"), text=_row_text(row),
                         rest=_row_rest(row))
    if n and not named:
        raise RowgymError(f"{path} has {n} rows but none names a task (no task_hash, env_id + seed, or text the "
                          f"agent was given), so it cannot be checked; export it with `rowgym export RUN` or "
                          f"leave it out of --training-data")


def _load(path: Path, out: TrainingHashes, oracle: TaskOracle, depth: int = 0) -> None:
    if path.is_file():
        if path.name == PROVENANCE:
            _from_provenance(path, out, oracle)
        elif path.suffix == ".json":
            _from_manifest(path, out, oracle)
        elif path.suffix in (".jsonl", ".parquet"):
            _from_table(path, out, oracle)
            if (path.parent / PROVENANCE).exists():
                _from_provenance(path.parent / PROVENANCE, out, oracle)
        return
    if (path / PROVENANCE).exists():
        _from_provenance(path / PROVENANCE, out, oracle)
    if (path / "manifest.json").exists():
        _from_manifest(path / "manifest.json", out, oracle)
    if not (path / PROVENANCE).exists() and not (path / "manifest.json").exists() and depth < 4:
        for child in sorted(path.iterdir()):
            if child.is_dir() or child.name == PROVENANCE or child.suffix in (".jsonl", ".parquet"):
                _load(child, out, oracle, depth + 1)


def load_training_hashes(paths: Iterable[str | Path], oracle: TaskOracle | None = None) -> TrainingHashes:
    """Every task content hash and task text the training data at ``paths`` contains (see the module docstring)."""
    out = TrainingHashes()
    with contextlib.ExitStack() as stack:
        oracle = oracle or stack.enter_context(TaskOracle())
        for p in paths:
            path = Path(p)
            if not path.exists():
                raise RowgymError(f"training data {path} does not exist; pass a run directory, a dataset "
                                  f"directory with {PROVENANCE}, or a run manifest")
            before = out.size()
            try:
                _load(path, out, oracle)
            except (ValueError, KeyError, OSError, AttributeError, TypeError) as e:
                raise RowgymError(f"cannot read training data at {path}: {e}") from e
            if out.size() == before and not out.found_anything(path):
                raise RowgymError(f"found no task hashes in {path}; pass a run directory, a dataset directory "
                                  f"with {PROVENANCE} (field task_hashes), or a run manifest")
    return out


def heldout_hashes(env_id: str, seeds: Iterable[int]) -> dict[int, str]:
    """``seed -> task content hash`` for the tasks of ``env_id`` about to be evaluated."""
    env = rowgym.make(env_id)
    try:
        return env.unwrapped.task_hashes(seeds)
    finally:
        env.close()


def check_contamination(training_paths: list[str | Path], planned: dict[str, list[int]],
                        training: TrainingHashes | None = None) -> ContaminationReport:
    """Compare the tasks in ``planned`` (env id -> seeds) with the training data: by task hash, and by the
    instruction of each planned task in the texts the training data gave the agent."""
    with TaskOracle() as oracle:
        training = training or load_training_hashes(training_paths, oracle)
        all_train = training.hashes
        report = ContaminationReport([str(p) for p in training_paths], len(all_train),
                                     sum(len(s) for s in planned.values()), problems=training.problem_lines())
        for env_id, seeds in planned.items():
            for seed in seeds:
                facts = oracle.facts(env_id, seed)
                found = set(training.where(facts.task_hash)) if facts.task_hash in all_train else set()
                if facts.instruction:
                    found.update(training.where_text(facts.instruction))
                if found:
                    report.overlaps.append(Overlap(env_id, seed, facts.task_hash, tuple(sorted(found))))
    return report


def refuse(report: ContaminationReport) -> None:
    """Raise :class:`ContaminationError` if the report is not clean."""
    if report.clean:
        return
    also = (f" The training data also cannot be vouched for: {'; '.join(report.problems[:3])}"
            f"{' ...' if len(report.problems) > 3 else ''}." if report.problems else "")
    if not report.overlaps:
        raise ContaminationError(
            f"cannot rule out contamination: the training data ({', '.join(report.training_paths)}) cannot be "
            f"vouched for ({len(report.problems)} problem(s)): {'; '.join(report.problems[:3])}"
            f"{' ...' if len(report.problems) > 3 else ''}. Fix or remove it, or pass --contamination flag to run "
            f"anyway and mark the report")
    envs = sorted({o.env_id for o in report.overlaps})
    detail = "; ".join(f"{e}: seeds {sorted(report.seeds_of(e))} hashes "
                       f"{sorted({o.task_hash for o in report.overlaps if o.env_id == e})}" for e in envs)
    raise ContaminationError(
        f"contaminated: {len(report.overlaps)} held-out task(s) about to be evaluated appear in the training "
        f"data ({', '.join(report.training_paths)}) — {detail}.{also} Retrain without them, evaluate other seeds, "
        f"or pass --contamination flag to run anyway and mark the report")
