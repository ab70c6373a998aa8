"""Per-token advantages for each --credit on a hand-computed two-episode group; the loss's masking and IS weights."""

import math

import pytest

from rowgym.rewards.credit import CreditConfig
from rowgym.rows import Action, Episode, PolicyInfo, StepRow, TokenRecord, Verdict
from rowgym.trainers.rl.batching import build_items, episode_tokens

R2 = 1 / math.sqrt(2)


def _step(ep_id, turn, obs, prompt, completion, lps, mask, reward):
    return StepRow(run_id="r", episode_id=ep_id, group_id="r:7", env_id="e", env_version="1", seed=7, split="train",
                   turn=turn, observation=obs, action=Action(text="x"), next_observation="o", reward=reward,
                   tokens=TokenRecord(prompt_ids=prompt, completion_ids=completion, logprobs=lps,
                                      mask=mask + [1] * len(completion)))


def _episode(ep_id, steps, final):
    return Episode(run_id="r", episode_id=ep_id, group_id="r:7", env_id="e", env_version="1", seed=7, split="train",
                   task_hash="t", policy=PolicyInfo(agent="hf"), steps=steps,
                   verdict=Verdict(reward=final, success=final > 0, verifier="v", verifier_version="1"))


def two_episodes():
    # A: turn 0 samples [4, 5] (local reward 0.5), the env answers [6, 7], turn 1 samples [8]; final reward 1
    a = _episode("r:7:0", [_step("r:7:0", 0, "start", [1, 2, 3], [4, 5], [-0.1, -0.2], [0, 0, 0], 0.5),
                           _step("r:7:0", 1, "obs-a", [1, 2, 3, 4, 5, 6, 7], [8], [-0.3], [0, 0, 0, 1, 1, 0, 0], 0.0)],
                 1.0)
    # B: same first observation, turn 0 samples [9], the env answers [10], turn 1 samples [11, 12]; final reward 0
    b = _episode("r:7:1", [_step("r:7:1", 0, "start", [1, 2, 3], [9], [-0.4], [0, 0, 0], 0.0),
                           _step("r:7:1", 1, "obs-b", [1, 2, 3, 9, 10], [11, 12], [-0.5, -0.6], [0, 0, 0, 1, 0], 0.0)],
                 0.0)
    return a, b


def test_episode_tokens_concatenate_turns_and_mask_observations():
    a, _ = two_episodes()
    t = episode_tokens(a)
    assert t.ids == [1, 2, 3, 4, 5, 6, 7, 8]
    assert t.mask == [0, 0, 0, 1, 1, 0, 0, 1]
    assert t.sampling_logprobs == [0, 0, 0, -0.1, -0.2, 0, 0, -0.3]
    assert t.turn == [-1, -1, -1, 0, 0, -1, -1, 1]


# Scores R = final + local: A 1.5, B 0; group mean 0.75, std (ddof 1) 0.75 * sqrt(2), so A_episode = +-1/sqrt(2).
# turn:  G_t (return-to-go) A [1.5, 1.0], B [0, 0] -> (G_t - 0.75) / (0.75 sqrt 2) = A [R2, R2/3], B [-R2, -R2].
# gigpo: turn 0 of A and B saw the same observation "start": a step group with returns 1.5 and 0 -> +-R2;
#        turn 1 observations differ -> 0. A_t = A_episode + A_step: A [2 R2, R2], B [-2 R2, -R2].
EXPECTED = {
    "grpo": ([0, 0, 0, R2, R2, 0, 0, R2], [0, 0, 0, -R2, 0, -R2, -R2]),
    "turn": ([0, 0, 0, R2, R2, 0, 0, R2 / 3], [0, 0, 0, -R2, 0, -R2, -R2]),
    "gigpo": ([0, 0, 0, 2 * R2, 2 * R2, 0, 0, R2], [0, 0, 0, -2 * R2, 0, -R2, -R2]),
}


@pytest.mark.parametrize("credit", sorted(EXPECTED))
def test_per_token_advantages_match_hand_computed_values(credit):
    items = build_items(list(two_episodes()), credit, CreditConfig(local_coef=1.0, gamma=1.0, omega=1.0))
    want_a, want_b = EXPECTED[credit]
    assert items[0].advantages == pytest.approx(want_a, abs=1e-5)
    assert items[1].advantages == pytest.approx(want_b, abs=1e-5)
    for it in items:  # observation and prompt tokens never carry an advantage
        assert all(a == 0.0 for a, m in zip(it.advantages, it.mask, strict=True) if not m)


def test_loss_gives_observation_tokens_no_gradient_and_truncates_is_weights():
    torch = pytest.importorskip("torch")
    from rowgym.trainers.rl.batching import collate
    from rowgym.trainers.rl.loss import grpo_loss

    items = build_items(list(two_episodes()), "grpo", CreditConfig(local_coef=1.0))
    b = collate(items, pad_id=0)
    logps = torch.full(b["mask"].shape, -0.2, requires_grad=True)
    # the sampler's logprob is far below the trainer's on one token: its weight exp(0.2 - ... ) is cut at C
    slp = b["sampling_logprobs"].clone()
    slp[0, 2] = -5.0  # target index 2 = token id 4 of A (policy token)
    loss, st = grpo_loss(logps, slp, b["advantages"], b["mask"], n_tokens=float(b["mask"].sum()), is_cap=2.0)
    loss.backward()
    g = logps.grad
    assert torch.all(g[b["mask"] == 0] == 0)
    assert torch.all(g[b["mask"] == 1] != 0)
    # d loss / d logp_i = -w_i A_i / N with w_i = min(exp(old - mu), C)
    n = float(b["mask"].sum())
    w = min(math.exp(-0.2 - (-5.0)), 2.0)
    assert g[0, 2].item() == pytest.approx(-w * R2 / n, rel=1e-5)
    w2 = math.exp(-0.2 - (-0.2))  # target 3 = id 5, sampled at -0.2: weight 1
    assert g[0, 3].item() == pytest.approx(-w2 * R2 / n, rel=1e-5)
    assert st["is_truncated_frac"] > 0
