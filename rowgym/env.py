"""The environment base: Gymnasium's contract with an async twin and typed tools.

>>> import rowgym
>>> env = rowgym.make("rowgym/ToolAPI-Retail-v0")
>>> obs, info = env.reset(seed=0)
>>> info["split"] in {"train", "dev", "heldout"}
True
>>> obs, reward, terminated, truncated, info = env.step({"name": "no_such_tool", "arguments": {}})
>>> info["bad_call"], info["error_kind"], terminated
(True, 'unknown_tool', False)
>>> env.close()

A new environment is one subclass that sets the class attributes of :class:`RowEnv`
— ``family`` (required: it namespaces the seed splits), ``version``, ``verifier`` and
``verifier_version``, ``splits`` (default: a hash split of the family; a finite task list
needs a ``ListSplits``), ``default_max_turns``, ``local_rubric`` (whose rewards declare
the signals tools may report with ``self.signal``), ``system_prompt`` and, for backends
with their own outage exceptions, ``infra_errors`` — and implements four hooks:
``make_task(seed)``, ``setup(task) -> first observation``, its ``@tool`` methods, and
``grade() -> Verdict`` (build it with ``self.verdict(checks)``). Everything else — parsing and
validating calls, turning malformed calls into observations with a ``bad_call`` flag
and a penalty, local reward composition, truncation, final grading, the sync face —
lives here, once.

One implementation, two faces: the async methods (``areset``/``astep``/``aclose``)
are the implementation, used by rollout workers so hundreds of episodes share one
event loop; ``reset``/``step``/``close`` run them on a private event loop for
ordinary Gymnasium code.

``step`` never raises on agent input. Where the line between "a failing action" and
"a programming error" falls:

* A malformed call (no call, bad or over-long or too deeply nested JSON, unknown tool,
  invalid arguments) is a bad call (see :func:`rowgym.tools.parse_action`, which also
  bounds sizes and replaces lone surrogates and NUL in arguments; the observation then
  says that the call was changed).
* A tool that raises :class:`~rowgym.tools.ToolError` failed as designed:
  ``error_kind="tool_error"``.
* A tool that raises anything else was driven by agent input into a path its author
  did not foresee (an overflow, a recursion limit, a backend refusing a value). That is
  an env bug, but the agent caused it and can act differently, so it is an observation
  too, kept apart from designed failures: ``error_kind="tool_crash"``, the exception
  type and message in the observation and in ``info["tool_crash"]``, and a logged
  warning, so a run's data shows every such bug without losing the episode.
* Infrastructure failures still raise and end the episode with a failure kind: an
  exception of a type in ``infra_errors`` (by default ``OSError`` — connections,
  timeouts, disks — and ``RowgymError``, whose subclasses carry their own attribution,
  e.g. sandbox or grader). An env whose backend raises other types for its own outages
  (an HTTP client's errors, say) adds them to ``infra_errors``. Cancellation is never
  caught.
"""

from __future__ import annotations

import asyncio
import json
import logging
from abc import abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from pydantic import BaseModel

from rowgym.errors import EpisodeError, GraderError, RowgymError, ToolDefinitionError
from rowgym.rewards.base import Rubric, StepOutcome
from rowgym.rewards.local import DEFAULT_LOCAL
from rowgym.rows import Action, Check, Split, ToolCall, Verdict
from rowgym.spaces import TextSpace, ToolCallSpace
from rowgym.splits import HashSplits, SeedSplits, content_hash
from rowgym.tools import BadCall, ParsedCall, Tool, ToolError, clean_text, collect_tools, parse_action

TaskT = TypeVar("TaskT", bound=BaseModel)
log = logging.getLogger(__name__)
CRASH_MESSAGE_CHARS = 300


class RowEnv(gym.Env[str, Action], Generic[TaskT]):
    """Base class of every rowgym environment (observations are text, actions tool calls)."""

    # --- set these in all subclasses ---
    family: ClassVar[str]
    """Stable family name; it namespaces the seed splits, so never change it."""
    version: ClassVar[str] = "0"
    verifier: ClassVar[str] = "verifier"
    verifier_version: ClassVar[str] = "1"
    splits: ClassVar[SeedSplits]
    default_max_turns: ClassVar[int] = 30
    local_rubric: ClassVar[Rubric] = DEFAULT_LOCAL
    system_prompt: ClassVar[str] = "You are an agent. Use the tools to complete the task, then call finish."
    cheap_reset: ClassVar[bool] = False
    """A reset builds only in-process state in milliseconds (no browser, no sandbox): the held-out guard
    may then reset every seed it checks and compare whole first observations."""
    infra_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, RowgymError)
    """Exceptions from a tool that mean the env's own infrastructure failed: they end the
    episode (attributed by the engine). Any other exception is a ``tool_crash`` observation."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}
    _tools_cache: ClassVar[dict[type, list[Tool]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "family" in cls.__dict__ and "splits" not in cls.__dict__:
            cls.splits = HashSplits(cls.family)

    def __init__(self, *, max_turns: int | None = None, render_mode: str | None = None, env_id: str | None = None):
        self.max_turns = max_turns or self.default_max_turns
        self.render_mode = render_mode
        self.env_id = env_id or f"rowgym/{type(self).__name__}-v{self.version}"
        self.tool_list = self.tools_of(type(self))
        self._tools = {t.name: t for t in self.tool_list}
        self.observation_space = TextSpace()
        self.action_space = ToolCallSpace(self.tool_list)
        self.task: TaskT | None = None
        self.episode_seed: int | None = None
        self.split: Split | None = None
        self.turn = 0
        self._active = False
        self._done = False
        self._signals: dict[str, float] = {}
        self._last_bad: BadCall | None = None
        self._last_obs = ""
        self._runner: asyncio.Runner | None = None

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def make_task(self, seed: int) -> TaskT:
        """The task for ``seed``: a pure function of the seed, the same on every machine."""

    @abstractmethod
    async def setup(self, task: TaskT) -> str:
        """Build the episode's backend for ``task`` and return the first observation."""

    @abstractmethod
    async def grade(self) -> Verdict:
        """The final verdict of the episode from the backend state (never from text the agent wrote)."""

    async def teardown(self) -> None:
        """Release per-episode resources (called before the next reset and on close)."""

    def instruction(self, task: TaskT) -> str:
        """The task as the agent is told it (default: the task's ``instruction`` field)."""
        return str(getattr(task, "instruction", ""))

    async def error_observation(self, message: str) -> str:
        """What the agent reads after a bad call (default ``Error: ...``; a browser env adds the page)."""
        return f"Error: {message}"

    def task_content(self, task: TaskT) -> Any:
        """What defines the task's content, for contamination hashes (default: the task model)."""
        return task.model_dump(mode="json")

    # ------------------------------------------------------------ for tools
    def signal(self, name: str, value: float) -> None:
        """Report a number for the local rubric from inside a tool (e.g. ``subgoal`` progress).

        Raises:
            ToolDefinitionError: No term of ``local_rubric`` reads ``name`` (a typo would pay 0 silently).
        """
        if name not in self.local_rubric.signals:
            declared = ", ".join(sorted(self.local_rubric.signals)) or "none"
            raise ToolDefinitionError(f"{type(self).__name__}.signal({name!r}): no local reward reads that signal "
                                      f"(the rubric's signals: {declared}); declare it in a LocalReward's signals")
        self._signals[name] = self._signals.get(name, 0.0) + value

    def verdict(self, checks: list[Check], *, reward: float | None = None, flags: list[str] | None = None,
                breakdown: dict[str, float] | None = None) -> Verdict:
        """The verdict of ``grade()``: reward 1 iff every check passed (unless ``reward`` is given).

        Success means a reward of 1.0; the breakdown gets the verifier's own ``name@version`` key.
        """
        if reward is None:
            reward = 1.0 if all(c.passed for c in checks) else 0.0
        key = f"{self.verifier}@{self.verifier_version}"
        return Verdict(reward=reward, success=reward == 1.0, verifier=self.verifier,
                       verifier_version=self.verifier_version, checks=list(checks), flags=list(flags or []),
                       breakdown={key: reward, **(breakdown or {})})

    # ------------------------------------------------------------- public API
    @classmethod
    def tools_of(cls, klass: type) -> list[Tool]:
        if klass not in cls._tools_cache:
            cls._tools_cache[klass] = collect_tools(klass)
        return cls._tools_cache[klass]

    @property
    def tools(self) -> list[dict[str, Any]]:
        """OpenAI function schemas of this environment's tools."""
        return [t.schema() for t in self.tool_list]

    def task_hash(self, seed: int) -> str:
        return content_hash(self.task_content(self.make_task(seed)))

    def task_hashes(self, seeds: Iterable[int]) -> dict[int, str]:
        """``seed -> task_hash(seed)`` (an env served over HTTP answers them in one round trip)."""
        return {int(s): self.task_hash(int(s)) for s in seeds}

    # Gymnasium's reset(seed=...) builds the generator from the seed at once (~40 us: a SeedSequence
    # and a PCG64), every episode, though few envs ever draw from it. Here reset only records the seed,
    # and Gymnasium's own attributes (``_np_random``, ``_np_random_seed``, read by ``np_random``, its
    # env checker, ...) build the generator from it on first read: the same generator, later.
    _np_random_pending: int | None = None
    _np_rng: np.random.Generator | None = None
    _np_rng_seed: int | None = None

    def _seed_pending(self) -> None:
        seed, self._np_random_pending = self._np_random_pending, None
        self._np_rng, self._np_rng_seed = seeding.np_random(seed)

    @property
    def _np_random(self) -> np.random.Generator | None:
        if self._np_random_pending is not None:
            self._seed_pending()
        return self._np_rng

    @_np_random.setter
    def _np_random(self, value: np.random.Generator | None) -> None:
        self._np_random_pending, self._np_rng = None, value

    @property
    def _np_random_seed(self) -> int | None:
        if self._np_random_pending is not None:
            self._seed_pending()
        return self._np_rng_seed

    @_np_random_seed.setter
    def _np_random_seed(self, value: int | None) -> None:
        self._np_random_pending, self._np_rng_seed = None, value

    async def areset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        if seed is not None:  # Gymnasium's super().reset(seed=seed), the generator built on first use
            self._np_random_pending = seed
        if seed is None:  # Gymnasium semantics: an unseeded reset draws from np_random, training seeds only
            train = self.splits.seeds(Split.TRAIN, 1000)
            seed = int(train[int(self.np_random.integers(len(train)))])
        if self._active:
            await self.teardown()
        self.episode_seed, self.split = seed, self.splits.split_of(seed)
        self.task = self.make_task(seed)
        self.turn, self._done, self._last_bad = 0, False, None
        self._active = True
        obs = await self.setup(self.task)
        self._last_obs = obs
        info = {"seed": seed, "split": self.split.value, "task_hash": content_hash(self.task_content(self.task)),
                "instruction": self.instruction(self.task), "max_turns": self.max_turns}
        return obs, info

    async def astep(self, action: Action | ToolCall | dict | str) -> tuple[str, float, bool, bool, dict]:
        if not self._active or self._done:
            raise RowgymError("step() called before reset() or after the episode ended; call reset() first")
        self._signals = {}
        parsed = parse_action(action, self._tools)
        terminated = False
        error_kind: str | None = None
        crash: str | None = None
        call: ToolCall | None = parsed.call
        if isinstance(parsed, BadCall):
            obs, error_kind = await self.error_observation(parsed.message), parsed.kind
        else:
            try:
                obs = await parsed.tool.fn(self, parsed.args)
                terminated = parsed.tool.terminal
            except ToolError as e:
                obs, error_kind = await self.error_observation(str(e) or "the call failed"), "tool_error"
                self._signals = {}
            except self.infra_errors:
                raise
            except Exception as e:  # agent input drove a tool into an unforeseen error: see the module docstring
                crash = describe_exception(e)
                log.warning("%s: tool %s crashed on seed %s: %s", type(self).__name__, parsed.tool.name,
                            self.episode_seed, crash, exc_info=True)
                obs, error_kind = await self.error_observation(
                    f"{parsed.tool.name} failed unexpectedly ({crash}). Try different arguments."), "tool_crash"
                self._signals = {}
            obs = _with_replacement_note(obs, parsed)
        obs = clean_text(obs)
        bad = error_kind is not None
        repaired = not bad and self._last_bad is not None and (
            self._last_bad.call is None or self._last_bad.call.name not in self._tools
            or self._last_bad.call.name == call.name)
        self._last_bad = BadCall(error_kind, obs, call) if bad else None
        self.turn += 1
        truncated = not terminated and self.turn >= self.max_turns
        outcome = StepOutcome(bad_call=bad, error_kind=error_kind, tool=call.name if call else None,
                              repaired=repaired, signals=dict(self._signals))
        local, breakdown = self.local_rubric.score(outcome)
        info: dict[str, Any] = {"bad_call": bad, "error_kind": error_kind, "repaired": repaired,
                                "local_reward": local, "reward_breakdown": breakdown, "tool_call": call,
                                "turn": self.turn}
        if crash is not None:
            info["tool_crash"] = crash
        reward = local
        if terminated or truncated:
            try:
                verdict = await self.grade()
            except Exception as e:
                if isinstance(e, EpisodeError):  # e.g. a SandboxError keeps its own attribution
                    raise
                raise GraderError(f"{type(self).__name__}.grade() failed: {describe_exception(e)}") from e
            info["verdict"] = verdict
            reward += verdict.reward
            self._done = True
        self._last_obs = obs
        return obs, reward, terminated, truncated, info

    async def aclose(self) -> None:
        if self._active:
            self._active = False
            await self.teardown()

    # ------------------------------------------------------- the sync face
    def _run(self, coro: Any) -> Any:
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(coro)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        return self._run(self.areset(seed=seed, options=options))

    def step(self, action: Action | ToolCall | dict | str) -> tuple[str, float, bool, bool, dict]:
        return self._run(self.astep(action))

    def close(self) -> None:
        if self._active:
            self._run(self.aclose())
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._last_obs
        return None

    def reward_versions(self) -> dict[str, str]:
        return {**self.local_rubric.versions(), self.verifier: self.verifier_version}

    def tools_json(self) -> str:
        return json.dumps(self.tools, sort_keys=True)

    async def __aenter__(self) -> RowEnv[TaskT]:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def describe_exception(e: BaseException, limit: int = CRASH_MESSAGE_CHARS) -> str:
    """``Type: message`` of an exception, never empty, storable, cut to ``limit`` characters.

    An exception without a message (``httpx.ConnectTimeout()``, ``TimeoutError()``) says
    ``(no message)`` and names what caused it, if anything did.

    >>> describe_exception(TimeoutError())
    'TimeoutError (no message)'
    >>> try:
    ...     try:
    ...         raise OSError("connection refused")
    ...     except OSError as cause:
    ...         raise RuntimeError() from cause
    ... except RuntimeError as e:
    ...     describe_exception(e)
    'RuntimeError (no message), caused by OSError: connection refused'
    """
    parts: list[str] = []
    cur: BaseException | None = e
    while cur is not None and len(parts) < 4:
        msg = clean_text(str(cur)).strip()
        if len(msg) > limit:
            msg = msg[:limit] + "..."
        parts.append(f"{type(cur).__name__}: {msg}" if msg else f"{type(cur).__name__} (no message)")
        if msg:  # a message says what happened; follow causes only past empty ones
            break
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return ", caused by ".join(parts)


def _with_replacement_note(obs: str, parsed: ParsedCall) -> str:
    """Tell the agent when its arguments were changed before the tool saw them."""
    if not parsed.replaced:
        return obs
    return (f"{obs}\n(Note: {parsed.replaced} character(s) of your arguments that cannot be stored or passed "
            "on — lone UTF-16 surrogates or NUL — were replaced with U+FFFD before the call.)")
