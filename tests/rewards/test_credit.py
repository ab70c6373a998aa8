"""Credit assignment on hand-computed examples (the expected numbers are worked out by hand
in the comments, never by the code under test)."""

import math

import pytest

from rowgym.rewards.credit import (
    CreditConfig,
    assign_credit,
    discounted_returns,
    episode_return,
    episode_returns,
    group_advantages,
    step_group_advantages,
)
from rowgym.rows import Action, Episode, PolicyInfo, StepRow, Verdict

approx = pytest.approx


# ------------------------------------------------------------------ discounted returns
def test_discounted_returns_gamma_0_9():
    # r = [0.02, -0.1, 0.02], final 1.0 at the last turn, gamma 0.9:
    # G2 = 0.02 + 1.0 = 1.02;  G1 = -0.1 + 0.9*1.02 = 0.818;  G0 = 0.02 + 0.9*0.818 = 0.7562
    assert discounted_returns([0.02, -0.1, 0.02], gamma=0.9, final_reward=1.0) == approx([0.7562, 0.818, 1.02])


def test_discounted_returns_undiscounted_and_zero_gamma():
    # gamma 1: suffix sums  G2 = 1.02, G1 = 0.92, G0 = 0.94
    assert discounted_returns([0.02, -0.1, 0.02], gamma=1.0, final_reward=1.0) == approx([0.94, 0.92, 1.02])
    # gamma 0: each turn only sees its own reward (+ final at the end)
    assert discounted_returns([0.02, -0.1, 0.02], gamma=0.0, final_reward=1.0) == approx([0.02, -0.1, 1.02])


def test_discounted_returns_edges():
    assert discounted_returns([], gamma=0.9, final_reward=1.0) == []
    assert discounted_returns([0.5], gamma=0.9, final_reward=1.0) == approx([1.5])
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns([0.0], gamma=1.5)


# ----------------------------------------------------------------------- GRPO
def test_grpo_sample_std_like_trl():
    # group a: R = [1, 0, 0], mean 1/3, deviations 2/3, -1/3, -1/3, sum of squares 2/3,
    # sample var (2/3)/2 = 1/3, std 0.5773503  ->  A = 1.1547005, -0.5773503, -0.5773503
    # group b: all 0.5 -> std 0 -> A = 0
    r = [1.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    g = ["a", "a", "a", "b", "b", "b"]
    assert group_advantages(r, g, eps=0.0) == approx([1.1547005, -0.5773503, -0.5773503, 0.0, 0.0, 0.0])


def test_grpo_population_std_and_eps():
    # ddof 0: var 2/9, std 0.4714045 -> A = (2/3)/0.4714045 = 1.4142136, -(1/3)/0.4714045 = -0.7071068
    r, g = [1.0, 0.0, 0.0], ["a"] * 3
    assert group_advantages(r, g, eps=0.0, ddof=0) == approx([1.4142136, -0.7071068, -0.7071068])
    # eps 0.1: (2/3)/(0.5773503 + 0.1) = 0.6666667/0.6773503 = 0.9842274
    assert group_advantages(r, g, eps=0.1)[0] == approx(0.9842274)


def test_dr_grpo_no_std_scaling():
    # mean 1/3 -> A = R - 1/3
    assert group_advantages([1.0, 0.0, 0.0], ["a"] * 3, scale="none") == approx([0.6666667, -0.3333333, -0.3333333])
    # [1, 0, 1, 0]: mean 0.5
    assert group_advantages([1.0, 0.0, 1.0, 0.0], ["g"] * 4, scale="none") == [0.5, -0.5, 0.5, -0.5]


def test_grpo_singleton_group_and_errors():
    assert group_advantages([1.0, 0.3, 0.0], ["a", "b", "a"], eps=0.0) == approx(
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)])  # two members: +-(d/2)/(d/sqrt2) = +-0.7071068
    with pytest.raises(ValueError, match="labels"):
        group_advantages([1.0], ["a", "b"])
    with pytest.raises(ValueError, match="scale"):
        group_advantages([1.0], ["a"], scale="batch")


# ----------------------------------------------------------------- step groups
def test_step_group_advantages_arrays():
    # group g, states s0 (returns 0.5, -0.05) and s1 (1.0, 0.0), sX alone; group h also has s0 but alone.
    # s0: mean 0.225 -> +0.275, -0.275;  s1: mean 0.5 -> +0.5, -0.5;  sX, h/s0: 0
    G = [0.5, 1.0, -0.05, -0.1, 0.0, 0.7]
    grp = ["g", "g", "g", "g", "g", "h"]
    key = ["s0", "s1", "s0", "sX", "s1", "s0"]
    assert step_group_advantages(G, grp, key, scale="none") == approx([0.275, 0.5, -0.275, 0.0, -0.5, 0.0])


# ------------------------------------------------------------- whole episodes
def _episode(eid: str, group: str, obs: list[str], rewards: list[float], final: float,
             actions: list[str] | None = None) -> Episode:
    actions = actions or ["a"] * len(obs)
    steps = [StepRow(run_id="r", episode_id=eid, group_id=group, env_id="e", env_version="0", seed=0,
                     split="train", turn=t, observation=o, action=Action(text=a), next_observation="",
                     reward=r) for t, (o, r, a) in enumerate(zip(obs, rewards, actions, strict=True))]
    return Episode(run_id="r", episode_id=eid, group_id=group, env_id="e", env_version="0", seed=0,
                   split="train", task_hash="t", policy=PolicyInfo(agent="test"), steps=steps,
                   verdict=Verdict(reward=final, success=final > 0, verifier="v", verifier_version="1"))


@pytest.fixture
def batch() -> list[Episode]:
    return [
        _episode("A", "g", ["s0", "s1"], [0.0, 0.0], 1.0),
        _episode("B", "g", ["s0", "sX", "s1"], [0.0, -0.1, 0.0], 0.0, actions=["a", "b", "c"]),
        _episode("C", "h", ["s0"], [0.0], 1.0),
    ]


def test_episode_returns(batch):
    A, B, _ = batch
    # A: G1 = 1.0, G0 = 0.5*1.0 = 0.5;  B: G2 = 0, G1 = -0.1, G0 = 0.5*(-0.1) = -0.05
    assert episode_returns(A, gamma=0.5) == approx([0.5, 1.0])
    assert episode_returns(B, gamma=0.5) == approx([-0.05, -0.1, 0.0])
    assert episode_return(B) == approx(-0.1)
    assert episode_return(B, local_coef=0.0) == 0.0
    # local_coef 2: B's rewards become [0, -0.2, 0]: G = [-0.1, -0.2, 0]
    assert episode_returns(B, gamma=0.5, local_coef=2.0) == approx([-0.1, -0.2, 0.0])


def test_assign_credit_gigpo_dr(batch):
    cfg = CreditConfig(gamma=0.5, scale="none", omega=1.0)
    c = assign_credit(batch, cfg)
    # episode level, group g: R_A = 1.0, R_B = -0.1, mean 0.45 -> +0.55, -0.55; group h alone -> 0
    assert c["A"].episode_advantage == approx(0.55)
    assert c["B"].episode_advantage == approx(-0.55)
    assert c["C"].episode_advantage == 0.0
    # step level: s0 {A0 0.5, B0 -0.05} -> +-0.275; s1 {A1 1.0, B2 0.0} -> +-0.5; sX alone -> 0
    assert c["A"].step_advantages == approx([0.275, 0.5])
    assert c["B"].step_advantages == approx([-0.275, 0.0, -0.5])
    assert c["C"].step_advantages == [0.0]  # s0 in group h: not grouped with g's s0
    # combined: A = [0.55+0.275, 0.55+0.5], B = [-0.55-0.275, -0.55, -0.55-0.5]
    assert c["A"].advantages == approx([0.825, 1.05])
    assert c["B"].advantages == approx([-0.825, -0.55, -1.05])
    assert c["A"].returns == approx([0.5, 1.0])


def test_assign_credit_omega_and_plain_grpo(batch):
    c = assign_credit(batch, CreditConfig(gamma=0.5, scale="none", omega=0.5))
    # A = [0.55 + 0.1375, 0.55 + 0.25];  B = [-0.55 - 0.1375, -0.55, -0.55 - 0.25]
    assert c["A"].advantages == approx([0.6875, 0.8])
    assert c["B"].advantages == approx([-0.6875, -0.55, -0.8])
    g = assign_credit(batch, CreditConfig(omega=0.0, eps=0.0))
    # GRPO with sample std over two episodes: +-1/sqrt(2) on every step
    assert g["A"].advantages == approx([0.7071068, 0.7071068])
    assert g["B"].advantages == approx([-0.7071068] * 3)


def test_assign_credit_history_anchor(batch):
    c = assign_credit(batch, CreditConfig(gamma=0.5, scale="none", anchor="history"))
    # s0 at turn 0 has the same (empty) history in A and B -> +-0.275; s1 follows different
    # histories in A and B -> alone -> 0.  A = [0.825, 0.55], B = [-0.825, -0.55, -0.55]
    assert c["A"].advantages == approx([0.825, 0.55])
    assert c["B"].advantages == approx([-0.825, -0.55, -0.55])


def test_assign_credit_rejects_duplicates(batch):
    with pytest.raises(ValueError, match="duplicate"):
        assign_credit([batch[0], batch[0]])


def test_a_suspicious_verdict_pays_nothing_in_training():
    from rowgym.rewards.credit import episode_return, episode_returns, trained_final_reward
    from rowgym.rows import Episode, PolicyInfo, Verdict

    ep = Episode(run_id="r", episode_id="e", group_id="g", env_id="x", env_version="0", seed=0, split="train",
                 task_hash="h", policy=PolicyInfo(agent="a"),
                 verdict=Verdict(reward=1.0, success=True, verifier="v", verifier_version="1"))
    assert trained_final_reward(ep) == 1.0 and episode_return(ep) == 1.0
    flagged = ep.model_copy(update={"verdict": ep.verdict.model_copy(update={"flags": ["edited_tests", "suspicious"]})})
    assert trained_final_reward(flagged) == 0.0 and episode_return(flagged) == 0.0
    assert episode_returns(flagged) == []  # no turns: nothing credited
