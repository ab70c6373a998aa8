"""Contamination check: did the agent train on any task it is about to be evaluated on?

>>> from rowgym.evals.contamination import heldout_hashes
>>> hashes = heldout_hashes("rowgym/ToolAPI-Retail-v0", [3, 8])
>>> sorted(hashes) == [3, 8] and all(len(h) == 24 for h in hashes.values())
True

Tasks are compared by *content* hash (``env.task_hash(seed)``, the same hash every
:class:`~rowgym.rows.Episode` carries as ``task_hash``), not by seed, so a task that
reached the training data under another seed, split or env version is still caught.

:func:`load_training_hashes` accepts what a practitioner has at hand:

* a run directory (``manifest.json`` + ``shards/``): the ``task_hash`` of every episode;
* a dataset directory or file with a ``provenance.json`` beside it (written by
  ``rowgym.trainers.datasets``): its ``task_hashes`` list, plus any run directories or
  manifests it names as sources that still exist;
* a run manifest alone (``manifest.json``): the hashes of its source seeds, recomputed
  from the environment;
* an exported ``.jsonl``/``.parquet`` file with a ``task_hash`` column;
* a directory of any of these (searched recursively).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rowgym
from rowgym.errors import HeldOutLeakError, RowgymError
from rowgym.rows import RunManifest
from rowgym.store import TrajectoryStore

PROVENANCE = "provenance.json"


class ContaminationError(HeldOutLeakError):
    """Held-out tasks about to be evaluated appear in the agent's training data."""


@dataclass
class TrainingHashes:
    """Task content hashes found in training data, each with where it was found."""

    sources: dict[str, set[str]] = field(default_factory=dict)
    """source path -> task hashes found there."""

    @property
    def hashes(self) -> set[str]:
        return set().union(*self.sources.values()) if self.sources else set()

    def where(self, h: str) -> list[str]:
        return sorted(src for src, hs in self.sources.items() if h in hs)

    def add(self, source: str | Path, hashes: Iterable[str]) -> None:
        self.sources.setdefault(str(source), set()).update(h for h in hashes if h)


@dataclass(frozen=True)
class Overlap:
    """One held-out task found in the training data."""

    env_id: str
    seed: int
    task_hash: str
    found_in: tuple[str, ...]


@dataclass
class ContaminationReport:
    """Outcome of the check for one bench (empty ``overlaps`` means clean)."""

    training_paths: list[str]
    n_training_hashes: int
    n_heldout_tasks: int
    overlaps: list[Overlap] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.overlaps

    def seeds_of(self, env_id: str) -> set[int]:
        return {o.seed for o in self.overlaps if o.env_id == env_id}

    def message(self) -> str:
        if self.clean:
            return (f"clean: none of {self.n_heldout_tasks} evaluated tasks appear among "
                    f"{self.n_training_hashes} training task hashes")
        lines = [f"{len(self.overlaps)} of {self.n_heldout_tasks} evaluated tasks appear in the training data:"]
        for o in self.overlaps[:20]:
            lines.append(f"  {o.env_id} seed {o.seed} task_hash {o.task_hash} (in {', '.join(o.found_in)})")
        if len(self.overlaps) > 20:
            lines.append(f"  ... and {len(self.overlaps) - 20} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"training_paths": self.training_paths, "n_training_hashes": self.n_training_hashes,
                "n_heldout_tasks": self.n_heldout_tasks, "clean": self.clean,
                "overlaps": [o.__dict__ | {"found_in": list(o.found_in)} for o in self.overlaps]}


def _from_run_dir(path: Path, out: TrainingHashes) -> None:
    """Read-only: never repair or write inside someone's training run."""
    out.add(path, (ep.task_hash for ep in TrajectoryStore(path, readonly=True).episodes()))


def _from_manifest(path: Path, out: TrainingHashes) -> None:
    m = RunManifest.model_validate_json(path.read_text())
    if (path.parent / "shards").is_dir() and any((path.parent / "shards").iterdir()):
        _from_run_dir(path.parent, out)
    if not out.sources.get(str(path.parent)):  # no episodes stored: recompute from the source seeds
        out.add(path, heldout_hashes(m.source.env_id, m.source.seeds).values())


def _from_provenance(path: Path, out: TrainingHashes) -> None:
    data = json.loads(path.read_text())
    out.add(path, data.get("task_hashes") or [])
    for key in ("sources", "source_runs", "runs", "manifests"):
        for src in data.get(key) or []:
            ref = src.get("path") or src.get("run_dir") if isinstance(src, dict) else src
            if isinstance(ref, str) and Path(ref).exists() and Path(ref).resolve() != path.parent.resolve():
                _load(Path(ref), out, depth=1)


def _from_table(path: Path, out: TrainingHashes) -> None:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "task_hash" in table.column_names:
            out.add(path, (str(h) for h in table.column("task_hash").to_pylist()))
        return
    hashes = []
    with open(path) as f:
        for line in f:
            if '"task_hash"' in line:
                hashes.append(json.loads(line).get("task_hash"))
    out.add(path, hashes)


def _load(path: Path, out: TrainingHashes, depth: int = 0) -> None:
    if path.is_file():
        if path.name == PROVENANCE:
            _from_provenance(path, out)
        elif path.suffix == ".json":
            _from_manifest(path, out)
        elif path.suffix in (".jsonl", ".parquet"):
            _from_table(path, out)
            if (path.parent / PROVENANCE).exists():
                _from_provenance(path.parent / PROVENANCE, out)
        return
    if (path / PROVENANCE).exists():
        _from_provenance(path / PROVENANCE, out)
    if (path / "manifest.json").exists():
        _from_manifest(path / "manifest.json", out)
    if not (path / PROVENANCE).exists() and not (path / "manifest.json").exists() and depth < 4:
        for child in sorted(path.iterdir()):
            if child.is_dir() or child.name == PROVENANCE or child.suffix in (".jsonl", ".parquet"):
                _load(child, out, depth + 1)


def load_training_hashes(paths: Iterable[str | Path]) -> TrainingHashes:
    """Every task content hash the training data at ``paths`` contains."""
    out = TrainingHashes()
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise RowgymError(f"training data {path} does not exist; pass a run directory, a dataset "
                              f"directory with {PROVENANCE}, or a run manifest")
        before = len(out.hashes)
        try:
            _load(path, out)
        except (ValueError, KeyError, OSError) as e:
            raise RowgymError(f"cannot read training data at {path}: {e}") from e
        if len(out.hashes) == before and not any(str(path) in s for s in out.sources):
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
    """Compare the tasks in ``planned`` (env id -> seeds) with the training data's task hashes."""
    training = training or load_training_hashes(training_paths)
    all_train = training.hashes
    report = ContaminationReport([str(p) for p in training_paths], len(all_train),
                                 sum(len(s) for s in planned.values()))
    for env_id, seeds in planned.items():
        for seed, h in heldout_hashes(env_id, seeds).items():
            if h in all_train:
                report.overlaps.append(Overlap(env_id, seed, h, tuple(training.where(h))))
    return report


def refuse(report: ContaminationReport) -> None:
    """Raise :class:`ContaminationError` if the report is not clean."""
    if report.clean:
        return
    envs = sorted({o.env_id for o in report.overlaps})
    detail = "; ".join(f"{e}: seeds {sorted(report.seeds_of(e))} hashes "
                       f"{sorted({o.task_hash for o in report.overlaps if o.env_id == e})}" for e in envs)
    raise ContaminationError(
        f"contaminated: {len(report.overlaps)} held-out task(s) about to be evaluated appear in the training "
        f"data ({', '.join(report.training_paths)}) — {detail}. Retrain without them, evaluate other seeds, "
        f"or pass --contamination flag to run anyway and mark the report")
