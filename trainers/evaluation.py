"""Greedy evaluation of an in-process model: one episode per seed, all through the rollout engine.

Every episode is in flight at once and their turns are sampled in batches
(:class:`rowgym.agents.hf_policy.BatchedSampler`). The demo and ``make learn`` aggregate the
returned episodes their own way.
"""

from __future__ import annotations

from typing import Any

from rowgym.rows import Episode


def greedy_episodes(model: Any, tokenizer: Any, env_id: str, seeds: list[int], split: str, *, max_turns: int,
                    max_tokens: int, max_batch: int, key_prefix: str = "eval") -> list[Episode]:
    """One greedy episode of ``env_id`` per seed, in the order of ``seeds``; raises if a seed is not of ``split``."""
    from rowgym import aio
    from rowgym.agents.hf_policy import BatchedSampler, HFPolicy
    from rowgym.rollouts.engine import CollectConfig, Hooks, run_keys
    from rowgym.rollouts.episode import EpisodeKey

    sampler = BatchedSampler(model, tokenizer, temperature=0.0, max_tokens=max_tokens, max_batch=max_batch)
    cfg = CollectConfig(env_id=env_id, agent="hf", split=split, env_kwargs={"max_turns": max_turns}, progress=False)

    def make(cfg: CollectConfig, env: Any) -> Any:
        return HFPolicy(model=model, tokenizer=tokenizer, temperature=0.0, max_tokens=max_tokens, sampler=sampler)

    keys = [EpisodeKey(key_prefix, s) for s in seeds]
    got: dict[str, Episode] = {}
    was = model.training
    model.eval()
    try:
        aio.run(run_keys(cfg, keys, lambda ep: got.__setitem__(ep.episode_id, ep), concurrency=len(keys),
                         hooks=Hooks(make_agent=make)))
    finally:
        model.train(was)
    eps = [got[k.episode_id] for k in keys]
    wrong = [e.seed for e in eps if e.split.value != split]
    if wrong:
        raise RuntimeError(f"seeds {wrong[:5]} are not {split} seeds")
    return eps
