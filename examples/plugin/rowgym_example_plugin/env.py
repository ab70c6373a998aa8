"""Guess the secret number: the smallest complete rowgym environment.

>>> import rowgym
>>> env = rowgym.make("rowgym-example/GuessNumber-v0")
>>> obs, info = env.reset(seed=0)
>>> obs, reward, terminated, truncated, info = env.step({"name": "guess", "arguments": {"number": 50}})
>>> obs in {"higher", "lower", "correct"}
True
"""

from pydantic import BaseModel, Field

from rowgym.env import RowEnv
from rowgym.rows import Check, Verdict
from rowgym.splits import HashSplits, ListSplits
from rowgym.tools import ToolArgs, tool

# The task space is small, so seeds enumerate it (seed i is task i) and each *task* gets a
# split; hashing seeds instead would put the same task in train and heldout.
TASKS = [(high, secret) for high in (50, 100, 200) for secret in range(1, high + 1)]
_by_hash = HashSplits("example-guess-number")
SPLITS = ListSplits([_by_hash.split_of(i) for i in range(len(TASKS))])


class Task(BaseModel):
    secret: int
    high: int
    instruction: str


class GuessArgs(ToolArgs):
    number: int = Field(description="Your guess.")


class AnswerArgs(ToolArgs):
    number: int = Field(description="The secret number.")


class GuessNumberEnv(RowEnv[Task]):
    family = "example-guess-number"
    version = "1"  # 1: the instruction names the game (0: tasks of a range looked alike)
    verifier = "exact_secret"
    default_max_turns = 12
    splits = SPLITS

    def make_task(self, seed: int) -> Task:
        index = self.splits.task_index(seed)
        high, secret = TASKS[index]
        # The game's number tells the tasks apart (never the secret): the held-out guard compares a stored
        # episode's first observation with its seed's, and `rowgym check` fails tasks of different splits
        # that show the same one (a held-out game could be relabelled as a train game unseen).
        return Task(secret=secret, high=high,
                    instruction=f"Game {index}: I picked a whole number between 1 and {high}. Find it.")

    async def setup(self, task: Task) -> str:
        self.answered: int | None = None
        return task.instruction + " Call guess(number) for a hint, then answer(number)."

    @tool
    async def guess(self, args: GuessArgs) -> str:
        """Guess the number; the reply is 'higher', 'lower' or 'correct'."""
        s = self.task.secret
        return "correct" if args.number == s else ("higher" if args.number < s else "lower")

    @tool(terminal=True)
    async def answer(self, args: AnswerArgs) -> str:
        """Give your final answer; ends the episode."""
        self.answered = args.number
        return "Answer recorded."

    async def grade(self) -> Verdict:
        ok = self.answered == self.task.secret
        return self.verdict([Check(name="answer_is_secret", passed=ok, detail=f"answered {self.answered}")])
