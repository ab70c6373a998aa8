import json

import pytest
from pydantic import ValidationError

from rowgym.rows import (
    Action,
    Episode,
    PolicyInfo,
    RunManifest,
    RunSource,
    StepRow,
    TokenRecord,
    ToolCall,
    Verdict,
)


def make_step(**kw):
    base = dict(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="rowgym/X-v0", env_version="0", seed=1,
                split="train", turn=0, observation="hi", action=Action.call("finish", answer="x"),
                next_observation="bye", reward=0.02, reward_breakdown={"valid_call@1": 0.02})
    return StepRow(**{**base, **kw})


def test_step_row_json_round_trip_keeps_everything():
    row = make_step(tokens=TokenRecord(prompt_ids=[1, 2], completion_ids=[3], logprobs=[-0.5], mask=[0, 0, 1]),
                    bad_call=True, error_kind="bad_json")
    again = StepRow.model_validate_json(row.model_dump_json())
    assert again == row
    assert again.tokens.completion_ids == [3]
    assert again.split == "train" and again.schema_version == 1


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError):
        StepRow.model_validate({**make_step().model_dump(), "surprise": 1})
    with pytest.raises(ValidationError):
        ToolCall(name="x", arguments="{}", extra=1)


def test_bad_split_is_rejected():
    with pytest.raises(ValidationError):
        make_step(split="test")


def test_episode_round_trip_and_derived_numbers():
    ep = Episode(run_id="r", episode_id="e", group_id="g", env_id="rowgym/X-v0", env_version="0", seed=1,
                 split="heldout", task_hash="abc", policy=PolicyInfo(agent="expert"),
                 steps=[make_step(), make_step(turn=1, bad_call=True, reward=-0.1)],
                 verdict=Verdict(reward=1.0, success=True, verifier="v", verifier_version="1"))
    again = Episode.model_validate_json(ep.model_dump_json())
    assert again == ep
    assert again.success and again.n_bad_calls == 1 and again.local_return == pytest.approx(-0.08)


def test_manifest_round_trip():
    m = RunManifest(run_id="r", rowgym_version="0", policy=PolicyInfo(agent="random"),
                    source=RunSource(env_id="e", env_version="0", split="dev", seeds=[1, 2], seed_set_hash="h"))
    assert RunManifest.model_validate_json(m.model_dump_json()) == m


def test_action_call_uses_json_string_arguments():
    a = Action.call("get_order", order_id="#W1", n=2)
    assert json.loads(a.tool_call.arguments) == {"order_id": "#W1", "n": 2}
