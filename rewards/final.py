"""Named, versioned final (per-episode) rewards: the episode-level twin of ``LocalReward``.

>>> from rowgym.rewards.final import FinalRubric, VERIFIER, BAD_CALL_RATE
>>> rubric = FinalRubric([(VERIFIER, 1.0), (BAD_CALL_RATE, -0.5)])
>>> rubric.keys()
['verifier@1', 'bad_call_rate@1']

An environment's verifier computes the verdict while the episode runs (it needs the
live backend); a :class:`FinalReward` only *reads* a finished :class:`Episode`, so
stored episodes can be re-scored, and a trainer can hand each term to TRL as one
reward function (TRL logs each by name) while the row keeps ``name@version``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rowgym.rows import Episode


@dataclass(frozen=True)
class FinalReward:
    """A per-episode reward function with a name and a version."""

    name: str
    version: str
    fn: Callable[[Episode], float]
    doc: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def __call__(self, episode: Episode) -> float:
        return float(self.fn(episode))


class FinalRubric:
    """A weighted sum of final reward functions."""

    def __init__(self, terms: Sequence[tuple[FinalReward, float]]):
        self.terms = tuple(terms)

    def keys(self) -> list[str]:
        return [fn.key for fn, _ in self.terms]

    def score(self, episode: Episode) -> tuple[float, dict[str, float]]:
        """Total final reward of an episode and its breakdown by ``name@version``."""
        breakdown = {fn.key: round(w * fn(episode), 6) for fn, w in self.terms}
        return round(sum(breakdown.values()), 6), breakdown

    def versions(self) -> dict[str, str]:
        return {fn.name: fn.version for fn, _ in self.terms}


def _bad_rate(ep: Episode) -> float:
    return ep.n_bad_calls / len(ep.steps) if ep.steps else 0.0


VERIFIER = FinalReward("verifier", "1", lambda ep: ep.final_reward,
                       "The environment verifier's reward (Verdict.reward; 0 without a verdict).")
SUCCESS = FinalReward("success", "1", lambda ep: float(ep.success),
                      "1 if the verifier said success and nothing failed, else 0.")
LOCAL_RETURN = FinalReward("local_return", "1", lambda ep: ep.local_return,
                           "The sum of the episode's local (per-step) rewards.")
BAD_CALL_RATE = FinalReward("bad_call_rate", "1", _bad_rate, "Share of the episode's steps that were bad calls.")
