"""Red team: the engine writes each row's stored line as the row is recorded, so an agent that
changes, after a turn, the objects it returned for that turn must change neither the row nor its
stored line (rows copy what they take from the agent, and share its actions, which cannot change)."""

from __future__ import annotations

import pytest
from pydantic import ConfigDict, ValidationError

import rowgym
from rowgym.agents.base import AgentTurn
from rowgym.rollouts import mock
from rowgym.rollouts.engine import CollectConfig, Hooks, acollect
from rowgym.rollouts.episode import EpisodeKey, play_episode
from rowgym.rows import Action, PolicyInfo, PolicyVersion, TokenRecord, ToolCall
from rowgym.store import TrajectoryStore
from rowgym.store.shards import EpisodeLine, encode


class _Tamperer:
    """Ticks with a token record; each turn first rewrites everything it returned the turn before."""

    name = "tamperer"

    def __init__(self) -> None:
        self.sent: list[AgentTurn] = []
        self.refused = 0

    def policy_info(self) -> PolicyInfo:
        return PolicyInfo(agent=self.name)

    async def reset(self, ctx) -> None:
        self.sent = []

    async def act(self, obs: str) -> AgentTurn:
        for old in self.sent:
            t = old.tokens
            t.prompt_ids.append(666)
            t.completion_ids[0] = 666
            t.logprobs.append(-9.0)
            t.mask[0] = 1
            t.policy_version.step = 666
            for target, field, value in ((old.action, "text", "tampered"),
                                         (old.action.tool_call, "arguments", '{"tampered": true}')):
                try:  # actions are immutable: a row shares them instead of copying
                    setattr(target, field, value)
                except ValidationError:
                    self.refused += 1
        turn = len(self.sent)
        record = TokenRecord(prompt_ids=list(range(10 + turn)), completion_ids=[turn, 7], logprobs=[-0.5, -0.25],
                             mask=[0] * (10 + turn) + [1, 1], finish_reason="stop",
                             policy_version=PolicyVersion(step=turn, weights_hash="w"))
        out = AgentTurn(Action(text=f"turn {turn}", tool_call=ToolCall(name="tick")), record)
        self.sent.append(out)
        return out

    async def aclose(self) -> None:
        pass


def _as_returned(ep) -> None:
    """Each row holds what the agent returned at that turn, untouched."""
    for row in ep.steps:
        turn = row.turn
        assert row.action.text == f"turn {turn}" and row.action.tool_call.arguments == "{}"
        t = row.tokens
        assert (t.prompt_ids, t.completion_ids, t.logprobs) == (list(range(10 + turn)), [turn, 7], [-0.5, -0.25])
        assert t.mask == [0] * (10 + turn) + [1, 1] and t.policy_version.step == turn


async def test_an_agent_changing_what_it_returned_changes_no_row():
    env = rowgym.make(mock.COUNTDOWN_ID)
    line = EpisodeLine()
    agent = _Tamperer()
    ep = await play_episode(env, agent, EpisodeKey("r", 3), line=line)
    assert len(ep.steps) == mock.TURNS and ep.success
    assert agent.refused == 2 * sum(range(mock.TURNS))  # every edit of an earlier action was refused
    _as_returned(ep)
    assert line.of(ep) == encode(ep) == ep.model_dump_json().encode() + b"\n"


async def test_a_collection_stores_rows_as_the_agent_returned_them(tmp_path):
    cfg = CollectConfig(env_id=mock.COUNTDOWN_ID, agent="tamperer", episodes=3, out=tmp_path, concurrency=3,
                        progress=False, setup_modules=["rowgym.rollouts.mock"])
    seen = []
    s = await acollect(cfg, Hooks(make_agent=lambda cfg, env: _Tamperer(), on_stored=seen.append))
    assert s.n_done == s.n_success == 3
    stored = {e.episode_id: e for e in TrajectoryStore(tmp_path, readonly=True).episodes()}
    for ep in seen:  # what the engine kept in memory is what it stored
        assert stored[ep.episode_id] == ep
        _as_returned(ep)


@pytest.mark.parametrize("change", ["replace", "drop", "append", "reorder"])
async def test_an_episode_line_takes_only_the_rows_it_was_given(change):
    line = EpisodeLine()
    ep = await play_episode(rowgym.make(mock.COUNTDOWN_ID), _Tamperer(), EpisodeKey("r", 3), line=line)
    rows = ep.steps
    if change == "replace":
        rows[2] = rows[2].model_copy(update={"reward": 0.5})
    elif change == "drop":
        rows.pop()
    elif change == "append":
        rows.append(rows[0].model_copy())
    else:
        rows[0], rows[1] = rows[1], rows[0]
    assert line.of(ep) is None  # the store's encoder writes such an episode whole
    assert encode(ep) == ep.model_dump_json().encode() + b"\n"


class _SurrogateVerdictEnv(mock.CountdownEnv):
    async def grade(self):
        v = await super().grade()
        v.checks[0].detail = "given '\ud800'"  # the episode's own fields cannot be written as they are
        return v


@pytest.mark.parametrize("env_cls", [mock.CountdownEnv, _SurrogateVerdictEnv])
async def test_the_line_played_along_is_the_returned_episodes_or_none(env_cls):
    line = EpisodeLine()
    ep = await play_episode(env_cls(), _Tamperer(), EpisodeKey("r", 3), line=line)
    plain = await play_episode(env_cls(), _Tamperer(), EpisodeKey("r", 3))  # without a line: storable() decides
    if env_cls is _SurrogateVerdictEnv:
        assert line.text is None and ep.verdict.checks[0].detail == "given '\ufffd'"  # cleaned, as without a line
    else:
        assert line.text == encode(ep) == ep.model_dump_json().encode() + b"\n"
    strip = {"duration_s": True, "started_at": True, "steps": {"__all__": {"timings"}}}  # clocks
    assert ep.model_dump(exclude=strip) == plain.model_dump(exclude=strip)


# ------------------------------------------------------- rows of turns without a token record
# A scripted agent's turn (no token record) becomes its row when the episode ends: what the row is
# made of is taken at its step, so neither the env nor the agent can change it in between, and a
# row that cannot be built ends the episode at its step, as if it had been built then.

class _ReusedInfoEnv(mock.CountdownEnv):
    """Returns one info dict for every step, its values and its reward breakdown changed in place."""

    async def areset(self, *, seed=None, options=None):
        self.shared: dict = {}
        self.returned: list[dict] = []
        return await super().areset(seed=seed, options=options)

    async def astep(self, action):
        obs, reward, terminated, truncated, info = await super().astep(action)
        breakdown = self.shared.get("reward_breakdown", {})
        breakdown.clear()
        breakdown[f"tick{self.ticks}@1"] = float(self.ticks)
        self.shared.clear()
        self.shared.update(info, reward_breakdown=breakdown, local_reward=float(self.ticks),
                           bad_call=self.ticks % 2 == 0)
        self.returned.append({**self.shared, "reward_breakdown": dict(breakdown)})  # what this step said
        return obs, reward, terminated, truncated, self.shared


class _MixedAgent:
    """Ticks; every third turn with a token record (a policy's), the others without (a script's)."""

    name = "mixed"

    def policy_info(self) -> PolicyInfo:
        return PolicyInfo(agent=self.name)

    async def reset(self, ctx) -> None:
        self.turn = 0

    async def act(self, obs: str) -> AgentTurn:
        turn, self.turn = self.turn, self.turn + 1
        tokens = None if turn % 3 else TokenRecord(prompt_ids=[1, turn], completion_ids=[7], logprobs=[-0.5],
                                                   mask=[0, 0, 1], finish_reason="stop")
        return AgentTurn(Action(text=f"turn {turn}", tool_call=ToolCall(name="tick")), tokens)

    async def aclose(self) -> None:
        pass


class _ScriptedTicker(_MixedAgent):
    """Ticks without a token record, as a scripted agent does."""

    name = "scripted"

    async def act(self, obs: str) -> AgentTurn:
        return AgentTurn(Action.call("tick"))


@pytest.mark.parametrize("agent_cls", [_ScriptedTicker, _MixedAgent])
async def test_an_env_reusing_its_info_dict_changes_no_row(agent_cls):
    env = _ReusedInfoEnv()
    line = EpisodeLine()
    ep = await play_episode(env, agent_cls(), EpisodeKey("r", 3), line=line)
    assert ep.failure is None and len(ep.steps) == mock.TURNS == len(env.returned)
    for row, said in zip(ep.steps, env.returned, strict=True):
        assert (row.reward_breakdown, row.reward, row.bad_call) == \
               (said["reward_breakdown"], said["local_reward"], said["bad_call"])
    assert [r.turn for r in ep.steps] == list(range(mock.TURNS))  # in order, deferred or not
    assert line.of(ep) == encode(ep) == ep.model_dump_json().encode() + b"\n"


class _BadRewardEnv(mock.CountdownEnv):
    """Step 2's reward is ``bad``: its row cannot be built."""

    bad: object = "not a number"  # validation refuses it

    async def astep(self, action):
        obs, reward, terminated, truncated, info = await super().astep(action)
        if self.ticks == 3:
            info = {**info, "local_reward": self.bad}
        return obs, reward, terminated, truncated, info


class _NanRewardEnv(_BadRewardEnv):
    bad = float("nan")  # the store would write null: refused


@pytest.mark.parametrize("env_cls", [_BadRewardEnv, _NanRewardEnv])
async def test_a_row_that_cannot_be_built_ends_the_episode_at_its_step_deferred_or_not(env_cls):
    line = EpisodeLine()
    scripted = await play_episode(env_cls(), _ScriptedTicker(), EpisodeKey("r", 3), line=line)
    policy = await play_episode(env_cls(), _MixedAgent(), EpisodeKey("r", 3))  # rows built at each step
    for ep in (scripted, policy):
        assert ep.failure is not None and ep.failure.kind == "env", ep.failure
        assert ep.failure.reason.startswith("recording step 2: "), ep.failure.reason
        assert [r.turn for r in ep.steps] == [0, 1] and ep.verdict is None  # nothing after step 2 is kept
    assert scripted.failure.reason == policy.failure.reason
    assert line.text == encode(scripted)


class _MutableAction(Action):
    model_config = ConfigDict(extra="forbid", frozen=False)  # a subclass that lets its text change


class _ScriptedTamperer(_MixedAgent):
    """No token records; returns a mutable action subclass and rewrites every earlier one each turn."""

    name = "scripted-tamperer"

    async def reset(self, ctx) -> None:
        self.sent: list[_MutableAction] = []

    async def act(self, obs: str) -> AgentTurn:
        for old in self.sent:
            old.text = "tampered"
        action = _MutableAction(text=f"turn {len(self.sent)}", tool_call=ToolCall(name="tick"))
        self.sent.append(action)
        return AgentTurn(action)


async def test_a_scripted_agent_changing_a_mutable_action_it_returned_changes_no_row():
    line = EpisodeLine()
    ep = await play_episode(rowgym.make(mock.COUNTDOWN_ID), _ScriptedTamperer(), EpisodeKey("r", 3), line=line)
    assert ep.success and [r.action.text for r in ep.steps] == [f"turn {t}" for t in range(mock.TURNS)]
    # a subclass is not one of the schema's own models: the store's encoder writes the line, as it was
    assert line.text is None and b"tampered" not in encode(ep)


class _InfVerdictEnv(mock.CountdownEnv):
    async def grade(self):
        return (await super().grade()).model_copy(update={"reward": float("inf")})


async def test_a_non_finite_verdict_is_the_last_env_steps_failure_for_every_kind_of_agent():
    # a scripted agent (its rows built at the end) and a policy (a token record every turn, rows built at once)
    eps = [await play_episode(_InfVerdictEnv(), agent(), EpisodeKey("r", 3)) for agent in (_ScriptedTicker, _Tamperer)]
    for ep in eps:  # the verdict came with the env's last step, after that step's row was recorded
        assert ep.failure.kind == "grader" and ep.verdict is None and len(ep.steps) == mock.TURNS
        assert ep.failure.reason.startswith(f"env step {mock.TURNS - 1}: GraderError"), ep.failure.reason
    assert eps[0].failure.reason == eps[1].failure.reason
