"""Step overhead of an environment served over HTTP vs the same env in process (ms per step).

    .venv/bin/python benchmarks/bench_remote_env.py [--env rowgym/ToolAPI-Retail-v0] [--episodes 40] [--concurrency 1,16]

Workload: the scripted expert (gold plan, noise 0.3 so bad calls and repairs are in the mix)
plays the same train seeds on ``rowgym.make(ENV)`` and on ``rowgym.make("http://127.0.0.1:PORT/ENV")``
against ``rowgym env serve``'s server in its own process on this machine. For each
concurrency (episodes in flight on one event loop) it reports the env latency per step
(``areset`` + ``astep`` time as each episode sees it, summed and divided by steps: with
many episodes in flight it includes waiting for the loop) and the wall time per step
(wall time / all steps: the throughput cost), local and remote, and their ratios. The remote figure includes
the loopback HTTP round trip, JSON both ways and the server's own work; on one 2-core
machine client and server share the CPU, so the ratio is an upper bound of what a
separate env machine would add.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import rowgym
from rowgym import aio
from rowgym.agents import make_agent
from rowgym.contract import episode_context
from rowgym.launcher import ManagedProcess, free_port, tcp_ok


async def play(env_id: str, seeds: list[int], concurrency: int) -> tuple[float, float, int]:
    """(env seconds, wall seconds, steps) for ``seeds`` played by the expert, ``concurrency`` at a time."""
    queue = list(seeds)
    env_s, steps = 0.0, 0

    async def worker() -> None:
        nonlocal env_s, steps
        env = rowgym.make(env_id)
        agent = make_agent("expert", env, noise=0.3)
        try:
            while queue:
                seed = queue.pop()
                t = time.perf_counter()
                obs, info = await env.areset(seed=seed)
                env_s += time.perf_counter() - t
                await agent.reset(episode_context(env, obs, info, privileged=True))
                while True:
                    action = (await agent.act(obs)).action
                    t = time.perf_counter()
                    obs, _, terminated, truncated, _ = await env.astep(action)
                    env_s += time.perf_counter() - t
                    steps += 1
                    if terminated or truncated:
                        break
        finally:
            await env.aclose()
            await agent.aclose()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return env_s, time.perf_counter() - t0, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="rowgym/ToolAPI-Retail-v0")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--concurrency", default="1,16")
    args = ap.parse_args()
    token = "bench-token"
    os.environ["ROWGYM_ENV_TOKEN"] = token
    port = free_port()
    server = ManagedProcess("env server", [sys.executable, "-m", "rowgym.envs.remote.server", args.env, str(port)],
                            ready=lambda: tcp_ok("127.0.0.1", port), env={**os.environ})
    probe = rowgym.make(args.env)
    seeds = probe.splits.seeds("train", args.episodes)
    probe.close()
    remote_id = f"http://127.0.0.1:{port}/{args.env}"
    print(f"{args.env}: {args.episodes} expert episodes per cell; server on 127.0.0.1:{port} (own process)")
    print(f"{'concurrency':>11} | {'local env lat ms':>17} | {'remote env lat ms':>18} | {'ratio':>6} | "
          f"{'local wall ms/step':>18} | {'remote wall ms/step':>19} | {'ratio':>6}")
    with server.start(timeout=60, poll_s=0.05):
        aio.run(play(remote_id, seeds[:4], 2))  # warm-up: connections, caches on both sides
        for c in [int(x) for x in args.concurrency.split(",")]:
            le, lw, ls = aio.run(play(args.env, seeds, c))
            re_, rw, rs = aio.run(play(remote_id, seeds, c))
            assert ls == rs, f"local and remote played different step counts ({ls} vs {rs})"
            lm, rm = 1000 * le / ls, 1000 * re_ / rs
            lwm, rwm = 1000 * lw / ls, 1000 * rw / rs
            print(f"{c:>11} | {lm:>17.3f} | {rm:>18.3f} | {rm / lm:>6.1f} | {lwm:>18.3f} | {rwm:>19.3f} | "
                  f"{rwm / lwm:>6.1f}")


if __name__ == "__main__":
    main()
