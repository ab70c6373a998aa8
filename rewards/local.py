"""The standard local (per-step) reward functions shared by environment families.

>>> from rowgym.rewards.base import StepOutcome
>>> VALID_CALL(StepOutcome()), VALID_CALL_V2(StepOutcome()), VALID_CALL_V2(StepOutcome(signals={"first_success": 1.0}))
(0.02, 0.0, 0.02)

``valid_call@1`` pays every successful call, so an episode padded with calls (or one that
never attempts the task and only reads) earns more than a short one: a policy trained on it
learns to stall. ``valid_call@2`` pays only what the env marks as a *first success*: the
first time a (tool, canonical arguments) pair succeeds in the episode, and at most as many
calls as the env allows (:class:`FirstSuccessCap`: the tool-API envs' cap is the gold plan's
distinct calls, RepoPatch and Shop have their own). Every built-in env reports the signal now; ``valid_call@1`` stays importable so
stored rows keyed ``valid_call@1`` stay explainable, and ``DEFAULT_LOCAL`` (a plugin env's default,
which reports no ``first_success``) still uses it.
"""

import json
from collections.abc import Hashable, Iterable
from typing import Any

from rowgym.rewards.base import LocalReward, Rubric, StepOutcome

VALID_CALL_REWARD = 0.02


def _valid(o: StepOutcome) -> float:
    return 0.0 if o.bad_call else VALID_CALL_REWARD


def _first_valid(o: StepOutcome) -> float:
    return 0.0 if o.bad_call else VALID_CALL_REWARD * min(1.0, max(0.0, o.signals.get("first_success", 0.0)))


def _bad(o: StepOutcome) -> float:
    return -0.1 if o.bad_call else 0.0


def _subgoal(o: StepOutcome) -> float:
    return 0.0 if o.bad_call else o.signals.get("subgoal", 0.0)


VALID_CALL = LocalReward("valid_call", "1", _valid, "+0.02 for a well-formed, successful tool call.")
VALID_CALL_V2 = LocalReward(
    "valid_call", "2", _first_valid,
    "+0.02 for a successful tool call whose (tool, canonical arguments) pair has not succeeded before in the "
    "episode, for at most as many calls as the gold plan has distinct calls (signal 'first_success').",
    signals=("first_success",))
BAD_CALL_PENALTY = LocalReward("bad_call_penalty", "1", _bad, "-0.1 for a malformed or failed call.")
SUBGOAL_PROGRESS = LocalReward("subgoal_progress", "1", _subgoal,
                               "The share of the task's plan this call completed (signal 'subgoal').",
                               signals=("subgoal",))

SUBGOAL_PROGRESS_V2 = LocalReward(
    "subgoal_progress", "2", _subgoal,
    "The share of the task's plan this call completed (signal 'subgoal'); the call that ends the episode "
    "(finish) counts only once every other step of the plan is done, so giving up is never paid as progress.",
    signals=("subgoal",))

DEFAULT_LOCAL = Rubric([(VALID_CALL, 1.0), (BAD_CALL_PENALTY, 1.0), (SUBGOAL_PROGRESS, 0.5)])
"""The rubric of envs that report no ``first_success`` signal (``valid_call@1``: every valid call pays)."""

TOOLAPI_LOCAL = Rubric([(VALID_CALL_V2, 1.0), (BAD_CALL_PENALTY, 1.0), (SUBGOAL_PROGRESS_V2, 0.5)])
"""The tool-API envs' rubric: ``valid_call@2`` (first successes only, capped) and ``subgoal_progress@2``
(``finish`` counts as progress only as the plan's last step: calling it at once paid 0.1-0.27)."""


def call_key(name: str, arguments: Any) -> tuple[str, str]:
    """A call's identity for ``valid_call@2``: the tool and its (validated) arguments as sorted JSON.

    >>> call_key("get", {"b": 1, "a": 2}) == call_key("get", {"a": 2, "b": 1})
    True
    """
    return name, json.dumps(arguments, sort_keys=True)


def distinct_calls(calls: Iterable[Any]) -> set[tuple[str, str]]:
    """The distinct calls of a plan of tool calls (``name`` and ``arguments`` as a JSON string each)."""
    return {call_key(c.name, json.loads(c.arguments or "{}")) for c in calls}


class FirstSuccessCap:
    """Which successful calls of an episode ``valid_call@2`` pays (the ``first_success`` signal).

    A call's ``key`` (any hashable: :func:`call_key`, and whatever else makes two calls the same,
    e.g. the page they were made on) pays the first time it succeeds in the episode, and the
    episode pays at most ``cap`` calls. The tool-API envs' cap is their task's gold plan's distinct
    calls (so the gold plan earns what ``valid_call@1`` paid it, and neither repeating a call nor
    padding with other valid calls earns more); Shop and RepoPatch have a fixed, documented one.

    >>> fs = FirstSuccessCap(2)
    >>> [fs.pays(("read", "a")), fs.pays(("read", "a")), fs.pays(("read", "b")), fs.pays(("read", "c"))]
    [True, False, True, False]
    """

    def __init__(self, cap: int):
        self.cap = max(0, int(cap))
        self.seen: set = set()
        self.paid = 0

    def pays(self, key: Hashable) -> bool:
        """Record a successful call; whether it is a first success within the cap."""
        if key in self.seen:
            return False
        self.seen.add(key)
        if self.paid >= self.cap:
            return False
        self.paid += 1
        return True

    def report(self, env: Any, key: Hashable) -> None:
        """Record a call that just succeeded and signal ``first_success`` on ``env`` if it pays (and the env's
        rubric reads the signal). Call it as a tool's last step, after anything that may raise: a call that
        fails after it would use up its first success without being paid."""
        if self.pays(key) and "first_success" in env.local_rubric.signals:
            env.signal("first_success", 1.0)

    def report_call(self, env: Any, name: str, args: Any) -> None:
        """:meth:`report` for a tool call, keyed by :func:`call_key` of its validated arguments (a ``ToolArgs``)."""
        self.report(env, call_key(name, args.model_dump(mode="json")))
