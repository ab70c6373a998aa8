"""Multi-turn GRPO through rowgym: observation tokens are out of the loss, rewards reaching TRL are rowgym's."""

import random

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402

from rowgym.errors import HeldOutLeakError  # noqa: E402
from rowgym.trainers.grpo import GRPOOptions, episode_to_completion, make_grpo_trainer  # noqa: E402
from rowgym.trainers.tiny_model import build_tiny_model  # noqa: E402

pytestmark = pytest.mark.train
ENV = "rowgym/ToolAPI-Home-v0"
OPTS = GRPOOptions(max_steps=1, num_generations=2, prompts_per_step=2, n_prompts=8, max_turn_tokens=24, max_turns=3,
                   local_reward_weight=1.0, learning_rate=1e-3, log_rollouts=False)


def _trainer(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    md = build_tiny_model()
    return make_grpo_trainer(ENV, AutoModelForCausalLM.from_pretrained(md), AutoTokenizer.from_pretrained(md),
                             tmp_path, OPTS)


def _pad(rows, value):
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def test_loss_mask_is_env_mask_and_observations_get_no_gradient(tmp_path):
    trainer = _trainer(tmp_path)
    player = trainer.rowgym_player
    rollout = {}

    def varied_rewards(prompts, tr):  # random final rewards, so advantages (and gradients) are non-zero
        out = player(prompts, tr)
        rollout.update(out)
        out["final_reward"] = [random.Random(i).random() for i in range(len(prompts))]
        return out

    trainer.rollout_func = varied_rewards
    seen = {}
    compute_loss, logps_fn = trainer._compute_loss, trainer._get_per_token_logps_and_entropies

    def spy_loss(model, inputs):
        seen["inputs"] = inputs
        return compute_loss(model, inputs)

    def spy_logps(*a, **kw):
        logps, ent, aux = logps_fn(*a, **kw)
        if kw.get("compute_entropy") and torch.is_grad_enabled():  # the call inside _compute_loss
            logps.retain_grad()
            seen["logps"] = logps
        return logps, ent, aux

    trainer._compute_loss, trainer._get_per_token_logps_and_entropies = spy_loss, spy_logps
    trainer.train()

    inputs = seen["inputs"]
    # TRL shuffles the generation batch before the loss: match its rows to the rollout's by their ids
    order = []
    for row, cmask in zip(inputs["completion_ids"].tolist(), inputs["completion_mask"].tolist(), strict=True):
        ids = row[:sum(cmask)]
        order.append(next(i for i, c in enumerate(rollout["completion_ids"]) if c == ids and i not in order))
    env_mask = _pad([rollout["env_mask"][i] for i in order], 0)  # (B, T) rollout order -> TRL's order
    t = env_mask.shape[1]
    full = inputs["completion_mask"] * inputs["tool_mask"]  # what _compute_loss multiplies into the loss
    loss_mask = full[:, :t]
    assert torch.equal(loss_mask, env_mask), "TRL's loss mask differs from rowgym's env_mask"
    assert not full[:, t:].any()  # TRL's extra padding is masked too
    assert (env_mask == 0).any() and (env_mask == 1).any()  # multi-turn: both kinds of token present

    grad = seen["logps"].grad[:, :t]  # (B, T) d loss / d log p(token)
    assert grad is not None
    assert torch.all(grad[env_mask == 0] == 0), "observation tokens received gradient"
    assert torch.count_nonzero(grad[env_mask == 1]) > 0


def test_rewards_reaching_trl_are_rowgym_episode_rewards(tmp_path):
    trainer = _trainer(tmp_path)
    got = {}
    funcs = list(trainer.reward_funcs)

    def spy(fn):
        def wrapped(prompts, completions, **kw):
            out = fn(prompts, completions, **kw)
            got[fn.__name__] = (list(kw["episode_id"]), out)
            return out
        wrapped.__name__ = fn.__name__
        return wrapped

    trainer.reward_funcs = [spy(f) for f in funcs]
    trainer.train()
    eps = trainer.rowgym_player.last_episodes
    assert len(eps) == OPTS.num_generations * OPTS.prompts_per_step
    ids = [e.episode_id for e in eps]
    assert got["final_reward"] == (ids, [e.final_reward for e in eps])
    assert got["local_reward"] == (ids, [pytest.approx(e.local_return) for e in eps])
    # and TRL's own record of the per-function rewards it turned into advantages
    assert list(trainer._logs["rewards"]["final_reward"]) == [e.final_reward for e in eps]
    assert list(trainer._logs["rewards"]["local_reward"]) == pytest.approx([e.local_return for e in eps])
    # a GRPO group is a rowgym group: same env seed, sample indices 0..G-1
    for g in range(OPTS.prompts_per_step):
        grp = eps[g * OPTS.num_generations:(g + 1) * OPTS.num_generations]
        assert len({e.seed for e in grp}) == 1 and [e.sample_index for e in grp] == list(range(OPTS.num_generations))
        assert all(e.split == "train" for e in grp)


def test_episode_to_completion_concatenates_turns_exactly(tmp_path):
    trainer = _trainer(tmp_path)
    player = trainer.rowgym_player
    prompts = [trainer.train_dataset[0]["prompt"]] * 2
    out = player(prompts, trainer)
    for ep, cids, mask, lps in zip(player.last_episodes, out["completion_ids"], out["env_mask"], out["logprobs"],
                                   strict=True):
        last = ep.steps[-1].tokens
        assert out["prompt_ids"][0] == ep.steps[0].tokens.prompt_ids
        assert ep.steps[0].tokens.prompt_ids + cids == last.prompt_ids + last.completion_ids
        assert len(cids) == len(mask) == len(lps)
        sampled = [t for s in ep.steps for t in s.tokens.completion_ids]
        assert [t for t, m in zip(cids, mask, strict=True) if m] == sampled
        assert all(lp == 0.0 for lp, m in zip(lps, mask, strict=True) if not m)
    assert episode_to_completion(player.last_episodes[0].model_copy(update={"steps": []}), 2)["env_mask"] == [0]


def test_grpo_prompts_refuse_heldout():
    from rowgym.trainers.datasets import grpo_prompts

    with pytest.raises(HeldOutLeakError):
        grpo_prompts(ENV, "heldout", 2)
