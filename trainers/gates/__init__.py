"""Data gates: nothing goes from a generator to a trainer without passing format, semantic,
leakage and distribution checks, and every dataset carries four manifests.

>>> from rowgym.trainers.gates import GateConfig, default_gates
>>> [g.id for g in default_gates(GateConfig(), quarantine=None)]
['format@1', 'semantic@1', 'distribution@1']

Order: ``format``, ``semantic`` and ``leakage`` each look at every generated row (a row can
be rejected by several, and each gate's count says how many it rejected); ``distribution``
then dedups and caps the rows that passed them all, so a duplicate of a broken row does not
crowd out a good one. :func:`build_sft_dataset` and :func:`build_grpo_dataset` are what
``rowgym dataset sft`` / ``grpo`` run; the modules are one gate each
(:mod:`.format`, :mod:`.semantic`, :mod:`.leakage`, :mod:`.distribution`), plus the quarantine,
the manifests and a MinHash index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rowgym.rows import Split
from rowgym.splits import seed_set_hash
from rowgym.trainers import datasets as ds
from rowgym.trainers.gates.base import N_EXAMPLES, Candidate, Gate, GateContext, GateReport, Rejection
from rowgym.trainers.gates.distribution import DistributionGate, histograms
from rowgym.trainers.gates.format import FormatGate
from rowgym.trainers.gates.leakage import LeakageGate
from rowgym.trainers.gates.manifests import (
    source_from_env,
    source_from_runs,
    write_consumption,
    write_manifests,
)
from rowgym.trainers.gates.quarantine import Quarantine, build_quarantine
from rowgym.trainers.gates.semantic import SemanticGate

__all__ = ["Candidate", "GateConfig", "GateReport", "Rejection", "build_grpo_dataset", "build_sft_dataset",
           "default_gates", "run_gates", "write_consumption"]


@dataclass
class GateConfig:
    """Gate thresholds (the CLI's options map onto these)."""

    near_dup_threshold: float = 0.9
    """distribution: word-3-gram Jaccard at which two rows are near duplicates."""
    max_kind_share: float = 0.5
    """distribution: the most of the dataset one task kind may hold."""
    max_per_kind: int | None = None
    """distribution: an absolute cap per task kind."""
    prompt_threshold: float = 0.5
    """leakage: Jaccard at which a prompt nearly duplicates a quarantined prompt."""
    answer_threshold: float = 0.8
    """leakage: Jaccard at which an answer nearly duplicates a quarantined gold answer."""
    quarantine_seeds: int = 200
    """leakage: dev and held-out seeds per env in the quarantine."""
    eval_files: list[str] = field(default_factory=list)
    """leakage: eval files whose records join the quarantine."""
    replay: bool = True
    """semantic: replay episodes of deterministic envs."""


def default_gates(cfg: GateConfig, quarantine: Quarantine | None) -> list[Gate]:
    gates: list[Gate] = [FormatGate(), SemanticGate(replay=cfg.replay)]
    if quarantine is not None:
        gates.append(LeakageGate(quarantine, prompt_threshold=cfg.prompt_threshold,
                                 answer_threshold=cfg.answer_threshold))
    gates.append(DistributionGate(near_dup_threshold=cfg.near_dup_threshold, max_kind_share=cfg.max_kind_share,
                                  max_per_kind=cfg.max_per_kind))
    return gates


def run_gates(cands: Sequence[Candidate], gates: Sequence[Gate], ctx: GateContext) -> tuple[list[Candidate], GateReport]:
    """The candidates every gate accepts, and the rejection report."""
    report = GateReport(n_generated=len(cands))
    rejected: dict[str, list[Rejection]] = {}
    shown: dict[tuple[str, str], int] = {}
    alive = list(cands)
    report.histograms["before"] = histograms(list(cands), ctx)
    for gate in gates:
        pool = alive if isinstance(gate, DistributionGate) else list(cands)
        rej = gate.check(pool, ctx)
        reasons: dict[str, int] = {}
        for r in rej:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
            rejected.setdefault(r.key, []).append(r)
            if shown.get((r.gate, r.reason), 0) < N_EXAMPLES:
                shown[(r.gate, r.reason)] = shown.get((r.gate, r.reason), 0) + 1
                report.examples.append(r.to_dict())
        report.gates.append({"id": gate.id, "params": gate.params(), "n_in": len(pool), "n_rejected": len(rej),
                             "reasons": dict(sorted(reasons.items()))})
        alive = [c for c in alive if c.key not in rejected]
        if isinstance(gate, LeakageGate) and gate.template_siblings:
            report.notes.append(f"{gate.template_siblings} env-rendered train prompt(s) resemble a quarantined "
                                f"sibling of the same template (kept: their split is fixed by the content hash)")
    report.n_kept = len(alive)
    report.histograms["after"] = histograms(alive, ctx)
    return alive, report


def quarantine_for(cfg: GateConfig) -> Quarantine:
    """The quarantine the leakage gate checks against (dev and held-out content, plus the eval files)."""
    return build_quarantine(n_per_split=cfg.quarantine_seeds, eval_files=cfg.eval_files)


def gate_and_write(cands: list[Candidate], gates: list[Gate], quarantine: Quarantine, *,
                   runs: Sequence[str | Path], manifests: list[Any], out: str | Path, kind: str,
                   params: dict[str, Any], allow_unverified: bool, notes: Sequence[str] = (),
                   ) -> tuple[Path, GateReport, list[dict[str, Any]]]:
    """Run ``gates`` over the candidates of ``runs``, write the kept rows and the four manifests into ``out``.

    The one write path of every run-based dataset builder (sft, rsft, dpo); ``kind`` names the builder.
    """
    with GateContext() as ctx:
        kept, report = run_gates(cands, gates, ctx)
    report.notes.extend(notes)
    kept_rows = [c.row for c in kept]
    path = ds.write_dataset(kept_rows, out, sources=[str(r) for r in runs], kind=kind, params=params,
                            allow_unverified=allow_unverified)
    write_manifests(path, source=source_from_runs(manifests, runs), report=report, gates=gates,
                    quarantine=quarantine, builder=kind, params=params,
                    dataset_hashes=[r["task_hash"] for r in kept_rows])
    return path, report, kept_rows


def build_sft_dataset(runs: Sequence[str | Path], out: str | Path, *, min_reward: float = 1.0,
                      splits: Sequence[str] = ("train",), keep_bad_calls: bool = True, allow_unverified: bool = False,
                      cfg: GateConfig | None = None) -> tuple[Path, GateReport, list[dict[str, Any]]]:
    """Gate the SFT conversations of ``runs`` and write the kept rows plus the four manifests into ``out``."""
    cfg = cfg or GateConfig()
    rows, episodes, manifests = ds.sft_candidates([str(r) for r in runs], min_reward=min_reward, splits=splits,
                                                  keep_bad_calls=keep_bad_calls, allow_unverified=allow_unverified)
    by_id = {e.episode_id: e for e in episodes}
    cands = [Candidate(r["episode_id"], r, by_id.get(r["episode_id"])) for r in rows]
    q = quarantine_for(cfg)
    params = {"min_reward": min_reward, "splits": list(splits), "keep_bad_calls": keep_bad_calls,
              "gates": asdict(cfg)}
    return gate_and_write(cands, default_gates(cfg, q), q, runs=runs, manifests=manifests, out=out, kind="sft",
                          params=params, allow_unverified=allow_unverified)


def build_grpo_dataset(env_id: str, out: str | Path, *, split: str = "train", n: int = 64, start: int = 0,
                       cfg: GateConfig | None = None) -> tuple[Path, GateReport, list[dict[str, Any]]]:
    """Gate GRPO prompt rows and write them plus the four manifests into ``out``."""
    cfg = cfg or GateConfig()
    rows = ds.grpo_prompts(env_id, split=split, n=n, start=start)
    cands = [Candidate(f"{r['env_id']}:{r['seed']}", r) for r in rows]
    q = quarantine_for(cfg)
    gates = default_gates(cfg, q)
    with GateContext() as ctx:
        kept, report = run_gates(cands, gates, ctx)
        version = str(getattr(ctx.env(env_id).unwrapped, "version", ""))
    params = {"env_id": env_id, "split": split, "n": n, "start": start, "gates": asdict(cfg)}
    kept_rows = [c.row for c in kept]
    path = ds.write_dataset(kept_rows, out, kind="grpo", params=params)
    seeds = [r["seed"] for r in rows]
    write_manifests(path, source=source_from_env(env_id, version, split, seeds,
                                                 seed_set_hash(env_id, Split(split), seeds)),
                    report=report, gates=gates, quarantine=q, builder="grpo", params=params,
                    dataset_hashes=[r["task_hash"] for r in kept_rows])
    return path, report, kept_rows
