"""Steps per second of the tool-API environments with and without row recording.

    python benchmarks/bench_toolapi.py [--episodes 150]

Three loops over the same seeds and the same expert actions, measured in one run:
  bare       env.step() on the gold plan, no agent, no rows (the ideal),
  no-record  play_episode(record=False): agent + engine bookkeeping, no rows,
  record     play_episode(record=True) + appending every episode to a TrajectoryStore (fsync).
Prints steps/s of each and the overhead ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import rowgym
from rowgym.agents import make_agent
from rowgym.rollouts.episode import EpisodeKey, play_episode
from rowgym.store import TrajectoryStore


async def bare(env_id: str, seeds: list[int]) -> tuple[int, float]:
    env = rowgym.make(env_id)
    steps, t0 = 0, time.perf_counter()
    for s in seeds:
        await env.areset(seed=s)
        for call in env.task.gold:
            await env.astep(call)
            steps += 1
    return steps, time.perf_counter() - t0


async def engine(env_id: str, seeds: list[int], record: bool) -> tuple[int, float]:
    env = rowgym.make(env_id)
    agent = make_agent("expert", env)
    store = TrajectoryStore(tempfile.mkdtemp(prefix="bench-")) if record else None
    steps, t0 = 0, time.perf_counter()
    for s in seeds:
        ep = await play_episode(env, agent, EpisodeKey("bench", s), record=record)
        steps += len(ep.steps) if record else len(env.task.gold)
        if store is not None:
            store.append(ep)
    if store is not None:
        store.close()
    return steps, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=150)
    args = ap.parse_args()
    for env_id in ("rowgym/ToolAPI-Retail-v0", "rowgym/ToolAPI-Airline-v0"):
        seeds = rowgym.make(env_id).splits.seeds("train", args.episodes)
        asyncio.run(bare(env_id, seeds[:10]))  # warm-up
        results = {"bare": asyncio.run(bare(env_id, seeds)),
                   "no-record": asyncio.run(engine(env_id, seeds, record=False)),
                   "record": asyncio.run(engine(env_id, seeds, record=True))}
        print(f"\n{env_id}  ({args.episodes} episodes)")
        for name, (steps, secs) in results.items():
            print(f"  {name:<10} {steps / secs:8.1f} steps/s  ({steps} steps in {secs:.2f} s)")
        rate = {k: s / t for k, (s, t) in results.items()}
        print(f"  recording overhead: record / no-record time ratio = {rate['no-record'] / rate['record']:.3f}")
        print(f"  engine + recording vs bare env: bare / record time ratio = {rate['bare'] / rate['record']:.3f}")


if __name__ == "__main__":
    main()
