"""What every gate shares: the candidate rows, rejections, the env cache, the report.

A *candidate* is one dataset row a builder would write, with the episode it came from
(SFT rows) or without one (GRPO prompt rows). Each gate looks at the candidates still
alive and returns the rejections it makes, each with a short machine-readable ``reason``
and a human ``detail``; the pipeline (:mod:`rowgym.trainers.gates`) records them all.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import rowgym
from rowgym.errors import RowgymError
from rowgym.registry import spec as env_spec
from rowgym.rows import Episode

N_EXAMPLES = 3
"""Examples kept per (gate, reason) in the rejection report."""


@dataclass
class Candidate:
    """One row a dataset builder wants to write, and what it came from."""

    key: str
    row: dict[str, Any]
    episode: Episode | None = None

    @property
    def env_id(self) -> str:
        return str(self.row.get("env_id") or (self.episode.env_id if self.episode else ""))

    @property
    def seed(self) -> int | None:
        s = self.row.get("seed", self.episode.seed if self.episode else None)
        return None if s is None else int(s)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.row.get("messages") or self.row.get("prompt") or [])

    @property
    def prompt(self) -> str:
        """The first user message: what the model is asked."""
        return next((str(m.get("content") or "") for m in self.messages if m.get("role") == "user"), "")

    @property
    def answer(self) -> str:
        """Everything the assistant says or calls, one call per line (``name arguments``)."""
        out = []
        for m in self.messages:
            if m.get("role") != "assistant":
                continue
            for c in m.get("tool_calls") or []:
                out.append(f"{c['function']['name']} {c['function']['arguments']}")
            if m.get("content"):
                out.append(str(m["content"]))
        return "\n".join(out)

    def conversation_text(self) -> str:
        """All non-system text, roles included (what dedup compares)."""
        parts = []
        for m in self.messages:
            if m.get("role") == "system":
                continue
            parts.append(f"{m.get('role')}: {m.get('content') or ''}")
            for c in m.get("tool_calls") or []:
                parts.append(f"call {c['function']['name']} {_canon_args(c['function']['arguments'])}")
        return "\n".join(parts)


def _canon_args(arguments: Any) -> str:
    try:
        return json.dumps(json.loads(arguments) if isinstance(arguments, str) else arguments, sort_keys=True)
    except (TypeError, ValueError):
        return str(arguments)


@dataclass(frozen=True)
class Rejection:
    """Why one candidate was rejected."""

    gate: str
    reason: str
    key: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"gate": self.gate, "reason": self.reason, "key": self.key, "detail": self.detail[:500]}


class Gate:
    """A named, versioned check over candidates. Subclasses set ``name``/``version`` and :meth:`check`."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def params(self) -> dict[str, Any]:
        return {}

    def check(self, cands: list[Candidate], ctx: GateContext) -> list[Rejection]:
        raise NotImplementedError

    def reject(self, cand: Candidate, reason: str, detail: str) -> Rejection:
        return Rejection(self.id, reason, cand.key, detail)


class GateContext:
    """Environments made on demand (one per id, reset per use) and facts derived from them, cached."""

    def __init__(self) -> None:
        self._envs: dict[str, Any] = {}
        self._first_obs: dict[tuple[str, int], str] = {}
        self._tasks: dict[tuple[str, int], Any] = {}

    def env(self, env_id: str) -> Any:
        if env_id not in self._envs:
            try:
                self._envs[env_id] = rowgym.make(env_id)
            except Exception as e:
                raise RowgymError(f"the gates cannot make {env_id} to check its rows ({type(e).__name__}: {e})") from e
        return self._envs[env_id]

    def task(self, env_id: str, seed: int) -> Any:
        if (env_id, seed) not in self._tasks:
            self._tasks[(env_id, seed)] = self.env(env_id).unwrapped.make_task(seed)
        return self._tasks[(env_id, seed)]

    def first_observation(self, env_id: str, seed: int) -> str:
        if (env_id, seed) not in self._first_obs:
            obs, _ = self.env(env_id).reset(seed=seed)
            self._first_obs[(env_id, seed)] = obs
        return self._first_obs[(env_id, seed)]

    def task_kind(self, cand: Candidate) -> str:
        """The task's kind as its env makes it (``task.kind``), else the env id."""
        if cand.seed is None or not cand.env_id:
            return str(cand.row.get("kind") or cand.env_id or "?")
        try:
            kind = getattr(self.task(cand.env_id, cand.seed), "kind", None)
        except Exception:
            kind = None
        return f"{_short(cand.env_id)}:{kind}" if kind else _short(cand.env_id)

    @staticmethod
    def deterministic(env_id: str) -> bool:
        """Replayable: the tool-API families (a seed fixes the backend; tools are pure functions of it)."""
        try:
            return "toolapi" in env_spec(env_id).tags
        except Exception:
            return False

    def close(self) -> None:
        for env in self._envs.values():
            with contextlib.suppress(Exception):
                env.close()
        self._envs.clear()

    def __enter__(self) -> GateContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _short(env_id: str) -> str:
    return env_id.split("/")[-1]


@dataclass
class GateReport:
    """The rejection report of one dataset build."""

    n_generated: int = 0
    n_kept: int = 0
    gates: list[dict[str, Any]] = field(default_factory=list)
    """Per gate, in order: ``id``, ``params``, ``n_in``, ``n_rejected``, ``reasons`` (reason -> count)."""
    examples: list[dict[str, str]] = field(default_factory=list)
    histograms: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    """``before`` / ``after`` -> histogram name -> bucket -> count."""
    notes: list[str] = field(default_factory=list)

    @property
    def effective_sample_rate(self) -> float:
        return self.n_kept / self.n_generated if self.n_generated else 0.0

    def reason_counts(self) -> Counter[tuple[str, str]]:
        return Counter({(g["id"], r): n for g in self.gates for r, n in g["reasons"].items()})

    def to_dict(self) -> dict[str, Any]:
        return {"n_generated": self.n_generated, "n_kept": self.n_kept,
                "effective_sample_rate": round(self.effective_sample_rate, 4), "gates": self.gates,
                "examples": self.examples, "histograms": self.histograms, "notes": self.notes}

    def summary_lines(self) -> list[str]:
        lines = [f"gates: kept {self.n_kept} of {self.n_generated} generated rows "
                 f"(effective sample rate {self.effective_sample_rate:.3f})"]
        for g in self.gates:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(g["reasons"].items())) or "none"
            lines.append(f"  {g['id']}: rejected {g['n_rejected']} of {g['n_in']} ({reasons})")
        return lines
