"""Scale-out: rollout workers as Ray actors, episodes streamed back to the driver's store.

    rowgym collect rowgym/ToolAPI-Retail-v0 --agent vllm --backend ray --concurrency 256
    rowgym collect ... --backend ray --ray-address ray://head:10001     # an existing cluster

Each :class:`RolloutActor` runs the same asyncio worker pool as the local backend
(:func:`rowgym.rollouts.engine.run_keys`) over its slice of the episode keys, with
``concurrency / n_actors`` episodes in flight, and *yields* finished episodes as a Ray
streaming generator. The driver appends each one to the trajectory store as it arrives,
so the store format, the manifest and resume are exactly those of the asyncio backend
(a killed driver loses only the episodes in flight; actors die with their driver).

Ray is imported lazily (``pip install 'rowgym[ray]'``). Without ``ray_address`` a local
instance is started (and shut down at the end); actors need rowgym, the env's data and,
for LLM agents, the tokenizer directory on every node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from rowgym.errors import RowgymError
from rowgym.rollouts.episode import EpisodeKey
from rowgym.rows import Episode


class RolloutActor:
    """A Ray actor (wrapped with ``ray.remote`` at use) that plays a slice of episode keys."""

    def __init__(self, cfg: dict[str, Any]):
        from rowgym.rollouts.engine import CollectConfig, import_setup_modules

        self.cfg = CollectConfig(**cfg)
        import_setup_modules(self.cfg)

    async def ready(self) -> bool:
        """Import and build what episodes need (env class, agent, tokenizer) before play starts."""
        import rowgym
        from rowgym.agents import make_agent

        env = rowgym.make(self.cfg.env_id, **self.cfg.env_kwargs)
        agent = make_agent(self.cfg.agent, env, **self.cfg.agent_kwargs)
        await agent.aclose()
        await env.aclose()
        return True

    async def run(self, keys: list[tuple[str, int, int]], concurrency: int):
        """Play ``keys`` and yield lists of finished episodes as soon as they are done."""
        from rowgym.rollouts.engine import fewer_gc_pauses, run_keys

        done: asyncio.Queue[Episode] = asyncio.Queue()
        task = asyncio.create_task(run_keys(self.cfg, [EpisodeKey(*k) for k in keys], done.put_nowait,
                                            concurrency=concurrency))
        remaining = len(keys)
        with fewer_gc_pauses():
            while remaining:
                get = asyncio.ensure_future(done.get())
                await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    task.result()  # the pool ended early: raise its error to the driver
                    raise RowgymError(f"rollout actor stopped with {remaining} episodes unplayed")
                batch = [get.result()]
                while not done.empty():
                    batch.append(done.get_nowait())
                remaining -= len(batch)
                yield batch
        await task


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise RowgymError("the ray backend needs Ray: pip install 'rowgym[ray]'") from e
    return ray


def ensure_ray(address: str | None = None) -> bool:
    """Connect to Ray (``address``) or start a local instance; True if this call started it."""
    ray = _ray()
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=True,
             configure_logging=False)
    return True


async def run_keys_on_ray(cfg: Any, keys: list[EpisodeKey], on_episode: Callable[[Episode], Any]) -> float:
    """Play ``keys`` on Ray actors, calling ``on_episode`` in this process for each finished one.

    Returns the ``perf_counter`` time at which the actors were ready and play began (actor
    start-up is not rollout time).
    """
    ray = _ray()
    started = ensure_ray(cfg.ray_address)
    try:
        if not keys:
            return time.perf_counter()
        n = cfg.ray_actors or max(1, int(ray.cluster_resources().get("CPU", 1) // max(cfg.ray_actor_cpus, 1e-3)))
        n = max(1, min(n, len(keys), cfg.concurrency))
        per_actor = max(1, -(-cfg.concurrency // n))
        actor_cls = ray.remote(num_cpus=cfg.ray_actor_cpus, max_concurrency=4)(RolloutActor)
        d = cfg.to_dict()
        d.update(backend="asyncio", progress=False)
        actors = [actor_cls.remote(d) for _ in range(n)]
        try:
            await asyncio.gather(*(a.ready.remote() for a in actors))
            t0 = time.perf_counter()
            # round-robin slices keep each group's k samples spread, and every actor equally loaded
            slices = [[(k.run_id, k.seed, k.sample_index) for k in keys[i::n]] for i in range(n)]

            async def drain(actor: Any, part: list) -> None:
                async for ref in actor.run.remote(part, per_actor):
                    for ep in await ref:
                        on_episode(ep)

            await asyncio.gather(*(drain(a, part) for a, part in zip(actors, slices, strict=True) if part))
            return t0
        finally:
            for a in actors:
                ray.kill(a)
    finally:
        if started:
            ray.shutdown()
