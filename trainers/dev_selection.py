"""Checkpoint choice on **dev** seeds: score the model every few optimizer steps, keep the best.

Training loss says nothing about held-out success late in a run (a tiny model can memorise
its data and drift); held-out seeds may never steer a choice. So the choice is made on the
env's ``dev`` split, disjoint from train and held-out (:mod:`rowgym.splits`):

>>> sel = DevSelection(lambda model: {"success_rate": 0.5}, every=100)
>>> sel.every, sel.history
(100, [])

With TRL/transformers it is a ``TrainerCallback``: pass it in ``callbacks`` (e.g.
``train_sft(..., callbacks=[sel])``). At every ``every``-th step and at the end it calls
``score(model)``; when training ends the model holds the weights of the best-scoring step
(ties go to the later step: more training at the same dev score). ``history`` keeps
``(step, score)`` of every check and ``best_step`` the step chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback


class DevSelection(TrainerCallback):
    """Keep the weights of the step with the best dev score (``score(model) -> {"success_rate": …, …}``)."""

    def __init__(self, score: Callable[[Any], dict[str, float]], *, every: int, key: str = "success_rate",
                 on_check: Callable[[int, dict[str, float]], None] | None = None):
        self.score, self.every, self.key, self.on_check = score, every, key, on_check
        self.history: list[dict[str, Any]] = []
        self.best_step: int | None = None
        self._best: tuple[float, dict[str, Any]] | None = None

    def check(self, model: Any, step: int) -> float:
        """Score ``model`` now and keep a copy of its weights if it is the best so far."""
        result = self.score(model)
        value = float(result[self.key])
        self.history.append({"step": step, **result})
        if self.on_check is not None:  # progress: SFT itself prints nothing while it runs
            self.on_check(step, result)
        if self._best is None or value >= self._best[0]:
            self._best = (value, {k: v.detach().clone() for k, v in model.state_dict().items()})
            self.best_step = step
        return value

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        if self.every and state.global_step % self.every == 0 and state.global_step < state.max_steps:
            self.check(model, state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        if not self.history or self.history[-1]["step"] != state.global_step:
            self.check(model, state.global_step)
        self.restore(model)

    def restore(self, model: Any) -> None:
        """Load the best weights into ``model``."""
        if self._best is not None:
            model.load_state_dict(self._best[1])
