"""play_episode's cheaper storable check (rows built by step_row) still catches every unstorable field."""

from __future__ import annotations

import pytest

from rowgym.rollouts.episode import storable
from rowgym.rows import Action, Check, Episode, PolicyInfo, StepRow, Verdict


def _episode(**kw) -> Episode:
    ep = Episode(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1,
                 split="train", task_hash="h", policy=PolicyInfo(agent="a"), **kw)
    ep.steps.append(StepRow(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1,
                            split="train", turn=0, observation="o", action=Action(text="a"), next_observation="n",
                            reward=0.0, reward_breakdown={"fmt@1": 0.0}))
    return ep


@pytest.mark.parametrize("spoil, check", [
    (lambda ep: setattr(ep, "verdict", Verdict(reward=1, success=True, verifier="v", verifier_version="1",
                                                checks=[Check(name="c", passed=True, detail="x\ud800")])),
     lambda out: out.verdict.checks[0].detail == "x\ufffd"),
    (lambda ep: setattr(ep, "tools", '[{"name": "f\ud800"}]'), lambda out: out.tools == '[{"name": "f\ufffd"}]'),
])
def test_the_fast_check_cleans_what_the_full_check_cleans(spoil, check):
    ep = _episode()
    spoil(ep)
    with pytest.raises(Exception, match="surrogate"):
        ep.model_dump_json()
    out = storable(ep, rows_from_step_row=True)
    assert out is not ep and check(out) and out.failure is None
    out.model_dump_json()


def test_a_clean_episode_is_returned_as_is():
    ep = _episode()
    assert storable(ep, rows_from_step_row=True) is ep
    ep.steps[0].reward_breakdown["bad\udc00@1"] = 0.5  # pydantic writes a bad key without raising: as before
    assert storable(ep, rows_from_step_row=True) is ep and storable(ep) is ep
