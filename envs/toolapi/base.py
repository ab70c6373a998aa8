"""Shared machinery of the tool-API family: a SQLite backend per episode, gold plans, grading.

>>> from rowgym.envs.toolapi.retail import RetailEnv
>>> env = RetailEnv()
>>> obs, info = env.reset(seed=3)
>>> for call in env.task.gold:                        # the gold plan solves the task
...     obs, reward, terminated, truncated, info = env.step(call)
>>> terminated, info["verdict"].reward
(True, 1.0)

A domain subclass provides ``build_world(rng)`` (the rows of its database),
``schema`` (its ``CREATE TABLE`` statements), ``make_task(seed)`` (an instruction, a
gold tool-call plan and, for questions, the required answer) and its ``@tool``
methods, which read and write ``self.db``.

Grading (tau-bench's idea, our code): replay the gold plan on a fresh database built
from the same seed, and compare the two final database states row for row; when the
task asks a question, the answer given to ``finish`` must match too. The state
comparison never looks at anything the agent wrote in text.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import sqlite3
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from rowgym.env import RowEnv
from rowgym.rewards.local import TOOLAPI_LOCAL, FirstSuccessCap, distinct_calls
from rowgym.rows import Check, ToolCall, Verdict
from rowgym.tools import ToolArgs, ToolError, parse_action, tool


class ToolAPITask(BaseModel):
    """One task: what the user asks, the gold plan that does it, and the answer if it is a question."""

    model_config = ConfigDict(extra="forbid")

    domain: str
    kind: str
    seed: int
    instruction: str
    gold: list[ToolCall]
    answer: str | None = None
    facts: dict[str, Any] = Field(default_factory=dict, description="Values the expert's noise uses.")


class FinishArgs(ToolArgs):
    answer: str = Field("", description="The answer to the user's question, or a short summary if none was asked.")


MAX_EXPRESSION_CHARS = 1000


class CalculateArgs(ToolArgs):
    expression: str = Field(description="An arithmetic expression with numbers, + - * / and parentheses.")


def fresh_id(draw: Callable[[], str], taken: set[str]) -> str:
    """A primary key not in ``taken`` (then added): ``draw()`` is called again only on a repeat.

    Worlds draw ids at random; a repeat (Airline's payment ids: seeds 9480, 18353, 20682, ...; Retail's
    order ids: seed 10127) used to fail the world's INSERT and crash whoever listed or reset that seed.
    Redrawing only on a repeat leaves every other seed's world, and so every task, as it was.
    """
    value = draw()
    while value in taken:
        value = draw()
    taken.add(value)
    return value


def call(name: str, **args: Any) -> ToolCall:
    """A gold-plan tool call with canonical (sorted) JSON arguments."""
    return ToolCall(name=name, arguments=json.dumps(args, sort_keys=True))


def answers_match(given: str, expected: str) -> bool:
    """Numbers match within a cent; text matches case- and whitespace-insensitively."""
    g, e = given.strip().lower().replace("$", "").replace(",", ""), expected.strip().lower()
    try:
        return abs(float(g) - float(e.replace("$", "").replace(",", ""))) < 0.01
    except ValueError:
        return " ".join(g.split()) == " ".join(e.split())


def take_gold_step(gold_left: list[ToolCall], name: str, arguments: dict[str, Any]) -> bool:
    """Remove the first unmatched step of the gold plan equal to this successful call; whether there was one.

    ``finish`` ends the episode, so it matches only as the last step left (``subgoal_progress@2``): matched
    before the task was done, it paid for giving up (0.1-0.27 of a return, a red-team finding)."""
    for i, g in enumerate(gold_left):
        if g.name == name and json.loads(g.arguments) == arguments:
            if name == "finish" and len(gold_left) > 1:
                return False
            del gold_left[i]
            return True
    return False


class ToolAPIEnv(RowEnv[ToolAPITask]):
    """Base of the tool-API domains; subclasses set ``family``, ``schema`` and their tools."""

    verifier = "db_state_match"
    verifier_version = "1"
    default_max_turns = 20
    local_rubric = TOOLAPI_LOCAL  # valid_call@2: first successes only, capped at the gold plan's size
    cheap_reset = True  # a reset builds a small SQLite database in process
    schema: ClassVar[str]

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.db: sqlite3.Connection | None = None
        self.answer: str | None = None
        self._gold_left: list[ToolCall] = []
        self._firsts = FirstSuccessCap(0)

    # ------------------------------------------------------------- domain hooks
    @abstractmethod
    def build_world(self, rng: random.Random) -> dict[str, list[tuple]]:
        """Rows for each table, from a seeded RNG (pure function of the seed)."""

    def world_rng(self, seed: int) -> random.Random:
        return random.Random(f"{self.family}:{seed}")

    # -------------------------------------------------------------- env hooks
    def _new_db(self, seed: int) -> sqlite3.Connection:
        """A fresh in-memory database for ``seed`` (built once per seed, then copied)."""
        db = sqlite3.connect(":memory:")
        db.deserialize(_world_image(type(self), seed))
        return db

    def _build_db(self, seed: int) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:")
        db.executescript(self.schema)
        for table, rows in self.build_world(self.world_rng(seed)).items():
            if rows:
                marks = ",".join("?" * len(rows[0]))
                db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        db.commit()
        return db

    async def setup(self, task: ToolAPITask) -> str:
        self.db = self._new_db(task.seed)
        self.answer = None
        self._gold_left = list(task.gold)
        self._firsts = FirstSuccessCap(len(distinct_calls(task.gold)))  # the gold plan earns what @1 paid
        return f"{task.instruction}\n\nUse the tools to help the user. When done, call finish (with the answer if one was asked)."

    async def teardown(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    async def grade(self) -> Verdict:
        assert self.task is not None and self.db is not None
        expected = await self.gold_state(self.task)
        got = state_digest(self.db, self.tables())
        checks = [Check(name="db_state_matches", passed=got == expected,
                        detail="" if got == expected else "the database differs from the gold plan's result")]
        if self.task.answer is not None:
            ok = self.answer is not None and answers_match(self.answer, self.task.answer)
            checks.append(Check(name="answer_matches", passed=ok, detail=f"given {self.answer!r}"))
        if self.answer is None:
            checks.append(Check(name="finished", passed=False, detail="the agent never called finish"))
        return self.verdict(checks)

    async def gold_state(self, task: ToolAPITask) -> str:
        """Digest of the database after replaying the gold plan on a fresh copy (cached per task)."""
        key = (type(self), task.model_dump_json())
        if key not in _GOLD_STATES:
            if len(_GOLD_STATES) > 4096:
                _GOLD_STATES.clear()
            _GOLD_STATES[key] = await self._replay_gold(task)
        return _GOLD_STATES[key]

    async def _replay_gold(self, task: ToolAPITask) -> str:
        shadow = type(self)()
        shadow.db, shadow.task, shadow._gold_left = shadow._new_db(task.seed), task, []
        try:
            for c in task.gold:
                parsed = parse_action(c, shadow._tools)
                if not hasattr(parsed, "tool"):
                    raise RuntimeError(f"gold call {c} of {self.family} seed {task.seed} is malformed: {parsed}")
                await parsed.tool.fn(shadow, parsed.args)
            return state_digest(shadow.db, self.tables())
        finally:
            shadow.db.close()

    def tables(self) -> list[str]:
        assert self.db is not None
        return [r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]

    # ------------------------------------------------------ helpers for tools
    def progress(self, name: str, args: ToolArgs) -> None:
        """Every tool's last step on success: signal ``first_success`` (``valid_call@2``) for a call
        not made before, and subgoal progress when it matches an unmatched step of the gold plan."""
        self._firsts.report_call(self, name, args)
        if take_gold_step(self._gold_left, name, json.loads(call(name, **args.model_dump()).arguments)):
            self.signal("subgoal", 1.0 / max(1, len(self.task.gold)))

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        assert self.db is not None
        self.db.row_factory = sqlite3.Row
        return self.db.execute(sql, params).fetchall()

    def one(self, sql: str, *params: Any, missing: str) -> sqlite3.Row:
        rows = self.query(sql, *params)
        if not rows:
            raise ToolError(missing)
        return rows[0]

    def write(self, sql: str, *params: Any) -> None:
        assert self.db is not None
        self.db.execute(sql, params)
        self.db.commit()

    # ----------------------------------------------------------- shared tools
    @tool
    async def calculate(self, args: CalculateArgs) -> str:
        """Evaluate an arithmetic expression and return the result rounded to 2 decimals."""
        expr = args.expression
        if not expr or "**" in expr or any(ch not in "0123456789.+-*/() " for ch in expr):
            raise ToolError("only numbers, + - * / and parentheses are allowed")
        if len(expr) > MAX_EXPRESSION_CHARS:
            raise ToolError(f"the expression is too long ({len(expr):,} characters; at most {MAX_EXPRESSION_CHARS})")
        try:
            value = eval(compile(expr, "<calc>", "eval", dont_inherit=True), {"__builtins__": {}}, {})  # noqa: S307
            result = f"{round(float(value), 2):.2f}"
        except Exception as e:  # SyntaxError, ZeroDivisionError, RecursionError, MemoryError, OverflowError ...
            raise ToolError(f"cannot evaluate {expr!r}: {type(e).__name__}") from None
        self.progress("calculate", args)
        return result

    @tool(terminal=True)
    async def finish(self, args: FinishArgs) -> str:
        """End the conversation. Give the answer to the user's question, if they asked one."""
        self.answer = args.answer
        self.progress("finish", args)
        return "Conversation ended."


_GOLD_STATES: dict[tuple[type, str], str] = {}


@functools.lru_cache(maxsize=1024)
def _world_image(cls: type[ToolAPIEnv], seed: int) -> bytes:
    """The serialized database of a seed's world: building it is the slow part of a reset."""
    db = cls()._build_db(seed)
    try:
        return db.serialize()
    finally:
        db.close()


def state_digest(db: sqlite3.Connection, tables: list[str]) -> str:
    """A hash of every row of every table, independent of insertion order.

    Each row is written as a JSON array by orjson: self-delimiting, 1, 1.0 and "1" stay distinct,
    and a BLOB is an object holding its hex, which no text value can equal. Grading digests the
    whole database once per episode, and ``json.dumps`` per row was about a third of a Retail
    episode's time (625 us of ~1.7 ms for ~180 rows; orjson: 215 us). Only digests made by this
    function are ever compared (the gold state's is made in the same process, see
    :meth:`ToolAPIEnv.gold_state`).
    """
    h = hashlib.sha256()
    db.row_factory = None
    for t in tables:
        rows = sorted(orjson.dumps(r, default=_blob) for r in db.execute(f"SELECT * FROM {t}"))
        h.update(t.encode())
        for r in rows:
            h.update(r)
    return h.hexdigest()


def _blob(value: Any) -> dict[str, str]:
    if isinstance(value, bytes):
        return {"blob": value.hex()}
    raise TypeError(f"a database value of type {type(value).__name__}")


def dumps(obj: Any) -> str:
    """Tool results are compact, stable JSON."""
    return json.dumps(obj, sort_keys=True)
