"""What an env says about a seed, re-derived from the env itself: its split, task hash, instruction, first observation.

Stored rows carry labels (seed, split, task hash) that anyone can edit; :class:`TaskOracle`
answers from the env instead, so the held-out guard of the trainers
(:mod:`rowgym.trainers.datasets`) and the bench's contamination check
(:mod:`rowgym.evals.contamination`) can compare a row's *content* with the task of the seed
it claims.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import rowgym
from rowgym.env import RowEnv
from rowgym.errors import HeldOutLeakError, TamperedDataError
from rowgym.rows import Split
from rowgym.splits import content_hash
from rowgym.tools import clean_text

__all__ = ["TaskFacts", "TaskOracle", "snippet"]


@dataclass(frozen=True)
class TaskFacts:
    """What an env says about one seed: its split, the content hash of its task and its instruction."""

    split: Split
    task_hash: str
    instruction: str = ""
    """The task as the agent is told it (``env.instruction``, clean text); "" when the env has none."""


def _reset_is_cheap(env: Any) -> bool:
    """Whether a reset of ``env`` builds only in-process state (:attr:`rowgym.env.RowEnv.cheap_reset`), so whole
    first observations can be compared.

    Tool-API envs build a small SQLite database (0.5-30 ms a seed); a shop reset opens a
    browser page on a live server and a repo-patch reset fills a sandbox (seconds), which a
    guard run on every training load cannot afford: for those the instruction stands in.
    """
    return bool(getattr(getattr(env, "unwrapped", env), "cheap_reset", False))


class TaskOracle:
    """Re-derives split, task hash and task content of (env id, env kwargs, seed) from the env itself, cached.

    The held-out guard asks this, never the ``split`` / ``task_hash`` fields of a row, which
    anyone can edit. One env instance per (env id, kwargs) is made lazily and closed by
    :meth:`close`; each seed's task is made at most once, and reset at most once.
    """

    def __init__(self) -> None:
        self._envs: dict[str, Any] = {}
        self._facts: dict[tuple[str, int], TaskFacts] = {}
        self._first: dict[tuple[str, int], str] = {}

    def _env(self, env_id: str, env_kwargs: dict[str, Any] | None) -> tuple[str, Any]:
        key = json.dumps([env_id, env_kwargs or {}], sort_keys=True, default=str)
        if key not in self._envs:
            try:
                self._envs[key] = rowgym.make(env_id, **(env_kwargs or {}))
            except Exception as e:  # an env we cannot make is an env we cannot check
                raise HeldOutLeakError(
                    f"cannot check the split of {env_id} episodes: the environment cannot be made "
                    f"({type(e).__name__}: {e}); install it, or leave these episodes out") from None
        return key, self._envs[key]

    def facts(self, env_id: str, seed: int, env_kwargs: dict[str, Any] | None = None) -> TaskFacts:
        key, env = self._env(env_id, env_kwargs)
        if (key, seed) not in self._facts:
            try:
                self._facts[(key, seed)] = _task_facts(env, seed)
            except Exception as e:
                raise TamperedDataError(f"{env_id} has no task for seed {seed!r} ({type(e).__name__}: {e}); "
                                        f"the stored episode is not from this env") from None
        return self._facts[(key, seed)]

    def first_observation(self, env_id: str, seed: int, env_kwargs: dict[str, Any] | None = None) -> str:
        """The observation a reset of ``env_id`` on ``seed`` returns, as stored (clean text)."""
        key, env = self._env(env_id, env_kwargs)
        if (key, seed) not in self._first:
            try:
                self._first[(key, seed)] = clean_text(env.reset(seed=seed)[0])
            except Exception as e:
                raise HeldOutLeakError(f"cannot check the content of {env_id} seed {seed}: its reset failed "
                                       f"({type(e).__name__}: {e}); leave these episodes out") from None
        return self._first[(key, seed)]

    def content_problem(self, env_id: str, seed: int, first_observation: str,
                        env_kwargs: dict[str, Any] | None = None) -> str | None:
        """Why ``first_observation`` (stored) is not how ``env_id`` seed ``seed`` starts, or None when it is.

        The labels of a row (seed, split, task hash) can all be rewritten to a train seed's;
        its content cannot be made a train task's without ceasing to be the held-out one. Where a
        reset is cheap (:func:`_reset_is_cheap`), the whole first observation must
        equal the reset's, so nothing can be added to it either; elsewhere it must contain the
        seed's instruction (made from the task alone, no reset; instructions are unique per task
        hash in the built-in envs), and an env without instructions is reset.
        """
        facts = self.facts(env_id, seed, env_kwargs)
        if not facts.instruction or _reset_is_cheap(self._env(env_id, env_kwargs)[1]):
            if first_observation == self.first_observation(env_id, seed, env_kwargs):
                return None
            return (f"its first observation ({snippet(first_observation)}) is not the one {env_id} seed {seed} "
                    f"starts with")
        if facts.instruction in first_observation:
            return None
        return (f"its first observation ({snippet(first_observation)}) does not contain the instruction of "
                f"{env_id} seed {seed} ({snippet(facts.instruction)})")

    def close(self) -> None:
        for env in self._envs.values():
            with contextlib.suppress(Exception):
                env.close()
        self._envs.clear()

    def __enter__(self) -> TaskOracle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _task_facts(env: Any, seed: int) -> TaskFacts:
    """Split, task hash and instruction of ``seed``, the task made once (a RowEnv's hash is of its task)."""
    u = getattr(env, "unwrapped", env)
    if isinstance(u, RowEnv) and type(u).task_hash is RowEnv.task_hash:
        task = u.make_task(seed)
        return TaskFacts(env.splits.split_of(seed), content_hash(u.task_content(task)),
                         clean_text(str(u.instruction(task) or "")))
    return TaskFacts(env.splits.split_of(seed), env.task_hash(seed))  # e.g. a remote env: no task here


def snippet(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= n else text[:n] + "...")
