"""Steps per second of the tool-API environments with and without row recording.

    python benchmarks/bench_toolapi.py [--episodes 150] [--reps 15]

Loops over the same seeds and the same expert actions, measured side by side in one run
(each mode ``--reps`` times, interleaved, under the engine's GC settings; the median time of
each mode is compared):
  bare         env.step() on the gold plan, no agent, no rows (the ideal),
  no-record    play_episode(record=False) as the engine's worker runs it: agent + bookkeeping, no rows,
  record       play_episode(record=True) as the engine's worker plays it (the stored line written as
               the episode is played, rowgym.store.shards.EpisodeLine) + the engine's writer
               (rowgym.store.EpisodeWriter, keeping each episode's outcome, not the episode, until its
               commit, as a collection without hooks does): episodes stored off the loop, several per
               synchronous write, each reported only once it is on disk; the time runs until the writer has
               reported every episode stored (closing the store, which seals the shard once per
               run, is timed and printed apart; the wait for the last commit, also once per run, is
               in the time and printed beside it),
  record-sync  the same rows appended on the loop, one synchronous write per episode (before group commit).
Prints steps/s of each and the ratios, and records them in results/bench.json; asserts nothing.

The recorded overhead is the median over the rounds of each round's record / no-record time
(the two runs of one round are seconds apart, so a change of the machine's load between rounds,
e.g. a training job next door, cancels out); the ratio of the two medians and the CPU time of
this process per step in each mode (which load changes far less than wall time) are printed
next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import rowgym
from rowgym.agents import make_agent
from rowgym.rollouts.engine import Outcome, fewer_gc_pauses
from rowgym.rollouts.episode import EpisodeKey, play_episode
from rowgym.store import EpisodeWriter, TrajectoryStore
from rowgym.store.shards import EpisodeLine

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402


async def bare(env_id: str, seeds: list[int]) -> tuple[int, float]:
    env = rowgym.make(env_id)
    steps, t0 = 0, time.perf_counter()
    for s in seeds:
        await env.areset(seed=s)
        for call in env.task.gold:
            await env.astep(call)
            steps += 1
        await asyncio.sleep(0)
    return steps, time.perf_counter() - t0


CLOSE_S: dict[str, list[float]] = {}
LAST_WAIT_S: list[float] = []  # each record run's wait for its last commit, after its last episode was put


async def engine(env_id: str, seeds: list[int], mode: str) -> tuple[int, float]:
    env = rowgym.make(env_id)
    agent = make_agent("expert", env)
    record = mode != "no-record"
    store = TrajectoryStore(tempfile.mkdtemp(prefix="bench-")) if record else None
    stored: list[Outcome] = []
    # as the engine's collection makes it when no hook asks for the stored episodes: the writer
    # keeps each episode's outcome (the progress bar's counts) until its commit, not the episode
    writer = EpisodeWriter(store, stored.append, report=Outcome.of) if mode == "record" else None
    steps, t0 = 0, time.perf_counter()
    for s in seeds:
        line = EpisodeLine() if writer is not None else None
        ep = await play_episode(env, agent, EpisodeKey("bench", s), record=record, line=line)
        steps += len(ep.steps) if record else len(env.task.gold)
        if writer is not None:
            writer.put(ep, line.text)
        elif store is not None:
            store.append(ep)
        await asyncio.sleep(0)  # as the engine's worker does between episodes
    if writer is not None:
        t1 = time.perf_counter()
        await writer.close()
        LAST_WAIT_S.append(time.perf_counter() - t1)
        assert len(stored) == len(seeds)
    elapsed = time.perf_counter() - t0  # every episode is on disk (reported stored) by now
    if store is not None:
        t1 = time.perf_counter()
        store.close()  # seal the shard, write the manifest: once per run (and per shard), not per step
        CLOSE_S.setdefault(mode, []).append(time.perf_counter() - t1)
    return steps, elapsed


MODES = ("bare", "no-record", "record", "record-sync")


def measure(env_id: str, seeds: list[int], reps: int) -> tuple[dict[str, tuple[int, float]], dict[str, list[float]],
                                                             dict[str, float]]:
    """Over ``reps`` rounds of every mode (order rotated), after one warm-up each: the median
    (steps, seconds) of each mode, each mode's seconds per round, and the median CPU seconds of this
    process per step of each mode."""
    def run(mode: str) -> tuple[int, float]:
        with fewer_gc_pauses():  # the engine's GC settings while episodes run
            return asyncio.run(bare(env_id, seeds) if mode == "bare" else engine(env_id, seeds, mode))

    for mode in MODES:  # warm-up: task generation and the tool schemas are cached per seed
        run(mode)
    LAST_WAIT_S.clear()
    times: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    steps: dict[str, int] = {}
    for i in range(reps):
        for mode in MODES[i % len(MODES):] + MODES[:i % len(MODES)]:  # rotate the order
            c0 = time.process_time()
            steps[mode], secs = run(mode)
            cpu[mode].append((time.process_time() - c0) / steps[mode])
            times[mode].append(secs)
    return ({m: (steps[m], statistics.median(times[m])) for m in MODES}, times,
            {m: statistics.median(cpu[m]) for m in MODES})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=150)
    # 5 rounds left the median of the ratios swinging by ~2% between runs, 9 by ~1.5% (four full runs: Retail
    # 1.088-1.116); the median of 15 is steadier (its spread falls as one over the square root of the rounds)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    for env_id in ("rowgym/ToolAPI-Retail-v0", "rowgym/ToolAPI-Airline-v0"):
        seeds = rowgym.make(env_id).splits.seeds("train", args.episodes)
        res, times, cpu = measure(env_id, seeds, args.reps)
        print(f"\n{env_id}  ({args.episodes} episodes, median of {args.reps} interleaved runs; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
        for name, (steps, secs) in res.items():
            print(f"  {name:<12} {steps / secs:8.1f} steps/s  ({steps} steps in {secs:.3f} s; "
                  f"{cpu[name] * 1e6:.0f} us CPU/step)")
        us = {k: t / s * 1e6 for k, (s, t) in res.items()}  # microseconds per step
        paired = sorted(r / n for r, n in zip(times["record"], times["no-record"], strict=True))
        ratio = statistics.median(paired)
        sync = statistics.median(r / n for r, n in zip(times["record-sync"], times["no-record"], strict=True))
        # the last commit's wait is paid once per run, not per step: a longer run spreads it thinner
        steady = statistics.median((r - w) / n for r, w, n in zip(times["record"], LAST_WAIT_S, times["no-record"],
                                                                  strict=True))
        last_wait = statistics.median(LAST_WAIT_S)
        LAST_WAIT_S.clear()
        print(f"  recording overhead: record / no-record time per step = {ratio:.3f}  (target <= 1.10; median of "
              f"the rounds' ratios, which ranged {paired[0]:.3f}-{paired[-1]:.3f}; ratio of the medians "
              f"{us['record'] / us['no-record']:.3f}; CPU per step {cpu['record'] / cpu['no-record']:.3f})")
        print(f"  of which the wait for the last commit, once per run: median {last_wait * 1000:.1f} ms "
              f"({last_wait / (us['record'] * res['record'][0] / 1e6):.1%} of a run); without it {steady:.3f}")
        print(f"  before group commit: record-sync / no-record = {sync:.3f}")
        print(f"  engine + recording vs bare env: record / bare time per step = {us['record'] / us['bare']:.3f}")
        closes = CLOSE_S.pop("record", [0.0])
        print(f"  closing the store (seal + manifest, once per run): median {statistics.median(closes) * 1000:.1f} ms")
        short = env_id.split("/")[-1]
        note = (f"{args.episodes} episodes, median of {args.reps} interleaved rounds' ratios (range {paired[0]:.3f}-"
                f"{paired[-1]:.3f}), fsync store; {steady:.3f} less the last commit's wait, once per run "
                f"({last_wait * 1000:.1f} ms); CPU per step {cpu['record'] * 1e6:.0f} vs "
                f"{cpu['no-record'] * 1e6:.0f} us; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        results.record(f"{short} step with recording / without", ours=us["record"], baseline=us["no-record"],
                       unit="us/step", ratio=ratio, target="<= 1.10", baseline_name="no recording",
                       note=note, bench="bench_toolapi.py")
        results.record(f"{short} step, fsync per episode on the loop / without", ours=us["record-sync"],
                       baseline=us["no-record"], unit="us/step", ratio=sync, baseline_name="no recording",
                       note=note + " (the old path, for reference)", bench="bench_toolapi.py")


if __name__ == "__main__":
    main()
