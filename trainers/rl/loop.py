"""The loop: the rollout engine fills a run store, the trainer consumes complete groups from it.

    collectors (rollout engine, asyncio)                      trainer
    ------------------------------------                      -------
    admit(group of batch j) waits until version >= j - k
    play every episode of the admitted groups concurrently
      (each turn sampled under PolicyVersions.sampling(),
       its TokenRecord.policy_version = that version)
    -> store.append (fsync)  ------ on_stored ------------->  batch j complete?  read it back from the store
                                                             check staleness: every turn's version >= j - k
                                                             per-token advantages (grpo | turn | gigpo)
                                                             loss with truncated IS, optimizer step -> v = j+1
                                                             consumption.jsonl += step j+1's groups (fsync)
                                                             checkpoint step j+1 (atomic rename)
    (no turn sampled while the weights change)  <---------  push weights (copy / vLLM reload_weights) -> v = j+1
                                                             wake admissions

k = ``max_staleness``; k = 0 is synchronous on-policy GRPO.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rowgym.agents.token_policy import PolicyVersions
from rowgym.errors import RowgymError
from rowgym.rewards.credit import CreditConfig
from rowgym.rows import Episode, PolicyVersion
from rowgym.trainers.rl.batching import build_items, collate, usable
from rowgym.trainers.rl.config import GRPOOptions
from rowgym.trainers.rl.loss import grpo_loss, token_logprobs
from rowgym.trainers.rl.record import Checkpoints, ConsumptionRecord
from rowgym.trainers.rl.sync import InProcessSync, VLLMSync, weights_hash

RUN_DIR, CHECKPOINTS, CONSUMPTION = "run", "checkpoints", "consumption.jsonl"
CRASH_ENV = "ROWGYM_RL_CRASH"
"""Tests: ``after_record:N`` or ``after_checkpoint:N`` sends SIGKILL to this process at that point of step N."""


@dataclass
class GRPOResult:
    out_dir: Path
    step_rewards: list[float]
    """Mean final reward of each optimizer step's batch."""
    step_success: list[float]
    step_seconds: list[float]
    """Wall seconds of each optimizer step (waiting for its batch included)."""
    wall_s: float
    run_dir: Path | None = None
    step_cpu_s: list[float] = field(default_factory=list)
    """CPU seconds of this process (all threads: sampling, envs, training) per optimizer step."""
    start_step: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"], d["run_dir"] = str(self.out_dir), str(self.run_dir)
        return d


def _maybe_crash(point: str, step: int) -> None:
    want = os.environ.get(CRASH_ENV, "")
    if want == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


class _Groups:
    """Which stored episodes each seed has; wakes the trainer when a batch is complete."""

    def __init__(self, seeds: list[int], per_step: int, group_size: int):
        self.batch_of = {s: i // per_step for i, s in enumerate(seeds)}
        self.seeds, self.per_step, self.group_size = seeds, per_step, group_size
        self.stored: dict[int, set[str]] = {s: set() for s in seeds}
        self.changed = asyncio.Event()

    def add(self, ep: Episode) -> None:
        if ep.seed in self.stored:
            self.stored[ep.seed].add(ep.episode_id)
            self.changed.set()

    def batch_seeds(self, j: int) -> list[int]:
        return self.seeds[j * self.per_step:(j + 1) * self.per_step]

    def complete(self, j: int) -> bool:
        return all(len(self.stored[s]) >= self.group_size for s in self.batch_seeds(j))

    async def wait(self, j: int, collector: asyncio.Task) -> None:
        while not self.complete(j):
            self.changed.clear()
            waiter = asyncio.ensure_future(self.changed.wait())
            done, _ = await asyncio.wait({waiter, collector}, return_when=asyncio.FIRST_COMPLETED)
            if collector in done and not self.complete(j):
                waiter.cancel()
                collector.result()  # raises the collector's error, if any
                raise RowgymError(f"the collection ended but batch {j} is incomplete")


def _read_batch(run_dir: Path, seeds: list[int], ids: set[str]) -> list[Episode]:
    """The batch's episodes (``ids``, of ``seeds``) as the store holds them; only their lines are parsed."""
    from rowgym.store import TrajectoryStore

    want = set(seeds)
    store = TrajectoryStore(run_dir, readonly=True)
    eps = [e for e in store.episodes(only=ids) if e.seed in want]
    if store.quarantined:
        raise RowgymError(f"the run store {run_dir} has malformed records: {list(store.quarantined.values())[:2]}")
    missing = ids - {e.episode_id for e in eps}
    if missing:  # never train on part of a batch (a step on none of it once went by silently)
        raise RowgymError(f"the run store {run_dir} did not give back {len(missing)} episode(s) of the batch it "
                          f"reported stored: {sorted(missing)[:3]}")
    return sorted(eps, key=lambda e: (seeds.index(e.seed), e.sample_index))


class Learner:
    """The trainer's side: the model, its optimizer and one optimizer step on a batch of episodes."""

    def __init__(self, model: Any, opts: GRPOOptions, pad_id: int):
        import torch

        self.model, self.opts, self.pad_id = model, opts, pad_id
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=opts.learning_rate, weight_decay=0.0)

    def step(self, episodes: list[Episode]) -> dict[str, float]:
        import torch

        o = self.opts
        cfg = CreditConfig(gamma=o.gamma, local_coef=o.local_reward_weight, scale=o.scale_rewards,  # type: ignore[arg-type]
                           omega=o.omega)
        items = build_items(episodes, o.credit, cfg)
        n_tok = sum(it.n_policy_tokens for it in items)
        stats: dict[str, float] = {"policy_tokens": float(n_tok), "episodes": float(len(items))}
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if n_tok == 0 or all(a == 0.0 for it in items for a in it.advantages):
            stats.update(loss=0.0, grad_norm=0.0, skipped=1.0)  # no signal: the step still counts (and is recorded)
            return stats
        mb = o.micro_batch or len(items)
        agg: dict[str, list[float]] = {}
        total = 0.0
        for i in range(0, len(items), mb):
            b = collate(items[i:i + mb], self.pad_id)
            logps = token_logprobs(self.model, b["input_ids"], b["attention_mask"], o.temperature)
            loss, st = grpo_loss(logps, b["sampling_logprobs"], b["advantages"], b["mask"], n_tokens=n_tok,
                                 is_cap=o.is_cap, clip_eps=o.clip_eps)
            loss.backward()
            total += float(loss.detach())
            for k, v in st.items():
                agg.setdefault(k, []).append(v)
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        stats.update(loss=total, grad_norm=float(gn), skipped=0.0,
                     is_weight_mean=sum(agg["is_weight_mean"]) / len(agg["is_weight_mean"]),
                     is_truncated_frac=max(agg["is_truncated_frac"]),
                     abs_logp_diff_max=max(agg["abs_logp_diff_max"]))
        return stats


async def run_grpo(env_id: str, model_dir: Path, out: Path, opts: GRPOOptions, *,
                   env_kwargs: dict[str, Any] | None = None, log: Any = None) -> GRPOResult:
    """The loop of the module doc on the running event loop (:func:`rowgym.trainers.grpo.train_grpo` runs it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import rowgym
    from rowgym.rollouts.engine import CollectConfig, Hooks, acollect

    opts.validate()
    log = log or (lambda msg: print(f"[grpo] {msg}", flush=True))
    t_start = time.perf_counter()
    torch.manual_seed(opts.seed)
    env_kwargs = dict(env_kwargs or {})
    if opts.max_turns:
        env_kwargs["max_turns"] = opts.max_turns
    run_dir, ckpts, record = out / RUN_DIR, Checkpoints(out / CHECKPOINTS, opts.keep_checkpoints), \
        ConsumptionRecord(out / CONSUMPTION)
    if not opts.resume and (run_dir.exists() or ckpts.steps() or record.path.exists()):
        raise RowgymError(f"{out} already holds a GRPO run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config._name_or_path = str(model_dir)  # the run's identity names the base model, not a checkpoint
    eos = tok.convert_tokens_to_ids(tok.eos_token)
    learner = Learner(model, opts, tok.pad_token_id if tok.pad_token_id is not None else eos)

    start = 0
    if opts.resume:
        last = ckpts.latest()
        if last is not None:
            state = ckpts.load(last, model, learner.optimizer)
            start = state["step"]
            if weights_hash(model) != state["weights_hash"]:
                raise RowgymError(f"checkpoint step {start}: the loaded weights do not match their recorded hash")
        dropped = record.truncate_after(start)
        log(f"resuming after optimizer step {start}" + (f"; steps {[e['step'] for e in dropped]} were trained "
                                                        f"into weights lost in the crash and run again"
                                                        if dropped else ""))
    res = GRPOResult(out, [], [], [], 0.0, run_dir=run_dir, start_step=start)
    if start >= opts.max_steps:
        log(f"{out} already has {start} optimizer steps (asked for {opts.max_steps}); nothing to train")
        return _finish(res, model, tok, out, t_start)
    version = PolicyVersion(step=start, weights_hash=weights_hash(model))
    versions = PolicyVersions(version)
    k, P, G = opts.max_staleness, opts.prompts_per_step, opts.num_generations

    # ---- the sampling policy
    server = None
    common = {"temperature": opts.temperature, "max_tokens": opts.max_turn_tokens}
    if opts.policy == "hf":
        from rowgym.agents.hf_policy import BatchedSampler, HFPolicy

        sampler_model = model if k == 0 else copy.deepcopy(model)
        sampler = BatchedSampler(sampler_model, tok, temperature=opts.temperature, max_tokens=opts.max_turn_tokens,
                                 max_batch=max(P * G, 1)) if opts.batched_sampling else None
        agent_kwargs = {"model_dir": str(model_dir), "seed": opts.seed, **common}

        def make_agent(cfg: CollectConfig, env: Any) -> Any:
            a = HFPolicy(model=sampler_model, tokenizer=tok, seed=opts.seed, sampler=sampler, **common)
            a.versions = versions
            return a

        sync: Any = InProcessSync(versions, sampler_model, model)
    else:
        from rowgym.agents.llm import VLLMAgent
        from rowgym.agents.serving import ServerConfig, VLLMServer, free_port

        base_url = opts.base_url
        if base_url is None:
            server = VLLMServer(ServerConfig(model_dir=model_dir, port=opts.vllm_port or free_port(),
                                             weight_reload=True, log_path=out / "vllm-server.log",
                                             startup_timeout=900))
            log(f"starting the vLLM server (log {server.log_path})")
            await asyncio.to_thread(server.start)
            base_url = server.base_url
        agent_kwargs = {"base_url": base_url, "model_dir": str(model_dir), **common}

        def make_agent(cfg: CollectConfig, env: Any) -> Any:
            a = VLLMAgent(**agent_kwargs)
            a.versions = versions
            return a

        sync = VLLMSync(versions, base_url)
    try:
        if start > 0 and opts.policy == "vllm":  # the fresh server has the base weights: load the checkpoint's
            await sync.push(version, ckpts.path(start) / "model")

        probe = rowgym.make(env_id, **env_kwargs)
        try:
            seeds = probe.splits.seeds("train", opts.max_steps * P)
        finally:
            probe.close()
        if len(seeds) < opts.max_steps * P:
            raise RowgymError(f"{env_id} has {len(seeds)} train seeds; {opts.max_steps} steps x {P} need more")
        groups = _Groups(seeds, P, G)
        if (run_dir / "shards").is_dir():
            from rowgym.store import TrajectoryStore

            for e in TrajectoryStore(run_dir, readonly=True).episodes():
                groups.add(e)

        admission = asyncio.Condition()

        async def admit(key: Any) -> None:
            j = groups.batch_of[key.seed]
            if versions.current.step >= j - k:
                return
            async with admission:
                await admission.wait_for(lambda: versions.current.step >= j - k)

        ccfg = CollectConfig(env_id=env_id, agent=opts.policy, split="train", episodes=opts.max_steps * P,
                             out=run_dir, group_size=G, concurrency=opts.concurrency or P * G,
                             agent_kwargs=agent_kwargs, env_kwargs=env_kwargs, resume=True, progress=False)
        collector = asyncio.create_task(acollect(ccfg, Hooks(make_agent=make_agent, admit=admit,
                                                             on_stored=groups.add)))
        try:
            t_step, c_step = time.perf_counter(), time.process_time()
            for n in range(start + 1, opts.max_steps + 1):
                j = n - 1
                await groups.wait(j, collector)
                batch = groups.batch_seeds(j)
                ids = {i for s in batch for i in groups.stored[s]}
                eps = await asyncio.to_thread(_read_batch, run_dir, batch, ids)
                sampled = [v.step for e in eps for s in e.steps if s.tokens and (v := s.tokens.policy_version)]
                oldest = min(sampled, default=versions.current.step)
                if oldest < j - k:
                    raise RowgymError(f"step {n}: batch {j} holds turns sampled by version {oldest}, older than "
                                      f"the staleness bound {j} - {k}")
                train_eps = [e for e in eps if usable(e)]
                left_out = sorted(e.episode_id for e in eps if not usable(e))
                stats = await asyncio.to_thread(learner.step, train_eps)
                version = PolicyVersion(step=n, weights_hash=await asyncio.to_thread(weights_hash, model))
                entry = {"step": n, "trained_by_version": j, "new_version": version.model_dump(),
                         "group_ids": sorted({e.group_id for e in eps}),
                         "episode_ids": [e.episode_id for e in train_eps], "left_out": left_out,
                         "sampled_by_versions": sorted(set(sampled)),
                         "mean_final_reward": sum(e.final_reward for e in eps) / max(1, len(eps)),
                         "success": sum(e.success for e in eps) / max(1, len(eps)),
                         "stats": {k2: round(v, 6) for k2, v in stats.items()}}
                record.append(entry)
                _maybe_crash("after_record", n)
                ck = await asyncio.to_thread(ckpts.save, n, model, learner.optimizer,
                                             {"weights_hash": version.weights_hash})
                _maybe_crash("after_checkpoint", n)
                await sync.push(version, ck / "model")
                async with admission:
                    admission.notify_all()
                now = time.perf_counter()
                res.step_rewards.append(entry["mean_final_reward"])
                res.step_success.append(entry["success"])
                res.step_seconds.append(round(now - t_step, 3))
                res.step_cpu_s.append(round(time.process_time() - c_step, 3))
                res.steps.append(entry)
                t_step, c_step = now, time.process_time()
                log(f"step {n}/{opts.max_steps}: reward {entry['mean_final_reward']:.3f} success "
                    f"{entry['success']:.2f} sampled by v{entry['sampled_by_versions']} loss {stats['loss']:.4f} "
                    f"tokens {int(stats['policy_tokens'])} ({res.step_seconds[-1]:.1f}s)")
            await collector
        finally:
            if not collector.done():
                collector.cancel()
                await asyncio.gather(collector, return_exceptions=True)
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)

    return _finish(res, model, tok, out, t_start)


def _finish(res: GRPOResult, model: Any, tok: Any, out: Path, t_start: float) -> GRPOResult:
    from rowgym.trainers.tiny_model import _fix_tokenizer_config

    model.save_pretrained(out)
    tok.save_pretrained(out)
    _fix_tokenizer_config(out)
    res.wall_s = round(time.perf_counter() - t_start, 2)
    (out / "grpo_result.json").write_text(json.dumps(res.to_json(), indent=2) + "\n")
    return res
