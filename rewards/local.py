"""The standard local (per-step) reward functions shared by environment families."""

from rowgym.rewards.base import LocalReward, Rubric, StepOutcome


def _valid(o: StepOutcome) -> float:
    return 0.0 if o.bad_call else 0.02


def _bad(o: StepOutcome) -> float:
    return -0.1 if o.bad_call else 0.0


def _subgoal(o: StepOutcome) -> float:
    return 0.0 if o.bad_call else o.signals.get("subgoal", 0.0)


VALID_CALL = LocalReward("valid_call", "1", _valid, "+0.02 for a well-formed, successful tool call.")
BAD_CALL_PENALTY = LocalReward("bad_call_penalty", "1", _bad, "-0.1 for a malformed or failed call.")
SUBGOAL_PROGRESS = LocalReward("subgoal_progress", "1", _subgoal,
                               "The share of the task's plan this call completed (signal 'subgoal').",
                               signals=("subgoal",))

DEFAULT_LOCAL = Rubric([(VALID_CALL, 1.0), (BAD_CALL_PENALTY, 1.0), (SUBGOAL_PROGRESS, 0.5)])
