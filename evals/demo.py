"""A demo agent with an intermediate success rate, to exercise reports (CIs, pass@k vs pass^k).

>>> from rowgym.evals.demo import FlakyExpert
>>> FlakyExpert(skill=0.9).policy_info().agent
'flaky-expert'

Use it as ``--agent rowgym.evals.demo:FlakyExpert,skill=0.85``. It is the gold-plan
expert that, independently at each gold step, slips with probability ``1 - skill``
and skips that step; so long plans fail more often than short ones and repeated
attempts of one task differ (its random stream is not reset per episode). It is a
stand-in for a learned policy in demos and tests, not a baseline.
"""

from __future__ import annotations

import random

from rowgym.agents.experts import GoldPlanExpert
from rowgym.contract import EpisodeContext
from rowgym.rows import PolicyInfo


class FlakyExpert(GoldPlanExpert):
    name = "flaky-expert"

    def __init__(self, skill: float = 0.85, noise: float = 0.0, seed: int = 0):
        super().__init__(noise=noise, seed=seed)
        self.skill = skill
        self._slips = random.Random(f"flaky:{seed}")

    def policy_info(self) -> PolicyInfo:
        return PolicyInfo(agent=self.name, model="scripted", sampling={"skill": self.skill, "noise": self.noise})

    async def reset(self, ctx: EpisodeContext) -> None:
        await super().reset(ctx)
        self._plan = [c for c in self._plan if self._slips.random() < self.skill]
