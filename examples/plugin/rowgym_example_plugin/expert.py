"""The plugin's own scripted expert: binary search driven by the observations only."""

import re

from rowgym.contract import Agent, AgentTurn, EpisodeContext
from rowgym.rows import Action


class BisectExpert(Agent):
    name = "expert"

    async def reset(self, ctx: EpisodeContext) -> None:
        # not privileged: the range comes from the first observation, as a policy would read it
        self.lo, self.hi = 1, int(re.search(r"between 1 and (\d+)", ctx.observation).group(1))
        self.last: int | None = None

    async def act(self, obs: str) -> AgentTurn:
        if self.last is not None:
            if obs == "correct":
                return AgentTurn(Action.call("answer", number=self.last))
            if obs == "higher":
                self.lo = self.last + 1
            elif obs == "lower":
                self.hi = self.last - 1
        self.last = (self.lo + self.hi) // 2
        return AgentTurn(Action.call("guess", number=self.last))
