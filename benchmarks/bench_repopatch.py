"""Repo-patch reset and grading against their floors (and grading throughput, 1 vs N sandboxes).

    python benchmarks/bench_repopatch.py                      # reset + grading ratios, records them
    python benchmarks/bench_repopatch.py --reps 7 --backend docker
    python benchmarks/bench_repopatch.py --throughput --jobs 12 --parallel 4
    python benchmarks/bench_repopatch.py --only grade --reps 9 --no-record   # grading only, print only

Reset: ``env.areset`` until the work dir is ready (snapshot copied in, a git repository
with one commit), p50 over ``--reps`` resets per task, next to the old way of making the
repository (``git init && git add -A && git commit`` in the sandbox) on the same pool.
Target: p50 <= 0.2 s.

Grading: ``grade_changes`` of the gold patch (exactly what ``submit`` runs: staging, a
fresh pooled sandbox, the hardened harness) against its floor, the same tests run by a
plain ``python3 -m pytest`` (same arguments) in a warm container that already holds the
graded tree. Target: grade p50 <= 1.5x floor p50, on a corpus task and on synthesized
inflection and toolz tasks. The phases of one grading (copy-out, stage, copy-in, the
harness run, the plain pytest run) are printed for docs/repopatch.md. Each grading starts after
the pool has refilled and warmed (``Boxes.settle``), as between episodes; ``--no-warm`` grades
in unwarmed pool containers, ``--harness OLD.py`` with another harness source (A/B runs).

Ratios go to ``results/bench.json`` through :func:`benchmarks.results.record`.
Nothing is asserted about timings (they are noisy on small shared machines).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rowgym.envs.repopatch import grading as G  # noqa: E402
from rowgym.envs.repopatch.corpus import corpus_tasks  # noqa: E402
from rowgym.envs.repopatch.families import CorpusEnv  # noqa: E402
from rowgym.envs.repopatch.task import RepoPatchTask, SnapshotCache, read_tree, split_guarded  # noqa: E402

from results import record  # noqa: E402

BENCH = "benchmarks/bench_repopatch.py"
GIT_IN_SANDBOX = ("git init -q && git add -A && git -c user.name=rowgym -c user.email=rowgym@localhost "
                  "commit -qm 'task snapshot'")


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def pick_tasks() -> list[tuple[str, RepoPatchTask]]:
    out = [("corpus", corpus_tasks()[0])]
    try:
        from rowgym.envs.repopatch.synth.build import load_or_build

        synth = load_or_build(n_tasks=3, progress=False)
        for lib in ("inflection", "toolz"):
            out += [(lib, t) for t in synth if t.instance_id.startswith(lib)][:1]
    except Exception as e:  # no sdists cached and no registry: corpus only
        print(f"(synthesized tasks unavailable: {e})")
    return out


async def bench_reset(named: list[tuple[str, RepoPatchTask]], reps: int, backend: str) -> dict[str, tuple]:
    env = CorpusEnv(backend=backend, pool_size=2, tasks=[t for _, t in named])
    out = {}
    try:
        for i, (label, task) in enumerate(named):
            seed = next(s for s in range(10_000) if env.splits.task_index(s) == i)
            ours, old, phases = [], [], []
            for _ in range(reps):
                await asyncio.sleep(0.3)  # let the pool refill, as between episodes
                t0 = time.perf_counter()
                await env.areset(seed=seed)
                ours.append(time.perf_counter() - t0)
                # The old way on the same pool: copy the snapshot in, commit it in the sandbox, and
                # wait for the sandbox's removal (the old teardown, on the next reset's path).
                snap, git = env.snapshots.get(task), env.snapshots.git_dir(task)
                await asyncio.sleep(0.3)
                ph, T = {}, time.perf_counter
                t0 = T()
                sb = await env.boxes.acquire()
                ph["acquire"] = T() - t0
                t1 = T()
                await sb.copy_in(snap)
                ph["copy_in_files"] = T() - t1
                t1 = T()
                await sb.exec(GIT_IN_SANDBOX, timeout=60)
                ph["git_in_sandbox"] = T() - t1
                t1 = T()
                await sb.copy_in(git, ".git-cached")
                ph["copy_in_cached_git"] = T() - t1
                t1 = T()
                await sb.close()
                ph["close"] = T() - t1
                old.append(T() - t0 - ph["copy_in_cached_git"])
                phases.append(ph)
            mid = {k: p50([p[k] for p in phases]) for k in phases[0]}
            out[label] = (p50(ours), p50(old), max(ours))
            print(f"reset {label:10s} p50 {p50(ours) * 1e3:6.0f} ms (max {max(ours) * 1e3:.0f})   "
                  f"old way (in-sandbox git, close awaited) p50 {p50(old) * 1e3:6.0f} ms")
            print("   phases p50 (ms): " + "  ".join(f"{k} {v * 1e3:.0f}" for k, v in mid.items()))
    finally:
        await env.aclose()
        env.snapshots.close()
    return out


async def bench_grade(named: list[tuple[str, RepoPatchTask]], reps: int, backend: str,
                      warm: bool = True) -> dict[str, tuple]:
    snaps = SnapshotCache()
    out = {}
    async with G.Boxes(backend, pool_size=2, warm=warm) as boxes:
        await (await boxes.acquire()).close()
        for label, task in named:
            snap = snaps.get(task)
            changes = G.gold_changes(task, snap)
            grade, floor, harness, phases = [], [], [], []
            for _ in range(reps):
                await asyncio.sleep(0.5)  # the pool refills (and warms) between episodes
                await boxes.settle()
                t0 = time.perf_counter()
                g = await G.grade_changes(task, snap, changes, boxes)
                grade.append(time.perf_counter() - t0)
                assert g.reward == 1.0, (label, g.checks)
                await boxes.drain()
                ph, T = {}, time.perf_counter
                t0 = T()
                kept, _, _ = split_guarded(read_tree(snap), changes, roots=G._roots(task))
                call = G.HarnessCall(task, task.test_paths, list(kept))
                stage = Path(tempfile.mkdtemp())
                G._stage(snap, stage, kept, task.hidden_files)
                (stage / call.conf_name).write_bytes(call.conf_bytes())
                ph["stage"] = T() - t0
                await boxes.settle()
                sb = await boxes.acquire()
                t0 = T()
                await sb.copy_in(stage)
                ph["copy_in"] = T() - t0
                for p, d in kept.items():
                    await sb.write_file(p, d)
                t0 = T()
                await G.agent_changes(sb, snap)
                ph["copy_out"] = T() - t0
                t0 = T()
                run = await call.run(sb, 300, write_conf=False)
                ph["harness"] = T() - t0
                t0 = T()
                res = await sb.exec(["python3", "-m", "pytest", *G.PYTEST_ARGS, *task.test_paths], timeout=300,
                                    env=call.env)
                ph["pytest"] = T() - t0
                t0 = T()
                res2 = await sb.exec(["python3", "-c", "import pytest"], timeout=60, env=call.env)
                ph["import_pytest"] = T() - t0
                assert res.exit_code == 0 and run.finished and res2.ok, (label, res.stdout[-500:])
                await sb.close()
                shutil.rmtree(stage, True)
                floor.append(ph["pytest"])
                harness.append(ph["harness"])
                phases.append(ph)
            mid = {k: p50([p[k] for p in phases]) for k in phases[0]}
            out[label] = (p50(grade), p50(floor), p50(harness), mid, len(run.outcomes))
            print(f"grade {label:10s} p50 {p50(grade) * 1e3:6.0f} ms  floor (plain pytest, warm) "
                  f"{p50(floor) * 1e3:6.0f} ms  ratio {p50(grade) / p50(floor):.2f}x  ({len(run.outcomes)} tests)")
            print("   phases p50 (ms): " + "  ".join(f"{k} {v * 1e3:.0f}" for k, v in mid.items()))
    snaps.close()
    return out


async def throughput(jobs: int, parallel: int, backend: str, warm: bool = True) -> float:
    tasks = corpus_tasks()
    snaps = SnapshotCache()
    sem = asyncio.Semaphore(parallel)
    async with G.Boxes(backend, pool_size=parallel, warm=warm) as boxes:
        await (await boxes.acquire()).close()  # warm the pool before timing
        await boxes.settle()

        async def one(i: int) -> float:
            t = tasks[i % len(tasks)]
            async with sem:
                snap = snaps.get(t)
                return (await G.grade_changes(t, snap, G.gold_changes(t, snap), boxes)).reward

        t0 = time.perf_counter()
        rewards = await asyncio.gather(*(one(i) for i in range(jobs)))
        dt = time.perf_counter() - t0
    snaps.close()
    assert all(r == 1.0 for r in rewards), rewards
    return jobs / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--throughput", action="store_true", help="gradings/s with 1 vs --parallel sandboxes")
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--only", choices=("all", "reset", "grade"), default="all",
                    help="run only the reset or only the grading part")
    ap.add_argument("--no-record", action="store_true", help="print only; leave results/bench.json alone")
    ap.add_argument("--no-warm", action="store_true", help="grading sandboxes without the warm-up (Boxes(warm=False))")
    ap.add_argument("--harness", type=Path, help="grade with this harness source instead (A/B of harness versions; "
                    "implies --no-record)")
    a = ap.parse_args()
    if a.harness:
        G.HARNESS_SOURCE = a.harness.read_text()
    a.no_record = a.no_record or bool(a.harness) or a.no_warm
    print(f"cpus={os.cpu_count()}")
    if a.throughput:
        one = asyncio.run(throughput(a.jobs, 1, a.backend, not a.no_warm))
        many = asyncio.run(throughput(a.jobs, a.parallel, a.backend, not a.no_warm))
        print(f"grading, 1 sandbox:  {one:.2f} gradings/s")
        print(f"grading, {a.parallel} sandboxes: {many:.2f} gradings/s")
        print(f"ratio N/1: {many / one:.2f}x")
        return
    named = pick_tasks()
    resets = asyncio.run(bench_reset(named, a.reps, a.backend)) if a.only in ("all", "reset") else {}
    grades = asyncio.run(bench_grade(named, a.reps, a.backend, not a.no_warm)) if a.only in ("all", "grade") else {}
    if resets:
        print(f"reset p50 over tasks: {statistics.median(v[0] for v in resets.values()) * 1e3:.0f} ms")
    if a.no_record:
        return
    for label, (ours, old, _) in resets.items():
        record(f"repopatch reset p50 ({label}): work dir ready", ours=ours * 1e3, baseline=200.0, unit="ms",
               ratio=ours / 0.2, target="<= 1.0", baseline_name="target 0.2 s",
               note=f"{a.reps} resets; before (in-sandbox git init+commit, removal awaited): {old * 1e3:.0f} ms p50", bench=BENCH)
    for label, (grade, floor, harness, _, n) in grades.items():
        record(f"repopatch grade p50 ({label}, {n} tests) / plain pytest in a warm container", ours=grade * 1e3,
               baseline=floor * 1e3, unit="ms", ratio=grade / floor, target="<= 1.5",
               baseline_name="same pytest run, warm container",
               note=f"{a.reps} gradings; harness run alone {harness * 1e3:.0f} ms", bench=BENCH)


if __name__ == "__main__":
    main()
