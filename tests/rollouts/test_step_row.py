"""step_row builds without validation only what validation would build: same row, same fields set, same line."""

from __future__ import annotations

import numpy as np
import pytest

from rowgym.agents.base import AgentTurn
from rowgym.rollouts import episode as episode_module
from rowgym.rollouts.episode import step_row
from rowgym.rows import Action, Episode, PolicyInfo, StepRow, Timings, TokenRecord, ToolCall


def _episode() -> Episode:
    return Episode(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1,
                   split="train", task_hash="h", policy=PolicyInfo(agent="a"))


class _Text(str):
    """An env's own string type: validation turns it into a plain str."""


def _info(**kw) -> dict:
    return {"error_kind": None, "local_reward": 0.25, "reward_breakdown": {"valid_call@1": 0.25}, "bad_call": False,
            "repaired": False, **kw}


CASES = {
    "the common case": (dict(), True),
    "a tool call": (dict(action=Action(text="", tool_call=ToolCall(name="f", arguments='{"a": 1}', id="c1"))), True),
    "an error kind": (dict(info=_info(error_kind="bad_json", bad_call=True)), True),
    "non-ASCII text": (dict(action=Action(text="café 😀")), True),
    "a token record": (dict(tokens=TokenRecord(prompt_ids=[1, 2], completion_ids=[3], logprobs=[-0.5],
                                                mask=[0, 0, 1], finish_reason="stop")), True),
    "an int reward": (dict(info=_info(local_reward=1)), False),
    "an int in the breakdown": (dict(info=_info(reward_breakdown={"x@1": 1})), False),
    "a numpy bool": (dict(info=_info(bad_call=np.bool_(True))), False),
    "a numpy float reward": (dict(info=_info(local_reward=np.float64(0.5))), False),
    "an observation of a str subclass": (dict(obs=_Text("seen")), False),
    "a Timings subclass": (dict(timings=type("MyTimings", (Timings,), {})(policy_s=0.5)), False),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_the_row_is_what_validation_builds(case, monkeypatch):
    kw, fast = case
    built: list[type] = []
    from_fields = episode_module.from_fields

    def counting(cls, fields_set, values, /):
        built.append(cls)
        return from_fields(cls, fields_set, values)

    monkeypatch.setattr(episode_module, "from_fields", counting)
    info = kw.get("info", _info())
    out = AgentTurn(kw.get("action", Action(text="<tool_call>{}</tool_call>")), kw.get("tokens"))
    row = step_row(_episode(), 3, kw.get("obs", "seen"), out, "next", info, False, False,
                   kw.get("timings", Timings(policy_s=0.5, env_s=0.25)))
    assert (StepRow in built) == fast  # values of other types are validated (and converted), as before
    # validation's own build from the same values, given as step_row gives them (all but schema_version)
    expected = StepRow(**{k: v for k, v in row.__dict__.items() if k != "schema_version"})
    assert row == expected and type(row) is StepRow and row.__dict__ == expected.__dict__
    assert row.model_fields_set == expected.model_fields_set == StepRow.model_fields.keys() - {"schema_version"}
    assert row.model_dump_json() == expected.model_dump_json()
    assert type(row.reward) is float and all(type(v) is float for v in row.reward_breakdown.values())
    assert type(row.bad_call) is bool and type(row.observation) is str
    assert row.reward_breakdown is not info["reward_breakdown"]  # the row owns its copy
    info["reward_breakdown"]["later"] = 9.0
    assert "later" not in row.reward_breakdown


def test_row_fields_in_order():
    """The store writes a row's fields in the order its ``__dict__`` holds them, as validation would."""
    info = _info()
    row = step_row(_episode(), 0, "seen", AgentTurn(Action(text="a")), "next", info, True, False)
    assert tuple(row.__dict__) == tuple(StepRow.model_fields)


def test_rows_take_the_episodes_fields_as_they_are_now():
    """The episode's fields a row copies are looked at for every row: a change between two steps shows."""
    ep, other = _episode(), _episode()
    other.episode_id = "r:2:0"
    out = AgentTurn(Action(text="a"))
    first = step_row(ep, 0, "o", out, "n", _info(), False, False)
    ep.run_id = "renamed"
    second = step_row(ep, 1, "o", out, "n", _info(), False, False)
    third = step_row(other, 0, "o", out, "n", _info(), False, False)
    assert (first.run_id, second.run_id, third.run_id) == ("r", "renamed", "r")
    assert (first.episode_id, third.episode_id) == ("r:1:0", "r:2:0")
    assert first.__dict__ is not second.__dict__ and first.run_id == "r"  # each row its own fields


def test_a_finished_episode_is_not_kept_alive_by_its_rows_maker():
    """step_row keeps nothing of the episode: once the caller drops it, it is freed."""
    import gc
    import weakref

    ep = _episode()
    step_row(ep, 0, "o", AgentTurn(Action(text="a")), "n", _info(), True, False)
    ref = weakref.ref(ep)
    del ep
    gc.collect()
    assert ref() is None
