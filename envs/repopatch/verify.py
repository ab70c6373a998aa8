"""Check every repo-patch task: the gold patch scores 1 and the empty patch scores 0.

Usage::

    python -m rowgym.envs.repopatch.verify --all            # corpus + synth, every task
    python -m rowgym.envs.repopatch.verify --source corpus --sample 5
    python -m rowgym.envs.repopatch.verify --refresh-corpus  # recompute corpus FAIL_TO_PASS/PASS_TO_PASS

Grading goes through the same grader as the environment (fresh sandbox, hidden tests
added last), ``--workers`` sandboxes in parallel. Exit status 1 if any task fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from rowgym.envs.repopatch.grading import Boxes, gold_changes, grade_changes
from rowgym.envs.repopatch.task import RepoPatchTask, SnapshotCache


async def verify_tasks(tasks: list[RepoPatchTask], workers: int = 2, backend: str = "auto",
                       progress: bool = True) -> list[tuple[str, float, float, str]]:
    """``(instance_id, gold reward, empty reward, detail)`` for each task."""
    snaps = SnapshotCache()
    sem = asyncio.Semaphore(workers)
    done = 0
    async with Boxes(backend, pool_size=workers, warm=False) as boxes:  # batch: throughput over latency
        async def one(t: RepoPatchTask) -> tuple[str, float, float, str]:
            nonlocal done
            async with sem:
                snap = await asyncio.to_thread(snaps.get, t)
                g = await grade_changes(t, snap, gold_changes(t, snap), boxes)
                e = await grade_changes(t, snap, {}, boxes)
            done += 1
            if progress:
                print(f"\r[verify] {done}/{len(tasks)}", end="", file=sys.stderr, flush=True)
            bad = [c.name + " " + c.detail for c in g.checks if not c.passed][:3]
            return t.instance_id, g.reward, e.reward, "; ".join(bad)

        try:
            return await asyncio.gather(*(one(t) for t in tasks))
        finally:
            snaps.close()
            if progress:
                print(file=sys.stderr)


async def refresh_corpus(workers: int = 2, backend: str = "auto") -> dict[str, dict[str, list[str]]]:
    """Run each corpus task's hidden tests on its buggy and its fixed code; write ``expected.json``."""
    from rowgym.envs.repopatch import corpus

    tasks = corpus.corpus_tasks(with_expected=False)
    snaps = SnapshotCache()
    sem = asyncio.Semaphore(workers)
    out: dict[str, dict[str, list[str]]] = {}
    problems: list[str] = []
    async with Boxes(backend, pool_size=workers, warm=False) as boxes:  # batch: throughput over latency
        async def one(t: RepoPatchTask) -> None:
            async with sem:
                snap = await asyncio.to_thread(snaps.get, t)
                fixed = (await grade_changes(t, snap, gold_changes(t, snap), boxes)).results
                buggy = (await grade_changes(t, snap, {}, boxes)).results
            f2p = sorted(n for n, s in buggy.items() if s != "passed")
            if any(s != "passed" for s in fixed.values()) or not fixed or not f2p:
                problems.append(f"{t.instance_id}: fixed={fixed} buggy failing={f2p}")
                return
            out[t.instance_id] = {"fail_to_pass": f2p, "pass_to_pass": sorted(n for n in fixed if n not in f2p)}

        await asyncio.gather(*(one(t) for t in tasks))
    snaps.close()
    if problems:
        raise SystemExit("corpus tasks without a valid FAIL_TO_PASS set:\n" + "\n".join(problems))
    corpus.EXPECTED.write_text(json.dumps(dict(sorted(out.items())), indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", choices=["corpus", "synth", "all"], default="all")
    ap.add_argument("--all", action="store_true", help="every task of the source(s) (default: --sample)")
    ap.add_argument("--sample", type=int, default=5, help="tasks per source when not --all")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--refresh-corpus", action="store_true")
    a = ap.parse_args(argv)
    if a.refresh_corpus:
        out = asyncio.run(refresh_corpus(a.workers, a.backend))
        print(f"wrote expected results for {len(out)} corpus tasks")
        return 0
    from rowgym.envs.repopatch.families import CorpusEnv, SynthEnv

    failed = total = 0
    for name, cls in (("corpus", CorpusEnv), ("synth", SynthEnv)):
        if a.source not in (name, "all"):
            continue
        env = cls(backend=a.backend)
        tasks = env.task_list if a.all else env.task_list[:: max(1, len(env.task_list) // a.sample)][: a.sample]
        env.close()
        t0 = time.perf_counter()
        rows = asyncio.run(verify_tasks(tasks, a.workers, a.backend))
        bad = [r for r in rows if r[1] != 1.0 or r[2] != 0.0]
        for r in bad:
            print(f"FAIL {r[0]}: gold={r[1]} empty={r[2]} {r[3]}")
        print(f"{name}: {len(rows) - len(bad)}/{len(rows)} tasks ok (gold -> 1, empty -> 0) "
              f"in {time.perf_counter() - t0:.1f}s with {a.workers} sandboxes")
        failed += len(bad)
        total += len(rows)
    print(f"total: {total - failed}/{total} tasks verified")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
