"""Named, versioned reward functions composed with weights.

>>> from rowgym.rewards.base import StepOutcome, Rubric
>>> from rowgym.rewards.local import BAD_CALL_PENALTY, VALID_CALL
>>> rubric = Rubric([(VALID_CALL, 1.0), (BAD_CALL_PENALTY, 1.0)])
>>> rubric.score(StepOutcome(bad_call=True))
(-0.1, {'valid_call@1': 0.0, 'bad_call_penalty@1': -0.1})

A *local* reward scores one step from a :class:`StepOutcome`; a *final* reward is an
environment's verifier (it returns a :class:`rowgym.rows.Verdict`). Every row stores
the breakdown keyed ``name@version`` so a change to a reward function never mixes
silently with data scored by the old one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class StepOutcome:
    """What a local reward function may look at: the facts of one step.

    ``signals`` are numbers an environment reports while executing a tool, such as
    ``{"subgoal": 0.25}`` when a call completes a quarter of the task's plan.
    """

    bad_call: bool = False
    error_kind: str | None = None
    tool: str | None = None
    repaired: bool = False
    signals: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class LocalReward:
    """A per-step reward function with a name and a version."""

    name: str
    version: str
    fn: Callable[[StepOutcome], float]
    doc: str = ""
    signals: tuple[str, ...] = ()
    """Names of the env signals ``fn`` reads (``env.signal(name, value)`` refuses any other name)."""

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def __call__(self, outcome: StepOutcome) -> float:
        return float(self.fn(outcome))


class Rubric:
    """A weighted sum of local reward functions."""

    def __init__(self, terms: Sequence[tuple[LocalReward, float]]):
        self.terms = tuple(terms)

    @property
    def terms(self) -> tuple[tuple[LocalReward, float], ...]:
        return self._terms

    @terms.setter
    def terms(self, terms: Sequence[tuple[LocalReward, float]]) -> None:
        self._terms = tuple(terms)
        self._scorers: tuple[tuple[str, Callable[[StepOutcome], float] | None, LocalReward, float], ...] | None = None
        self._signals: frozenset[str] | None = None

    def score(self, outcome: StepOutcome) -> tuple[float, dict[str, float]]:
        """Total local reward of a step and its breakdown by ``name@version``."""
        scorers = self._scorers
        if scorers is None:
            # scored every env step: each term's key and plain function are looked up once, on the first step
            # (a LocalReward is frozen; a subclass that overrides ``__call__`` is still called as itself)
            scorers = self._scorers = tuple(
                (fn.key, fn.fn if isinstance(fn, LocalReward) and type(fn).__call__ is LocalReward.__call__ else None,
                 fn, w) for fn, w in self._terms)
        breakdown = {key: round(w * (float(f(outcome)) if f is not None else fn(outcome)), 6)
                     for key, f, fn, w in scorers}
        return round(sum(breakdown.values()), 6), breakdown

    @property
    def signals(self) -> frozenset[str]:
        """Every signal name some term of the rubric reads."""
        if self._signals is None:
            self._signals = frozenset(s for fn, _ in self._terms for s in fn.signals)
        return self._signals

    def versions(self) -> dict[str, str]:
        return {fn.name: fn.version for fn, _ in self.terms}
