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

**Placement by resource.** Actors ask for ``ray_actor_cpus`` CPUs and, when the env's
spec is tagged ``browser``, ``sandbox`` or ``docker`` and the cluster declares a custom
resource of that name (``ray start --resources '{"browser": 4}'``), one unit of it: a node
with ``{"browser": 4}`` hosts at most 4 browser actors and nodes without it host none.
``CollectConfig.ray_resources`` names the resources explicitly.

**Node loss.** When an actor dies (its node removed, the process killed, an object on
that node lost), the driver knows which of its keys it has received; the rest are handed
to the surviving actors (or to a new actor, if none survives and the cluster can place
one). The driver stores each episode id once: an episode that finished on a dead node but
never reached the driver is played again elsewhere, and none is stored twice.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rowgym.errors import RowgymError
from rowgym.rollouts.episode import EpisodeKey
from rowgym.rows import Episode

log = logging.getLogger(__name__)
RESOURCE_TAGS = ("browser", "sandbox", "docker")
"""Env spec tags that name a custom Ray resource an actor needs (when the cluster declares it)."""
ACTOR_START_TIMEOUT_S = 300.0


class RolloutActor:
    """A Ray actor (wrapped with ``ray.remote`` at use) that plays a slice of episode keys."""

    def __init__(self, cfg: dict[str, Any]):
        from rowgym.rollouts.engine import CollectConfig, import_setup_modules

        self.cfg = CollectConfig(**cfg)
        import_setup_modules(self.cfg)

    async def ready(self) -> str:
        """Import and build what episodes need (env class, agent, tokenizer); returns this actor's node id."""
        import ray

        import rowgym
        from rowgym.agents import make_agent

        env = rowgym.make(self.cfg.env_id, **self.cfg.env_kwargs)
        agent = make_agent(self.cfg.agent, env, **self.cfg.agent_kwargs)
        await agent.aclose()
        await env.aclose()
        return ray.get_runtime_context().get_node_id()

    async def policy_stats(self) -> tuple[dict, dict]:
        """This actor's per-policy-server counters (see :func:`rowgym.agents.llm.server_stats`)."""
        llm = sys.modules.get("rowgym.agents.llm")
        return llm.raw_server_stats() if llm is not None else ({}, {})

    async def run(self, keys: list[tuple[str, int, int]], concurrency: int):
        """Play ``keys`` and yield lists of finished episodes as soon as they are done."""
        from rowgym.rollouts.engine import fewer_gc_pauses, run_keys

        done: asyncio.Queue[Episode] = asyncio.Queue()
        task = asyncio.create_task(run_keys(self.cfg, [EpisodeKey(*k) for k in keys], done.put_nowait,
                                            concurrency=concurrency))
        remaining = len(keys)
        with fewer_gc_pauses(min(concurrency, len(keys))):
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


def actor_resources(cfg: Any, cluster: dict[str, float]) -> dict[str, float]:
    """Custom resources one actor needs: ``cfg.ray_resources`` if set, else the env's resource tags the cluster has."""
    explicit = cfg.ray_resources
    if explicit:
        missing = {k: v for k, v in explicit.items() if cluster.get(k, 0) < v}
        if missing:
            have = ", ".join(f"{k}={v:g}" for k, v in sorted(cluster.items()) if k not in ("memory",
                             "object_store_memory") and not k.startswith("node:")) or "none"
            raise RowgymError(f"no node of the Ray cluster offers {missing} (an actor would wait forever); "
                              f"the cluster has: {have}. Start nodes with e.g. `ray start --resources "
                              f"'{{\"{next(iter(missing))}\": 1}}'`")
        return dict(explicit)
    if cfg.env_id.startswith(("http://", "https://")):
        return {}  # the env runs on its server; actors only need CPU
    from rowgym.registry import spec

    tags = spec(cfg.env_id).tags
    return {t: 1.0 for t in RESOURCE_TAGS if t in tags and cluster.get(t, 0) > 0}


@dataclass
class RayRun:
    """What the last :func:`run_keys_on_ray` did (for tests and diagnostics)."""

    resources: dict[str, float] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    """The node id of each actor started, in order."""
    lost_actors: int = 0
    replayed: int = 0
    """Episodes handed to another actor because theirs died before delivering them."""
    duplicates_dropped: int = 0


LAST_RUN = RayRun()
_LOST = ("RayActorError", "ObjectLostError", "NodeDiedError", "WorkerCrashedError", "LocalRayletDiedError")


def _is_loss(e: BaseException, ray: Any) -> bool:
    """An actor, its node or its objects are gone (not an error raised by rowgym code in the actor)."""
    lost = tuple(getattr(ray.exceptions, n) for n in _LOST if hasattr(ray.exceptions, n))
    return isinstance(e, lost) and not isinstance(e, ray.exceptions.RayTaskError)


async def run_keys_on_ray(cfg: Any, keys: list[EpisodeKey], on_episode: Callable[[Episode], Any]) -> float:
    """Play ``keys`` on Ray actors, calling ``on_episode`` in this process for each finished one (once per id).

    Returns the ``perf_counter`` time at which the actors were ready and play began (actor
    start-up is not rollout time).
    """
    global LAST_RUN
    ray = _ray()
    started = ensure_ray(cfg.ray_address)
    LAST_RUN = run = RayRun()
    try:
        if not keys:
            return time.perf_counter()
        cluster = ray.cluster_resources()
        run.resources = resources = actor_resources(cfg, cluster)
        fits = [cluster.get("CPU", 1) // max(cfg.ray_actor_cpus, 1e-3)]
        fits += [cluster.get(r, 0) // amount for r, amount in resources.items()]
        n = cfg.ray_actors or max(1, int(min(fits)))
        n = max(1, min(n, len(keys), cfg.concurrency))
        per_actor = max(1, -(-cfg.concurrency // n))
        actor_cls = ray.remote(num_cpus=cfg.ray_actor_cpus, resources=resources or None, max_concurrency=64,
                               max_restarts=0)(RolloutActor)
        d = cfg.to_dict()
        d.update(backend="asyncio", progress=False)
        received: set[str] = set()
        live: dict[Any, int] = {}  # actor -> keys outstanding
        everyone: list[Any] = []

        async def start_actor() -> Any:
            actor = actor_cls.remote(d)
            everyone.append(actor)
            run.nodes.append(await asyncio.wait_for(asyncio.wrap_future(actor.ready.remote().future()),
                                                    ACTOR_START_TIMEOUT_S))
            live[actor] = 0
            return actor

        await asyncio.gather(*(start_actor() for _ in range(n)))
        t0 = time.perf_counter()
        tasks: set[asyncio.Task] = set()

        def deliver(ep: Episode) -> None:
            if ep.episode_id in received:
                run.duplicates_dropped += 1
                return
            received.add(ep.episode_id)
            on_episode(ep)

        def assign(actor: Any, part: list[EpisodeKey]) -> None:
            live[actor] += len(part)
            tasks.add(asyncio.create_task(drain(actor, part)))

        async def drain(actor: Any, part: list[EpisodeKey]) -> None:
            try:
                async for ref in actor.run.remote([(k.run_id, k.seed, k.sample_index) for k in part], per_actor):
                    for ep in await ref:
                        deliver(ep)
                if actor in live:
                    live[actor] -= len(part)
            except Exception as e:
                if not _is_loss(e, ray):
                    raise
                lost = [k for k in part if k.episode_id not in received]
                if actor in live:
                    del live[actor]
                    run.lost_actors += 1
                    ray.kill(actor, no_restart=True)
                log.warning("rollout actor lost (%s): %d of its episodes are played elsewhere",
                            type(e).__name__, len(lost))
                run.replayed += len(lost)
                await reassign(lost)

        async def reassign(lost: list[EpisodeKey]) -> None:
            if not lost:
                return
            if not live:
                await start_actor()  # waits until the cluster can place one (or times out)
            targets = sorted(live, key=live.get)
            for i, actor in enumerate(targets):
                part = lost[i::len(targets)]
                if part:
                    assign(actor, part)

        # round-robin slices keep each group's k samples spread, and every actor equally loaded
        for i, actor in enumerate(list(live)):
            if keys[i::n]:
                assign(actor, keys[i::n])
        while tasks:
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in finished:
                tasks.discard(t)
                t.result()
        await _merge_policy_stats(list(live))
        return t0
    finally:
        for a in locals().get("everyone", []):
            try:
                ray.kill(a)
            except Exception:  # already dead
                pass
        if started:
            ray.shutdown()


async def _merge_policy_stats(actors: list[Any]) -> None:
    """Add the live actors' per-policy-server counters to this process's (the collect summary prints them)."""
    llm = sys.modules.get("rowgym.agents.llm")
    if llm is None or not actors:
        return
    for raw, lat in await asyncio.gather(*(a.policy_stats.remote() for a in actors)):
        llm.merge_server_stats(raw, lat)
