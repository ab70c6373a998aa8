"""Repo-patch grading throughput: 1 sandbox vs N parallel sandboxes (ratio).

    python benchmarks/bench_repopatch.py                   # 12 corpus gradings, N = 4
    python benchmarks/bench_repopatch.py --jobs 24 --parallel 8 --backend bwrap

Each job grades a corpus task's gold patch exactly as an episode does (fresh sandbox,
patch applied, hidden tests added, pytest -rA). Prints gradings/s for 1 and N and
their ratio; asserts nothing (timings are noisy on small shared machines).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from rowgym.envs.repopatch.corpus import corpus_tasks
from rowgym.envs.repopatch.grading import Boxes, gold_changes, grade_changes
from rowgym.envs.repopatch.task import SnapshotCache


async def run(jobs: int, parallel: int, backend: str) -> float:
    tasks = corpus_tasks()
    snaps = SnapshotCache()
    sem = asyncio.Semaphore(parallel)
    async with Boxes(backend, pool_size=parallel) as boxes:
        await (await boxes.acquire()).close()  # warm the pool before timing

        async def one(i: int) -> float:
            t = tasks[i % len(tasks)]
            async with sem:
                snap = snaps.get(t)
                return (await grade_changes(t, snap, gold_changes(t, snap), boxes)).reward

        t0 = time.perf_counter()
        rewards = await asyncio.gather(*(one(i) for i in range(jobs)))
        dt = time.perf_counter() - t0
    snaps.close()
    assert all(r == 1.0 for r in rewards), rewards
    return jobs / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--backend", default="auto")
    a = ap.parse_args()
    one = asyncio.run(run(a.jobs, 1, a.backend))
    many = asyncio.run(run(a.jobs, a.parallel, a.backend))
    print(f"cpus={os.cpu_count()} jobs={a.jobs}")
    print(f"grading, 1 sandbox:  {one:.2f} gradings/s")
    print(f"grading, {a.parallel} sandboxes: {many:.2f} gradings/s")
    print(f"ratio N/1: {many / one:.2f}x")


if __name__ == "__main__":
    main()
