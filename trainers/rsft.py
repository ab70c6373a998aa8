"""Rejection-sampling fine-tuning (RSFT) data from grouped runs: keep what the verifier passed.

>>> import tempfile
>>> from rowgym.rollouts.engine import CollectConfig, collect
>>> from rowgym.trainers.rsft import rsft_candidates
>>> run = collect(CollectConfig(env_id="rowgym/ToolAPI-Retail-v0", agent="rowgym.evals.demo:FlakyExpert",
...                             episodes=2, group_size=4, concurrency=1, out=tempfile.mkdtemp(),
...                             progress=False)).out
>>> rows, _, _, summary = rsft_candidates(run)
>>> r = rows[0]
>>> (r["candidates"], r["accepted"] + r["rejected_count"], summary.n_groups)
(4, 4, 2)

    rowgym collect rowgym/ToolAPI-Retail-v0 --agent vllm --group-size 8 --out runs/k8
    rowgym dataset rsft runs/k8 --out data/rsft
    rowgym train sft data/rsft --model-dir ... --out runs/rsft

A run collected with ``--group-size k`` holds k samples of the policy per seed (one group).
Each sample the verifier passed (``verdict.success``, a final reward of at least
``min_reward``, no failure, no ``suspicious`` flag) becomes one SFT conversation, in the row
shape of :func:`rowgym.trainers.datasets.sft_conversations`, plus what rejection sampling
decided for its group:

* ``candidates``: the group's size k; ``accepted``: how many passed; ``rejected_count``;
* ``checker_name`` / ``checker_version``: the verifier that judged the accepted sample;
* ``rejection_reasons``: per rejected sample its ``episode_id``, ``final_reward``,
  ``failure_kind`` (see :func:`failure_kind`) and ``checks_failed`` (the grader's check names);
* ``hard_negatives``: up to ``n_hard_negatives`` rejected samples of the same seed, the
  closest misses first (highest reward, then fewest failed checks), with their conversations.

Held-out runs and episodes are refused (:class:`rowgym.errors.HeldOutLeakError`) exactly as for
SFT; runs must verify unless ``allow_unverified``. :func:`build_rsft_dataset` (``rowgym dataset
rsft``) runs the rows through the data gates and writes the four manifests; the dataset feeds
``rowgym train sft`` unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rowgym.rows import Episode, RunManifest, Split
from rowgym.trainers import datasets as ds
from rowgym.trainers.gates import GateConfig, GateReport, default_gates, gate_and_write, quarantine_for
from rowgym.trainers.gates.base import Candidate


@dataclass
class RSFTSummary:
    """What rejection sampling did over a run: groups, samples, acceptances and why samples failed."""

    n_groups: int = 0
    n_candidates: int = 0
    n_accepted: int = 0
    groups_with_accept: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    checks_failed: dict[str, int] = field(default_factory=dict)

    @property
    def acceptance_rate(self) -> float:
        return self.n_accepted / self.n_candidates if self.n_candidates else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "acceptance_rate": round(self.acceptance_rate, 4)}

    def line(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.failure_kinds.items())) or "none"
        return (f"rsft: {self.n_accepted} of {self.n_candidates} samples accepted (rate {self.acceptance_rate:.3f}) "
                f"in {self.groups_with_accept} of {self.n_groups} groups; rejections by kind: {kinds}")


def failure_kind(ep: Episode, *, min_reward: float = 0.0) -> str | None:
    """Why the verifier did not pass an episode, or None when it did.

    ``policy`` / ``env`` / ``sandbox`` / ``grader`` / ``timeout`` / ``agent`` (the episode's own
    failure attribution), ``no_verdict``, ``flagged`` (a ``suspicious`` verdict flag),
    ``turn_limit`` (truncated before finishing), ``checks_failed`` (graded and failed) or
    ``low_reward`` (passed, but below ``min_reward``).
    """
    if ep.failure is not None:
        return ep.failure.kind
    if ep.verdict is None or not ep.steps:
        return "no_verdict"
    if ds.EXCLUDED_FLAGS.intersection(ep.verdict.flags):
        return "flagged"
    if not ep.verdict.success:
        last = ep.steps[-1]
        return "turn_limit" if last.truncated and not last.terminated else "checks_failed"
    if not ds.reward_at_least(ep.final_reward, min_reward):  # NaN never passes
        return "low_reward"
    return None


def _checks_failed(ep: Episode) -> list[str]:
    return [c.name for c in ep.verdict.checks if not c.passed] if ep.verdict is not None else []


def _hardness(ep: Episode) -> tuple[float, int, int]:
    """Sort key, closest miss first: highest reward, fewest failed checks, then most steps."""
    return (-ep.final_reward, len(_checks_failed(ep)), -len(ep.steps))


def rsft_candidates(source: ds.Source, *, min_reward: float = 0.0, splits: Sequence[str | Split] = ("train",),
                    keep_bad_calls: bool = True, n_hard_negatives: int = 2, max_per_task: int | None = None,
                    system_prompt: str | None = None, allow_unverified: bool = False,
                    ) -> tuple[list[dict[str, Any]], list[Episode], list[RunManifest], RSFTSummary]:
    """RSFT rows (accepted samples with their group's record), the episodes and manifests read, a summary.

    Args:
        source: a grouped run directory, a list of them, or Episodes.
        min_reward: an accepted sample also needs at least this final reward.
        splits: splits to keep; ``heldout`` is refused, ``dev`` only when listed.
        keep_bad_calls: keep bad calls and the errors they got in accepted conversations.
        n_hard_negatives: rejected samples kept per row (closest misses first).
        max_per_task: keep at most this many accepted samples per group (the first by sample index).
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
    summary = RSFTSummary()
    kinds: Counter[str] = Counter()
    checks: Counter[str] = Counter()
    for group in ds.episode_groups(episodes).values():
        if group[0].split not in wanted:
            continue
        verdicts = {e.episode_id: failure_kind(e, min_reward=min_reward) for e in group}
        accepted = [e for e in group if verdicts[e.episode_id] is None]
        rejected = sorted((e for e in group if verdicts[e.episode_id] is not None), key=_hardness)
        summary.n_groups += 1
        summary.n_candidates += len(group)
        summary.n_accepted += len(accepted)
        summary.groups_with_accept += bool(accepted)
        reasons = []
        for e in rejected:
            kinds[str(verdicts[e.episode_id])] += 1
            checks.update(_checks_failed(e))
            reasons.append({"episode_id": e.episode_id, "final_reward": e.final_reward,
                            "failure_kind": verdicts[e.episode_id], "checks_failed": _checks_failed(e),
                            "n_bad_calls": e.n_bad_calls, "turns": len(e.steps)})
        if not accepted:
            continue
        env_id = group[0].env_id
        if system_prompt is None and env_id not in prompts:
            prompts[env_id] = ds.system_prompt_of(env_id)
        sp = system_prompt if system_prompt is not None else prompts[env_id]
        negatives = [{**reasons[i], "messages": ds.episode_messages(e, system_prompt=sp)}
                     for i, e in enumerate(rejected[:n_hard_negatives])]
        for ep in accepted[:max_per_task]:
            assert ep.verdict is not None
            row = ds.conversation_row(ep, system_prompt=sp, keep_bad_calls=keep_bad_calls)
            row.update(candidates=len(group), accepted=len(accepted), rejected_count=len(rejected),
                       checker_name=ep.verdict.verifier, checker_version=ep.verdict.verifier_version,
                       rejection_reasons=reasons, hard_negatives=negatives, sample_index=ep.sample_index)
            rows.append(row)
    summary.failure_kinds = dict(sorted(kinds.items()))
    summary.checks_failed = dict(sorted(checks.items()))
    return rows, episodes, manifests, summary


def build_rsft_dataset(runs: Sequence[str | Path], out: str | Path, *, min_reward: float = 0.0,
                       splits: Sequence[str] = ("train",), keep_bad_calls: bool = True, n_hard_negatives: int = 2,
                       max_per_task: int | None = None, allow_unverified: bool = False,
                       cfg: GateConfig | None = None) -> tuple[Path, GateReport, list[dict[str, Any]], RSFTSummary]:
    """Gate the RSFT rows of ``runs`` and write the kept rows plus the four manifests into ``out``."""
    cfg = cfg or GateConfig()
    rows, episodes, manifests, summary = rsft_candidates(
        [str(r) for r in runs], min_reward=min_reward, splits=splits, keep_bad_calls=keep_bad_calls,
        n_hard_negatives=n_hard_negatives, max_per_task=max_per_task, allow_unverified=allow_unverified)
    by_id = {e.episode_id: e for e in episodes}
    cands = [Candidate(r["episode_id"], r, by_id.get(r["episode_id"])) for r in rows]
    q = quarantine_for(cfg)
    params = {"min_reward": min_reward, "splits": list(splits), "keep_bad_calls": keep_bad_calls,
              "n_hard_negatives": n_hard_negatives, "max_per_task": max_per_task, "gates": asdict(cfg),
              "rejection_sampling": summary.to_dict()}
    path, report, kept_rows = gate_and_write(cands, default_gates(cfg, q), q, runs=runs, manifests=manifests,
                                             out=out, kind="rsft", params=params,
                                             allow_unverified=allow_unverified, notes=[summary.line()])
    return path, report, kept_rows, summary
