"""Play one episode and record every step as a row.

>>> import asyncio, rowgym
>>> from rowgym.agents import make_agent
>>> from rowgym.rollouts.episode import EpisodeKey, play_episode
>>> env = rowgym.make("rowgym/ToolAPI-Retail-v0")
>>> ep = asyncio.run(play_episode(env, make_agent("expert", env), EpisodeKey("run0", 4)))
>>> ep.success, ep.steps[0].turn, ep.split == env.splits.split_of(4)
(True, 0, True)

Nothing an agent or environment does inside an episode escapes as an exception:
a policy that fails (server down, timeout) or an environment that crashes ends the
episode with a :class:`rowgym.rows.Failure` saying which part failed, what was being
done and why (never an empty reason), and the rows recorded so far are kept.

Whatever an episode holds can be stored. Agent and env text goes into rows with every
lone UTF-16 surrogate replaced by U+FFFD (an LLM client that decodes a cut multi-byte
sequence produces them, and no UTF-8 writer accepts them); token ids, the training
truth, are kept exactly. A number JSON cannot hold (a NaN or infinite logprob, reward or
verdict reward; it would be stored as null and never read back) ends the episode with a
failure of the part that produced it, keeping the rows before it. A finished episode is
checked to serialise; one that still does not is cleaned field by field, and as a last
resort stored without its rows, with the reason as its failure, so one episode's data
never stops a collection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, get_args

from rowgym.agents.base import Agent, AgentTurn
from rowgym.contract import episode_context
from rowgym.env import describe_exception
from rowgym.errors import AgentError, EnvError, EpisodeError, EpisodeTimeout, GraderError
from rowgym.rows import (
    SCHEMA_VERSION,
    Action,
    Episode,
    ErrorKind,
    Failure,
    PolicyVersion,
    StepRow,
    Timings,
    TokenRecord,
    ToolCall,
    Verdict,
    from_fields,
    unvalidated,
)
from rowgym.store.shards import EpisodeLine, all_finite, first_non_finite, non_finite
from rowgym.tools import clean_text

log = logging.getLogger(__name__)
REASON_CHARS = 2000
ROW_ERROR_KINDS = frozenset(get_args(ErrorKind))
_TIMINGS_SET = frozenset({"policy_s", "env_s"})


@dataclass(frozen=True)
class EpisodeKey:
    """Identity of one episode in a run: the seed and which of the group's k samples it is."""

    run_id: str
    seed: int
    sample_index: int = 0

    @property
    def episode_id(self) -> str:
        return f"{self.run_id}:{self.seed}:{self.sample_index}"

    @property
    def group_id(self) -> str:
        return f"{self.run_id}:{self.seed}"


@dataclass(frozen=True)
class Timeouts:
    """Seconds; ``None`` means no limit.

    Attributes:
        turn_s: One policy turn (the agent's ``act``, retries included).
        episode_s: The whole episode, reset and grading included.
        step_s: One environment step: a tool call, the sandbox commands it runs, and on the
            last step the final grading (so it bounds sandbox and grader time too).
    """

    turn_s: float | None = None
    episode_s: float | None = None
    step_s: float | None = None


def _failure_kind(exc: BaseException) -> str:
    """Attribute an exception to the part that failed, by its class.

    An :class:`~rowgym.errors.EpisodeError` carries its kind (``SandboxError`` sandbox,
    ``GraderError`` — raised by the env base around ``grade()`` — grader, ``AgentError``
    policy, ``EpisodeTimeout`` timeout); a bare timeout is a timeout, and anything else
    raised by the env is the env's.
    """
    if isinstance(exc, EpisodeError):
        return exc.kind
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "env"


async def play_episode(env: Any, agent: Agent, key: EpisodeKey, timeouts: Timeouts = Timeouts(),
                       record: bool = True, line: EpisodeLine | None = None) -> Episode:
    """Run ``agent`` on ``env`` for the episode ``key`` and return it with all its rows.

    Never raises for a failure of the env, the policy, a timeout or the episode's data:
    the episode comes back with ``failure`` set (and the rows recorded so far). With
    ``record=False`` rows are not built (used to measure recording overhead). ``line``:
    each row is also added to it as it is recorded (a policy's row, with its token record, is
    built and written at its turn, so the stored line is mostly written by the time the episode
    ends: at 256 in flight, all of a collection's episodes end in its last turn; see
    :class:`~rowgym.store.shards.EpisodeLine`; a scripted agent's rows are built when the episode
    ends, see :class:`_Rows`); ``line.text`` is then the returned episode's line,
    or None when the store's encoder must decide (e.g. the episode had to be cleaned, see
    :func:`storable`: a line made whole also shows that the episode serialises as it is).
    """
    t_start = time.perf_counter()
    ep = Episode(run_id=key.run_id, episode_id=key.episode_id, group_id=key.group_id, sample_index=key.sample_index,
                 env_id=env.env_id or "", env_version=env.version, seed=key.seed, split=env.splits.split_of(key.seed),
                 task_hash="", policy=agent.policy_info())
    if _privileged(agent):  # rows of an agent that read the task are never mistaken for a policy's
        ep.policy = ep.policy.model_copy(update={"privileged": True})
    stage = _Stage()
    rows = _Rows(ep, line, stage) if record else None
    deadline = asyncio.timeout(timeouts.episode_s)
    error: Exception | None = None
    try:
        async with deadline:
            await _play(env, agent, ep, timeouts, stage, rows)
    except Exception as e:  # attributed and kept on the episode, never raised into the engine
        error = e
    if rows is not None:
        try:
            rows.flush()
        except Exception as e:  # as if raised when its step was recorded: nothing after that step happened
            error, ep.verdict = e, None
    if error is not None:
        if isinstance(error, TimeoutError) and deadline.expired():
            kind, what = "timeout", f"episode exceeded {timeouts.episode_s}s (during {stage.now}, after " \
                                    f"{len(ep.steps)} steps)"
        elif isinstance(error, EpisodeTimeout):
            kind, what = error.kind, str(error) or f"timeout during {stage.now}"
        else:
            kind, what = _failure_kind(error), f"{stage.now}: {describe_exception(error, REASON_CHARS)}"
        ep.failure = Failure(kind=kind, reason=clean_text(what)[:REASON_CHARS])
    ep.duration_s = round(time.perf_counter() - t_start, 4)
    if line is not None:
        line.text = line.of(ep)
        if line.text is not None:  # the whole line is written: the episode serialises as it is
            return ep
    return storable(ep, rows_from_step_row=True)


def _privileged(agent: Any) -> bool:
    return bool(getattr(agent, "privileged", False))


class _Stage:
    """What the episode is doing now, for failure reasons ("env step 3", "policy turn 2")."""

    now = "env reset"


class _Rows:
    """The rows of an episode as its steps are recorded, in order, into ``ep.steps`` (and ``line``).

    A turn with a token record (a policy's) becomes its row at once: its line is written then, while
    the loop waits on the policy server (see :class:`~rowgym.store.shards.EpisodeLine`). A turn
    without one (a scripted agent's, whose loop never waits) is kept as the values its row is made
    of and becomes its row when the episode ends (:meth:`flush`), with the others: between two env
    steps the recording code and its data are cold, and a tool-API episode's rows built in one go
    take ~1% less of a step (docs/bench.md). What is kept is what the row will own (the agent's
    immutable action, copies of the env's info dict and reward breakdown), so nothing the agent or
    env does later changes it; a turn whose action or info is anything else is recorded at once. A row that
    cannot be built ends the episode at its step, as it would have then: :func:`play_episode`
    drops the verdict, and the rows after it are never built.
    """

    def __init__(self, ep: Episode, line: EpisodeLine | None, stage: _Stage):
        self.ep, self.line, self.stage = ep, line, stage
        self.pending: list[tuple[Any, ...]] = []

    def take(self, turn: int, obs: str, out: AgentTurn, next_obs: str, sinfo: dict[str, Any], terminated: bool,
             truncated: bool, t0: float, t1: float, t2: float) -> None:
        """Record one step: kept for the episode's end, or (a policy's turn, anything unusual) built now."""
        action, tokens = out.action, out.tokens
        if tokens is None and type(action) is Action:
            call, info = action.tool_call, sinfo.copy()
            breakdown = info["reward_breakdown"]
            if (call is None or type(call) is ToolCall) and type(breakdown) is dict:
                info["reward_breakdown"] = breakdown.copy()
                self.pending.append((turn, obs, action, None, next_obs, info, terminated, truncated, t0, t1, t2))
                return
        self.pending.append((turn, obs, action, tokens, next_obs, sinfo, terminated, truncated, t0, t1, t2))
        self.flush()  # built now, after the turns kept before it

    def flush(self) -> None:
        """Build the rows of the turns kept so far (raises what building one raised, its step in ``stage``)."""
        pending, self.pending = self.pending, []
        for turn, obs, action, tokens, next_obs, info, terminated, truncated, t0, t1, t2 in pending:
            try:
                row = _row(self.ep, turn, obs, action, tokens, next_obs, info, terminated, truncated,
                           _timings(t0, t1, t2))
            except Exception:
                self.stage.now = f"recording step {turn}"
                raise
            self._add(row)

    def _add(self, row: StepRow) -> None:
        self.ep.steps.append(row)
        if self.line is not None:  # _row refused a non-finite reward or logprob; the timings are ours
            self.line.add(row, finite=True)


def _timings(t0: float, t1: float, t2: float) -> Timings:
    """A step's timings from the clock's readings around the agent's turn and the env's step."""
    # two floats made here: nothing to validate
    return from_fields(Timings, _TIMINGS_SET, {"policy_s": round(t1 - t0, 6), "env_s": round(t2 - t1, 6)})


async def _play(env: Any, agent: Agent, ep: Episode, timeouts: Timeouts, stage: _Stage, rows: _Rows | None) -> None:
    obs, info = await _env_call(env.areset(seed=ep.seed), timeouts.step_s, "reset")
    stage.now = "episode setup"
    obs = clean_text(obs)
    # the sample index lets stochastic agents differ within a GRPO group (same seed, k samples)
    ctx = episode_context(env, obs, info, sample_index=ep.sample_index, episode_id=ep.episode_id,
                          privileged=_privileged(agent))
    ep.task_hash, ep.instruction = info["task_hash"], clean_text(info.get("instruction", ""))
    ep.reward_versions, ep.tools = env.reward_versions(), clean_text(ctx.tools_json)
    stage.now = "agent reset"
    await agent.reset(ctx)
    turn = 0
    while True:
        stage.now = f"policy turn {turn}"
        t0 = time.perf_counter()
        if timeouts.turn_s is None:
            out = await agent.act(obs)
        else:
            turn_deadline = asyncio.timeout(timeouts.turn_s)
            try:
                async with turn_deadline:
                    out = await agent.act(obs)
            except TimeoutError as e:
                if not turn_deadline.expired():
                    raise  # raised inside the agent, not our deadline
                raise EpisodeTimeout(f"the policy did not answer turn {turn} within {timeouts.turn_s}s") from e
        t1 = time.perf_counter()
        stage.now = f"env step {turn}"
        next_obs, reward, terminated, truncated, sinfo = await _env_call(env.astep(out.action), timeouts.step_s,
                                                                         f"step {turn}")
        t2 = time.perf_counter()
        next_obs = clean_text(next_obs)
        if rows is not None:
            rows.take(turn, obs, out, next_obs, sinfo, terminated, truncated, t0, t1, t2)
        if terminated or truncated:
            verdict: Verdict = sinfo["verdict"]
            rewards = [verdict.reward, *verdict.breakdown.values()] if verdict is not None else []
            if not all_finite(rewards):  # stored as null, it would never read back
                raise GraderError(f"the verifier returned a non-finite reward ({first_non_finite(rewards)}) "
                                  f"at step {turn}")
            ep.verdict = verdict
            return
        obs, turn = next_obs, turn + 1


def step_row(ep: Episode, turn: int, obs: str, out: AgentTurn, next_obs: str, sinfo: dict[str, Any],
             terminated: bool, truncated: bool, timings: Timings | None = None) -> StepRow:
    """The row of one step, with agent and env text made storable (token ids kept exactly).

    The row owns what it holds: the agent's token record and the env's reward breakdown are
    copied and its action is kept as is (an :class:`Action` cannot change; a subclass is copied),
    so an agent that later changes an object it returned changes neither the row nor its stored
    line, which may be written as soon as the row is made (:class:`~rowgym.store.shards.EpisodeLine`).
    When every value already has its field's type the row is built without validation (the same
    row, fields set included); otherwise validation converts what it accepts, as it always did.

    Raises :class:`~rowgym.errors.EnvError` for a NaN or infinite reward and
    :class:`~rowgym.errors.AgentError` for such a logprob (see :func:`_clean_tokens`).
    """
    return _row(ep, turn, obs, out.action, out.tokens, next_obs, sinfo, terminated, truncated, timings)


def _row(ep: Episode, turn: int, obs: str, action: Action | ToolCall | str, tokens: TokenRecord | None, next_obs: str,
         sinfo: dict[str, Any], terminated: bool, truncated: bool, timings: Timings | None) -> StepRow:
    """:func:`step_row` given the agent turn's action and token record."""
    error_kind = sinfo["error_kind"]
    reward, breakdown = sinfo["local_reward"], sinfo["reward_breakdown"]
    rewards = [reward, *breakdown.values()]
    if not all_finite(rewards):  # stored as null, it would never read back
        raise EnvError(f"the env returned a non-finite reward ({first_non_finite(rewards)}) at step {turn}")
    if error_kind is not None and error_kind not in ROW_ERROR_KINDS:
        # a failure kind the row schema does not list yet (e.g. an env's own): keep the row,
        # recorded as a tool error; the observation text says what happened
        error_kind = "tool_error"
    action, tokens = _stored_action(action), _owned_tokens(_clean_tokens(tokens, turn))
    obs, next_obs, timings = clean_text(obs), clean_text(next_obs), timings or Timings()
    bad_call, repaired = sinfo["bad_call"], sinfo["repaired"]
    if type(reward) is float and type(obs) is str and type(next_obs) is str and type(breakdown) is dict \
            and (error_kind is None or type(error_kind) is str) and type(timings) is Timings \
            and bool is type(bad_call) is type(repaired) is type(terminated) is type(truncated) \
            and _str_floats(breakdown):
        # every value already has its field's type (the episode's own fields were validated with it), so
        # this is the row validation builds, at a fifth of its cost (tests/rollouts/test_step_row.py):
        # every field in declaration order (test_row_fields_in_order), in one dict display
        return from_fields(StepRow, _ROW_FIELDS_SET, {
            "schema_version": SCHEMA_VERSION, "run_id": ep.run_id, "episode_id": ep.episode_id,
            "group_id": ep.group_id, "env_id": ep.env_id, "env_version": ep.env_version, "seed": ep.seed,
            "split": ep.split, "turn": turn, "observation": obs, "action": action, "next_observation": next_obs,
            "reward": reward, "reward_breakdown": dict(breakdown), "bad_call": bad_call, "error_kind": error_kind,
            "repaired": repaired, "terminated": terminated, "truncated": truncated, "timings": timings,
            "tokens": tokens})
    return StepRow(
        run_id=ep.run_id, episode_id=ep.episode_id, group_id=ep.group_id, env_id=ep.env_id,
        env_version=ep.env_version, seed=ep.seed, split=ep.split, turn=turn, observation=obs, action=action,
        next_observation=next_obs, reward=reward, reward_breakdown=breakdown, bad_call=bad_call, error_kind=error_kind,
        repaired=repaired, terminated=terminated, truncated=truncated, timings=timings, tokens=tokens)


_ROW_FIELDS_SET = frozenset(StepRow.model_fields) - {"schema_version"}  # what validation records as set: all given


def _str_floats(d: dict[Any, Any]) -> bool:
    """Whether every key of ``d`` is a str and every value a float (the exact types, not subclasses)."""
    for k, v in d.items():
        if type(k) is not str or type(v) is not float:
            return False
    return True


def _stored_action(action: Action | ToolCall | str) -> Action:
    """The agent's action as a row keeps it: its text storable (see :func:`clean_action`), shared when it
    is an :class:`Action` (immutable, as is its :class:`ToolCall`), a deep copy when it is a subclass."""
    if type(action) is Action:  # the common case, checked in one go: an ASCII action of the schema's own types
        call = action.tool_call
        if action.text.isascii() and (call is None or (type(call) is ToolCall and call.name.isascii()
                                                        and call.arguments.isascii()
                                                        and (call.id is None or call.id.isascii()))):
            return action
    action = clean_action(action)
    call = action.tool_call
    if type(action) is not Action or (call is not None and type(call) is not ToolCall):
        return action.model_copy(deep=True)  # a subclass may hold (or allow) what can change
    return action


def _owned_tokens(tokens: TokenRecord | None) -> TokenRecord | None:
    """A copy of ``tokens`` with lists of its own (about 2 µs for a 500-id prompt)."""
    if tokens is None:
        return None
    d = tokens.__dict__
    version = d["policy_version"]
    if type(tokens) is not TokenRecord or (version is not None and type(version) is not PolicyVersion):
        return tokens.model_copy(deep=True)
    return unvalidated(TokenRecord, tokens.__pydantic_fields_set__, prompt_ids=list(d["prompt_ids"]),
                       completion_ids=list(d["completion_ids"]), logprobs=list(d["logprobs"]), mask=list(d["mask"]),
                       finish_reason=d["finish_reason"], policy_version=None if version is None else version.model_copy())


def _clean_tokens(tokens: TokenRecord | None, turn: int) -> TokenRecord | None:
    """The token record as is (ids, logprobs and mask are never touched), its finish reason storable.

    A logprob that is not a finite number (NaN, an infinity, or None from an agent that builds
    its record unvalidated) raises :class:`~rowgym.errors.AgentError`: JSON would hold ``null``
    there, the stored episode would never read back, and no trainer can use it. The episode
    ends as the policy's failure with the rows before this turn. This runs for every row of every
    agent: one sum, about 0.5 µs for 17 logprobs (see :func:`rowgym.store.shards.all_finite`).
    """
    if tokens is None:
        return None
    if not all_finite(tokens.logprobs):
        raise AgentError(f"the policy returned a non-finite logprob ({first_non_finite(tokens.logprobs)}) "
                         f"at turn {turn}")
    if tokens.finish_reason is None:
        return tokens
    reason = clean_text(tokens.finish_reason)
    return tokens if reason is tokens.finish_reason else tokens.model_copy(update={"finish_reason": reason})


def clean_action(action: Action | ToolCall | str) -> Action:
    """The agent's action as a storable :class:`Action` (lone surrogates -> U+FFFD).

    >>> clean_action(Action(text="caf\\udce9")).text == "caf\\ufffd"
    True
    """
    if isinstance(action, str):
        action = Action(text=action)
    elif isinstance(action, ToolCall):
        action = Action(tool_call=action)
    text = clean_text(action.text)
    call = action.tool_call
    if call is not None:
        name, arguments, cid = clean_text(call.name), clean_text(call.arguments), call.id
        cid = clean_text(cid) if cid is not None else None
        if (name, arguments, cid) != (call.name, call.arguments, call.id) or name is not call.name \
                or arguments is not call.arguments:
            call = ToolCall(name=name, arguments=arguments, id=cid)
    if text is action.text and call is action.tool_call:
        return action
    return Action(text=text, tool_call=call)


def storable(ep: Episode, *, rows_from_step_row: bool = False) -> Episode:
    """``ep``, made to serialise: as is (the common case), cleaned, or without its rows.

    The store writes ``model_dump_json()``; a field that cannot be encoded (a lone
    surrogate that reached a verdict detail, say) would stop the whole collection there.
    ``rows_from_step_row``: every row was built by :func:`step_row` (as :func:`play_episode`
    does), so its text is clean already and its numbers finite, and only the rest of the episode
    is checked (the same episodes pass as with the full check).

    A NaN or infinite float (which the store refuses: it would not read back) cannot be cleaned:
    such an episode is stored without its rows.
    """
    try:
        if rows_from_step_row:
            # step_row cleaned every string value of a row (pydantic never refuses a dict key) and
            # _play the tool schemas; these are most of an episode's bytes, so this check costs a
            # fraction of a dump
            ep.model_dump_json(exclude=_STEPS_AND_TOOLS)
            if not isinstance(ep.tools, str) or clean_text(ep.tools) is not ep.tools:
                raise ValueError("the tool schemas have a lone surrogate")
        else:
            # token records are numbers (their one string is cleaned in step_row): skipping them keeps
            # this check cheap next to the store's own serialisation (~0.2 ms for a tool-API episode)
            ep.model_dump_json(exclude=_TOKENS)
        _finite(ep, rows=not rows_from_step_row)
        return ep
    except Exception as e:  # PydanticSerializationError, or anything a plugin's field raises
        first = describe_exception(e, 300)
    try:
        cleaned = Episode.model_validate(_clean_tree(ep.model_dump()))
        cleaned.model_dump_json()
        _finite(cleaned)
        return cleaned
    except Exception as e:
        log.warning("episode %s cannot be serialised, stored without its rows: %s", ep.episode_id, first)
        reason = f"the episode's data could not be stored ({first}; after cleaning: {describe_exception(e, 300)})"
        bare = ep.model_copy(update={"steps": [], "verdict": None, "instruction": clean_text(ep.instruction),
                                     "failure": Failure(kind="env", reason=clean_text(reason)[:REASON_CHARS])})
        try:
            bare.model_dump_json()
            _finite(bare)
            return bare
        except Exception:  # the ids themselves: keep only what identifies the episode
            return Episode(run_id=ep.run_id, episode_id=ep.episode_id, group_id=ep.group_id,
                           sample_index=ep.sample_index, env_id=clean_text(ep.env_id), env_version=ep.env_version,
                           seed=ep.seed, split=ep.split, task_hash=clean_text(ep.task_hash),
                           policy=ep.policy.model_copy(update={"agent": clean_text(ep.policy.agent)}),
                           failure=Failure(kind="env", reason=clean_text(reason)[:REASON_CHARS]))


def _finite(ep: Episode, *, rows: bool = True) -> None:
    """Raise ValueError if ``ep`` holds a float the store refuses (NaN, an infinity)."""
    where = non_finite(ep, rows=rows)
    if where is not None:
        raise ValueError(where)


_TOKENS = {"steps": {"__all__": {"tokens"}}}
_STEPS_AND_TOOLS = {"steps", "tools"}


def _clean_tree(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_clean_tree(v) for v in value]
    if isinstance(value, dict):
        return {_clean_tree(k): _clean_tree(v) for k, v in value.items()}
    return value


async def _env_call(coro: Any, limit: float | None, what: str) -> Any:
    if limit is None:
        return await coro
    step_deadline = asyncio.timeout(limit)
    try:
        async with step_deadline:
            return await coro
    except TimeoutError as e:
        if not step_deadline.expired():
            raise
        raise EpisodeTimeout(f"env {what} (tool call, sandbox or grading) exceeded {limit}s") from e
