"""One episode's data never stops a collection, and every failure says what happened.

An agent that writes raw lone surrogates (an LLM client decoding a cut UTF-8 sequence),
``"\\ud800"`` escapes, 1,000-deep JSON and NULs; tools that crash; an env whose verdict
holds text no UTF-8 writer accepts; exceptions without a message.
"""

from __future__ import annotations

import json

import pytest

from rowgym.agents.base import Agent, AgentTurn
from rowgym.contract import EpisodeContext
from rowgym.env import describe_exception
from rowgym.rollouts import mock
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.rollouts.episode import EpisodeKey, clean_action, play_episode, storable
from rowgym.rows import Action, Check, Episode, PolicyInfo, ToolCall, Verdict
from rowgym.store import TrajectoryStore
from rowgym.store.shards import EpisodeLine, encode
from rowgym.tools import NoArgs, ToolArgs, tool

AIRLINE = "rowgym/ToolAPI-Airline-v0"
TURNS = [
    # a raw lone surrogate, inside the JSON string and outside it
    '\udce9 <tool_call>{"name": "finish\udce9", "arguments": {"answer": "caf\udce9"}}</tool_call>',
    # a "\ud800" escape in plain ASCII text: decodes to a lone surrogate, which reaches the tool as U+FFFD
    '<tool_call>{"name": "calculate", "arguments": {"expression": "1+\\ud800"}}</tool_call>',
    '<tool_call>{"name": "calculate", "arguments": ' + "[" * 1000 + "]" * 1000 + "}</tool_call>",
    # NUL: raw in the text (kept in the row: JSON can hold it), escaped in the arguments (replaced for the tool)
    '\x00<tool_call>{"name": "calculate", "arguments": {"expression": "1+1\\u0000"}}</tool_call>',
    "[" * 100_000,
]


class HostileAgent(Agent):
    """Plays ``TURNS`` as raw text (the way an LLM agent's decoded completion arrives), then finishes."""

    name = "hostile"

    async def reset(self, ctx: EpisodeContext) -> None:
        self.turn = 0

    async def act(self, obs: str) -> AgentTurn:
        self.turn += 1
        if self.turn <= len(TURNS):
            return AgentTurn(Action(text=TURNS[self.turn - 1]))
        return AgentTurn(Action(text='<tool_call>{"name": "finish", "arguments": {"answer": "\ud800"}}</tool_call>',
                                tool_call=ToolCall(name="finish", arguments='{"answer": "\ud800"}')))


def test_a_collection_with_surrogates_and_deep_json_stores_every_episode(tmp_path):
    s = collect(CollectConfig(env_id=AIRLINE, agent=f"{__name__}:HostileAgent", episodes=6, concurrency=3,
                              out=tmp_path, progress=False))
    assert s.n_done == 6 and s.failures == {}
    eps = list(TrajectoryStore(tmp_path).episodes())
    assert len(eps) == 6 and all(e.failure is None for e in eps)
    for ep in eps:
        assert len(ep.steps) == len(TURNS) + 1 and ep.steps[-1].terminated
        first, esc, deep, nul, huge, last = ep.steps
        assert first.action.text.startswith("\ufffd") and "caf\ufffd" in first.action.text
        assert first.error_kind == "unknown_tool"
        assert esc.error_kind == "tool_error" and "replaced with U+FFFD" in esc.next_observation
        assert deep.error_kind == "bad_json" and "nested too deeply" in deep.next_observation
        assert nul.error_kind == "tool_error" and "replaced with U+FFFD" in nul.next_observation
        assert nul.action.text.startswith("\x00")
        assert huge.error_kind == "no_tool_call" and "too long" in huge.next_observation
        assert last.action.tool_call.arguments == '{"answer": "\ufffd"}' and not last.bad_call
    # the shard is plain UTF-8 JSON lines
    for shard in (tmp_path / "shards").iterdir():
        for line in shard.read_bytes().splitlines():
            json.loads(line.decode("utf-8"))


def test_clean_action_keeps_valid_text_and_replaces_lone_surrogates():
    ok = Action(text="café 😀", tool_call=ToolCall(name="f", arguments='{"a": "\\ud800"}'))
    assert clean_action(ok) is ok  # nothing to clean: the same object, the exact text
    bad = clean_action(Action(text="a\ud83d\ude00\ud800", tool_call=ToolCall(name="f\udfff", arguments="{}")))
    assert bad.text == "a😀\ufffd" and bad.tool_call.name == "f\ufffd"
    bad.model_dump_json()


def _episode(**kw) -> Episode:
    return Episode(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1,
                   split="train", task_hash="h", policy=PolicyInfo(agent="a"), **kw)


def test_an_unstorable_field_anywhere_is_cleaned_not_raised():
    ep = _episode(verdict=Verdict(reward=1, success=True, verifier="v", verifier_version="1",
                                  checks=[Check(name="answer", passed=True, detail="given '\ud800'")]))
    with pytest.raises(Exception, match="surrogates not allowed"):
        ep.model_dump_json()  # what would have stopped the store's writer (and the collection)
    out = storable(ep)
    assert out.verdict.checks[0].detail == "given '\ufffd'" and out.failure is None
    out.model_dump_json()


class Empty(Exception):
    """Raised without a message, like httpx.ConnectTimeout() on a silent socket."""


class _SilentAgent(Agent):
    name = "silent"

    async def act(self, obs: str) -> AgentTurn:
        raise Empty()


class _TickOnce(Agent):
    name = "tick"

    async def act(self, obs: str) -> AgentTurn:
        return AgentTurn(Action.call("tick"))


class _BadActionAgent(Agent):
    name = "bad-action"

    async def act(self, obs: str) -> AgentTurn:
        return AgentTurn(object())  # a broken agent: not an action at all


class _SilentGraderEnv(mock.CountdownEnv):
    async def grade(self) -> Verdict:
        raise Empty()


@pytest.mark.parametrize("env, agent, kind, reason", [
    (mock.CountdownEnv, _SilentAgent(), "env", "policy turn 0: Empty (no message)"),
    (_SilentGraderEnv, _TickOnce(), "grader", "env step 7: GraderError: _SilentGraderEnv.grade() failed: Empty "
                                            "(no message)"),
    (mock.CountdownEnv, _BadActionAgent(), "env", "recording step 0: "),
])
async def test_every_failure_has_a_meaningful_reason(env, agent, kind, reason):
    ep = await play_episode(env(), agent, EpisodeKey("r", 3))
    assert ep.failure is not None and ep.failure.kind == kind, ep.failure
    assert ep.failure.reason.startswith(reason), ep.failure.reason
    assert not ep.failure.reason.rstrip().endswith(":")  # never just "Type: " with nothing after it
    ep.model_dump_json()


def test_describe_exception_is_never_empty():
    assert describe_exception(Empty()) == "Empty (no message)"
    assert describe_exception(KeyError("x")) == "KeyError: 'x'"
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except OSError as cause:
            raise Empty() from cause
    except Empty as e:
        assert describe_exception(e) == "Empty (no message), caused by ConnectionResetError: " \
                                        "[Errno 104] Connection reset by peer"


class _Args(ToolArgs):
    n: int


class _CrashyEnv(mock.CountdownEnv):
    @tool
    async def divide(self, args: _Args) -> str:
        """Divide 1 by n (a tool with a bug: n=0 is not handled)."""
        return str(1 / args.n)

    @tool
    async def backend(self, args: NoArgs) -> str:
        """A tool whose backend is down."""
        raise ConnectionRefusedError()


def test_a_crashing_tool_is_an_observation_an_infrastructure_error_ends_the_episode():
    env = _CrashyEnv()
    env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step({"name": "divide", "arguments": {"n": 0}})
    assert info["bad_call"] and info["error_kind"] == "tool_crash" and not terminated
    assert info["tool_crash"] == "ZeroDivisionError: division by zero" and "ZeroDivisionError" in obs
    obs, *_, info = env.step({"name": "divide", "arguments": {"n": 2}})
    assert obs == "0.5" and info["repaired"]
    with pytest.raises(ConnectionRefusedError):  # infra_errors: the episode fails, attributed to the env
        env.step({"name": "backend", "arguments": {}})
    env.close()


def test_token_ids_are_kept_exactly_and_the_finish_reason_made_storable():
    from rowgym.rollouts.episode import step_row
    from rowgym.rows import TokenRecord

    tok = TokenRecord(prompt_ids=[1, 2], completion_ids=[55357], logprobs=[-0.25], mask=[0, 0, 1],
                      finish_reason="stop\ud800")
    info = {"error_kind": None, "local_reward": 0.0, "reward_breakdown": {}, "bad_call": False, "repaired": False}
    row = step_row(_episode(), 0, "obs", AgentTurn(Action(text="\ud83d"), tok), "next", info, False, False)
    assert row.tokens.completion_ids == [55357] and row.tokens.logprobs == [-0.25] and row.tokens.mask == [0, 0, 1]
    assert row.tokens.finish_reason == "stop\ufffd" and row.action.text == "\ufffd"
    row.model_dump_json()


# ----------------------------------------------------------------- numbers JSON cannot hold
# JSON has no NaN or infinity: pydantic and orjson write null, which a float field refuses on read,
# so such an episode used to be reported stored and then quarantined by every reader.

class _NonFiniteLogprobAgent(Agent):
    """Ticks with a token record per turn; turn ``at``'s logprob is ``value``."""

    name = "nonfinite-logprob"

    def __init__(self, value: object, at: int = 2):
        self.value, self.at = float(value) if isinstance(value, str) else value, at  # a str: a collect option

    async def reset(self, ctx: EpisodeContext) -> None:
        self.turn = 0

    async def act(self, obs: str) -> AgentTurn:
        from rowgym.rows import TokenRecord, unvalidated

        lp = self.value if self.turn == self.at else -0.5
        self.turn += 1
        fields = dict(prompt_ids=[1, 2], completion_ids=[7, 8], logprobs=[-0.25, lp], mask=[0, 0, 1, 1],
                      finish_reason="stop", policy_version=None)
        # as TokenConversation.record builds it: unvalidated, so even None gets through
        return AgentTurn(Action.call("tick"), unvalidated(TokenRecord, frozenset(fields), **fields))


def _reads_back(tmp_path, ep: Episode) -> Episode:
    with TrajectoryStore(tmp_path / "run") as store:
        store.append(ep)
    back = TrajectoryStore(tmp_path / "run", readonly=True)
    eps = list(back.episodes())
    assert back.quarantined == {} and len(eps) == 1
    return eps[0]


@pytest.mark.parametrize("value, shown", [(float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf"),
                                          (None, "None")])
async def test_a_non_finite_logprob_ends_the_episode_as_the_policys_failure(tmp_path, value, shown):
    ep = await play_episode(mock.CountdownEnv(), _NonFiniteLogprobAgent(value), EpisodeKey("r", 3))
    assert ep.failure is not None and ep.failure.kind == "policy"
    assert ep.failure.reason.endswith(f"AgentError: the policy returned a non-finite logprob ({shown}) at turn 2")
    assert [s.turn for s in ep.steps] == [0, 1]  # the rows before it are kept
    assert _reads_back(tmp_path, ep) == ep


def test_a_collection_with_a_nan_logprob_stores_readable_failed_episodes(tmp_path):
    s = collect(CollectConfig(env_id=mock.COUNTDOWN_ID, agent=f"{__name__}:_NonFiniteLogprobAgent",
                              agent_kwargs={"value": "nan", "at": 1}, episodes=2, out=tmp_path, progress=False))
    assert s.n_done == 2 and s.n_failed == 2
    store = TrajectoryStore(tmp_path, readonly=True)
    eps = list(store.episodes())
    assert len(eps) == 2 and store.problems == [] and store.verify() == []
    assert all(e.failure.kind == "policy" and "non-finite logprob (nan) at turn 1" in e.failure.reason
               and len(e.steps) == 1 for e in eps)


class _NanRewardEnv(mock.CountdownEnv):
    """Step 3's reward is NaN (a reward function that divides by zero, say)."""

    async def astep(self, action):
        obs, reward, terminated, truncated, info = await super().astep(action)
        if self.ticks == 4:
            info = {**info, "local_reward": float("nan")}
        return obs, reward, terminated, truncated, info


class _InfVerdictEnv(mock.CountdownEnv):
    async def grade(self) -> Verdict:
        return (await super().grade()).model_copy(update={"breakdown": {"ticks": float("-inf")}})


@pytest.mark.parametrize("env, kind, reason, n_rows", [
    (_NanRewardEnv, "env", "EnvError: the env returned a non-finite reward (nan) at step 3", 3),
    (_InfVerdictEnv, "grader", "GraderError: the verifier returned a non-finite reward (-inf) at step 7", 8),
])
async def test_a_non_finite_reward_ends_the_episode_as_its_makers_failure(tmp_path, env, kind, reason, n_rows):
    ep = await play_episode(env(), _TickOnce(), EpisodeKey("r", 3))
    assert ep.failure is not None and ep.failure.kind == kind and ep.failure.reason.endswith(reason), ep.failure
    assert len(ep.steps) == n_rows and ep.verdict is None
    assert _reads_back(tmp_path, ep) == ep
    # the line written as the episode is played (rows added as known finite) is the store's own
    line = EpisodeLine()
    with_line = await play_episode(env(), _TickOnce(), EpisodeKey("r", 3), line=line)
    assert line.text == encode(with_line) and len(with_line.steps) == n_rows


def test_storable_stores_an_episode_with_a_non_finite_float_without_its_rows(tmp_path):
    ep = _episode(verdict=Verdict(reward=float("nan"), success=True, verifier="v", verifier_version="1"))
    out = storable(ep)
    assert out.verdict is None and out.failure.kind == "env"
    assert "a non-finite value (nan) in verdict.reward" in out.failure.reason
    assert _reads_back(tmp_path, out) == out
