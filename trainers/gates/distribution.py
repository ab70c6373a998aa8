"""distribution@1: histograms, exact and near-duplicate removal, a cap per task kind.

* ``exact_duplicate``: same normalised conversation (system prompt and call ids left out,
  text lower-cased with punctuation dropped, tool arguments as canonical JSON) as a row kept
  before it;
* ``near_duplicate``: word-3-gram Jaccard >= ``near_dup_threshold`` with a kept row (MinHash +
  LSH for candidates, exact Jaccard to confirm);
* ``task_kind_cap``: a task kind already holds ``max_kind_share`` of the rows that passed the
  dedup (at least ``min_cap`` rows each), or ``max_per_kind``. Applied only when the rows have
  two kinds or more. The first rows in input order are the ones kept.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from typing import Any

from rowgym.trainers.gates.base import Candidate, Gate, GateContext, Rejection
from rowgym.trainers.gates.minhash import NearDupIndex, normalize

LENGTH_BUCKETS = (250, 500, 1000, 2000, 4000, 8000)


def histograms(cands: list[Candidate], ctx: GateContext) -> dict[str, dict[str, int]]:
    """Task kind, tool (per call), turns (assistant messages) and length (characters, bucketed)."""
    kind: Counter[str] = Counter()
    tool: Counter[str] = Counter()
    turns: Counter[str] = Counter()
    length: Counter[str] = Counter()
    for c in cands:
        kind[ctx.task_kind(c)] += 1
        n_turns = 0
        for m in c.messages:
            if m.get("role") == "assistant":
                n_turns += 1
                for call in m.get("tool_calls") or []:
                    tool[call["function"]["name"]] += 1
        turns[str(n_turns)] += 1
        n = sum(len(str(m.get("content") or "")) for m in c.messages)
        length[next((f"<{b}" for b in LENGTH_BUCKETS if n < b), f">={LENGTH_BUCKETS[-1]}")] += 1
    order = {f"<{b}": i for i, b in enumerate(LENGTH_BUCKETS)}
    return {"task_kind": dict(sorted(kind.items())), "tool": dict(sorted(tool.items())),
            "turns": dict(sorted(turns.items(), key=lambda kv: int(kv[0]))),
            "length": dict(sorted(length.items(), key=lambda kv: order.get(kv[0], 99)))}


def content_key(c: Candidate) -> str:
    return hashlib.sha256(normalize(c.conversation_text()).encode()).hexdigest()[:24]


class DistributionGate(Gate):
    name = "distribution"
    version = "1"

    def __init__(self, *, near_dup_threshold: float = 0.9, max_kind_share: float = 0.5, min_cap: int = 4,
                 max_per_kind: int | None = None):
        self.near_dup_threshold, self.max_kind_share = near_dup_threshold, max_kind_share
        self.min_cap, self.max_per_kind = min_cap, max_per_kind

    def params(self) -> dict[str, Any]:
        return {"near_dup_threshold": self.near_dup_threshold, "max_kind_share": self.max_kind_share,
                "min_cap": self.min_cap, "max_per_kind": self.max_per_kind, "shingle": "word 3-grams",
                "num_perm": 128, "bands": 16}

    def check(self, cands: list[Candidate], ctx: GateContext) -> list[Rejection]:
        out: list[Rejection] = []
        seen: dict[str, str] = {}
        index = NearDupIndex(self.near_dup_threshold, num_perm=128, bands=16)
        unique = []
        for c in cands:
            key = content_key(c)
            if key in seen:
                out.append(self.reject(c, "exact_duplicate", f"same conversation as {seen[key]}"))
                continue
            text = c.conversation_text()
            hits = index.query(text)
            if hits:
                out.append(self.reject(c, "near_duplicate", f"Jaccard {hits[0][1]:.2f} with {hits[0][0]}"))
                continue
            seen[key] = c.key
            index.add(c.key, text)
            unique.append(c)
        kinds = [ctx.task_kind(c) for c in unique]
        if len(set(kinds)) < 2:
            return out
        cap = max(self.min_cap, math.floor(self.max_kind_share * len(unique)))
        if self.max_per_kind is not None:
            cap = min(cap, self.max_per_kind)
        counts: Counter[str] = Counter()
        total = Counter(kinds)
        for c, k in zip(unique, kinds, strict=True):
            counts[k] += 1
            if counts[k] > cap:
                out.append(self.reject(c, "task_kind_cap", f"kind {k}: {total[k]} of {len(unique)} rows, cap {cap}"))
        return out
