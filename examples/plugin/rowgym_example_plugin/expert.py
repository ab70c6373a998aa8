"""The plugin's own scripted expert: binary search driven by the observations only."""

from rowgym.agents.base import Agent, AgentTurn
from rowgym.rows import Action


class BisectExpert(Agent):
    name = "expert"

    async def reset(self, env, obs, info) -> None:
        self.lo, self.hi = 1, env.task.high
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
