"""Bench metrics against hand-computed values."""

from math import comb

import pytest

from rowgym.evals.metrics import bootstrap_ci, group_metrics, outcome, pass_at_k, pass_hat_k
from rowgym.rows import Action, Episode, Failure, PolicyInfo, StepRow, TokenRecord, Verdict


def test_pass_at_k_hand_computed():
    # n=5 attempts, c=2 successes, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)      # pass@1 = c/n
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0                     # n - c < k: some success is certain
    assert pass_at_k(3, 1, 3) == 1.0


def test_pass_hat_k_hand_computed():
    # tau-bench pass^k: C(c,k)/C(n,k); n=5, c=3, k=2 -> 3/10
    assert pass_hat_k(5, 3, 2) == pytest.approx(0.3)
    assert pass_hat_k(5, 3, 1) == pytest.approx(0.6)
    assert pass_hat_k(5, 5, 5) == 1.0
    assert pass_hat_k(5, 4, 5) == 0.0
    assert pass_hat_k(4, 2, 2) == pytest.approx(1 / comb(4, 2))


def test_pass_k_rejects_k_larger_than_n():
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)
    with pytest.raises(ValueError):
        pass_hat_k(2, 3, 1)


def test_bootstrap_ci_contains_mean_and_is_seeded():
    tasks = [[1.0], [0.0], [1.0], [1.0], [0.0], [1.0], [0.0], [1.0], [1.0], [1.0]]
    lo, hi = bootstrap_ci(tasks, seed=3)
    assert lo <= 0.7 <= hi and 0.0 <= lo < hi <= 1.0
    assert bootstrap_ci(tasks, seed=3) == (lo, hi)
    assert bootstrap_ci([[1.0, 1.0]] * 4) == (1.0, 1.0)
    assert bootstrap_ci([]) == (0.0, 0.0)


def _ep(seed: int, i: int, *, success: bool, turns: int = 2, bad: int = 0, truncated: bool = False,
        failure: str | None = None, tokens: int = 0) -> Episode:
    steps = []
    for t in range(turns):
        last = t == turns - 1
        tok = TokenRecord(prompt_ids=[1] * 10, completion_ids=[2] * tokens, logprobs=[0.0] * tokens,
                          mask=[0] * 10 + [1] * tokens) if tokens else None
        steps.append(StepRow(run_id="r", episode_id=f"r:{seed}:{i}", group_id=f"r:{seed}", env_id="e", env_version="0",
                             seed=seed, split="heldout", turn=t, observation="o", action=Action(text="a"),
                             next_observation="n", reward=0.0, bad_call=t < bad, terminated=last and not truncated,
                             truncated=last and truncated, tokens=tok))
    verdict = None if failure else Verdict(reward=1.0 if success else 0.25, success=success, verifier="v",
                                           verifier_version="1")
    return Episode(run_id="r", episode_id=f"r:{seed}:{i}", group_id=f"r:{seed}", sample_index=i, env_id="e",
                   env_version="0", seed=seed, split="heldout", task_hash=f"h{seed}", policy=PolicyInfo(agent="a"),
                   steps=steps, verdict=verdict, failure=Failure(kind=failure, reason="x") if failure else None,
                   duration_s=0.5)


def test_group_metrics_hand_computed():
    # task 1: 3/3 successes; task 2: 1/3; task 3: 0/3 (one truncated, one policy failure)
    eps = [_ep(1, i, success=True, tokens=4) for i in range(3)]
    eps += [_ep(2, 0, success=True, bad=1), _ep(2, 1, success=False), _ep(2, 2, success=False, bad=2)]
    eps += [_ep(3, 0, success=False, truncated=True), _ep(3, 1, success=False, failure="policy"),
            _ep(3, 2, success=False)]
    m = group_metrics("e", "a", eps)
    assert (m.n_episodes, m.n_tasks, m.attempts) == (9, 3, 3)
    assert m.success_rate == pytest.approx(4 / 9)
    assert m.success_ci[0] <= m.success_rate <= m.success_ci[1]
    assert m.pass_at[1] == pytest.approx(4 / 9)
    # pass@2 per task: 1, 1 - C(2,2)/C(3,2) = 2/3, 0 -> mean 5/9
    assert m.pass_at[2] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m.pass_at[3] == pytest.approx(2 / 3)
    # pass^2 per task: 1, 0, 0; pass^3: 1, 0, 0
    assert m.pass_hat[2] == pytest.approx(1 / 3)
    assert m.pass_hat[3] == pytest.approx(1 / 3)
    # rewards: 4 successes at 1.0, 4 wrong/truncated at 0.25, the failed episode has no verdict (0)
    assert m.mean_reward == pytest.approx((4 * 1.0 + 4 * 0.25) / 9)
    assert m.mean_turns == 2.0
    assert m.bad_call_rate == pytest.approx(3 / 18)
    assert m.mean_completion_tokens == pytest.approx(3 * 2 * 4 / 9)
    assert m.total_tokens == 3 * 2 * (4 + 10)
    assert m.outcomes == {"success": 4, "wrong": 3, "truncated": 1, "failure:policy": 1}
    assert m.episode_ids["failure:policy"] == ["r:3:1"]
    assert m.episode_ids["truncated"] == ["r:3:0"]
    assert sorted(m.episode_ids["bad_call"]) == ["r:2:0", "r:2:2"]
    assert len(m.episode_ids["all"]) == 9
    assert m.per_task[2] == {"task_hash": "h2", "n": 3, "c": 1, "episode_ids": ["r:2:0", "r:2:1", "r:2:2"]}
    assert m.mean_time_s == 0.5
    head = m.headline()
    assert head["pass@3"] == round(2 / 3, 4) and head["pass^3"] == round(1 / 3, 4)


def test_outcome_attribution():
    assert outcome(_ep(1, 0, success=True)) == "success"
    assert outcome(_ep(1, 0, success=False, failure="timeout")) == "failure:timeout"
    assert outcome(_ep(1, 0, success=False, truncated=True)) == "truncated"
    assert outcome(_ep(1, 0, success=False)) == "wrong"


def test_empty_group():
    m = group_metrics("e", "a", [])
    assert m.n_episodes == 0 and m.success_rate == 0.0
