"""Named, versioned final rewards on a hand-built episode."""

import pytest

from rowgym.rewards.final import BAD_CALL_RATE, LOCAL_RETURN, SUCCESS, VERIFIER, FinalRubric
from rowgym.rows import Action, Episode, PolicyInfo, StepRow, Verdict


def _episode(rewards, bad, final):
    steps = [StepRow(run_id="r", episode_id="e", group_id="g", env_id="x", env_version="0", seed=0, split="train",
                     turn=t, observation="o", action=Action(text="a"), next_observation="", reward=r, bad_call=b)
             for t, (r, b) in enumerate(zip(rewards, bad, strict=True))]
    return Episode(run_id="r", episode_id="e", group_id="g", env_id="x", env_version="0", seed=0, split="train",
                   task_hash="t", policy=PolicyInfo(agent="t"), steps=steps,
                   verdict=Verdict(reward=final, success=final == 1.0, verifier="v", verifier_version="1"))


def test_final_rubric_breakdown():
    ep = _episode([0.02, -0.1, 0.02, 0.02], [False, True, False, False], 1.0)
    rubric = FinalRubric([(VERIFIER, 1.0), (BAD_CALL_RATE, -0.5), (LOCAL_RETURN, 1.0)])
    total, breakdown = rubric.score(ep)
    # verifier 1.0; bad-call rate 1/4 * -0.5 = -0.125; local return 0.02-0.1+0.02+0.02 = -0.04
    assert breakdown == pytest.approx({"verifier@1": 1.0, "bad_call_rate@1": -0.125, "local_return@1": -0.04})
    assert total == pytest.approx(0.835)
    assert rubric.versions() == {"verifier": "1", "bad_call_rate": "1", "local_return": "1"}
    assert SUCCESS(ep) == 1.0 and SUCCESS(_episode([0.0], [False], 0.0)) == 0.0
