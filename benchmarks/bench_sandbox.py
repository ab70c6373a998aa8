"""Sandbox benchmarks: warm-pool command latency vs cold `docker run`, and pytest throughput 1 vs N.

    python benchmarks/bench_sandbox.py                    # defaults: 40 reps, 16 pytest jobs, N = 4
    python benchmarks/bench_sandbox.py --parallel 8 --jobs 32

One command (`python3 -c "print('ok')"`) three ways, measured side by side in one run
(interleaved, so load on the machine hits all three alike): a cold `docker run --rm` with
the same limits (the floor we compare against), the warm sandbox's exec channel to PID 1
(what `exec` uses), and the same warm sandbox through one `docker exec` per command (the
path before the channel). p50 and p95 of each and the ratios cold / warm; the rows go to
results/bench.json. Asserts nothing (timings are noisy on small shared machines).
Needs `make env-up` (the Docker daemon and the rowgym-sandbox image).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rowgym.sandboxes import SandboxConfig
from rowgym.sandboxes.bwrap_backend import BwrapSandbox, bwrap_available
from rowgym.sandboxes.docker_backend import DockerPool

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

CMD = ["python3", "-c", "print('ok')"]
TRUE = ["true"]  # no work at all: what is left is the path to the command and back


def p(xs: list[float], q: float) -> float:
    """The q-quantile (0..1) of xs, by linear interpolation."""
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (k - lo)


def _ms(xs: list[float]) -> str:
    return (f"p50 {p(xs, 0.5) * 1000:6.1f} ms  p95 {p(xs, 0.95) * 1000:6.1f} ms  "
            f"(min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f}, n={len(xs)})")


def cold_docker_run(cfg: SandboxConfig, reps: int, cmd: list[str] = CMD) -> list[float]:
    """`docker run --rm` of CMD with the same limits, as one would without a pool."""
    times = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as ws:
            t0 = time.perf_counter()
            subprocess.run(
                [
                    "docker",
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--memory",
                    f"{cfg.memory_mb}m",
                    "--pids-limit",
                    str(cfg.pids_limit),
                    "--read-only",
                    "--user",
                    "1000:1000",
                    "-v",
                    f"{ws}:/workspace",
                    cfg.image,
                    *cmd,
                ],
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - t0)
    return times


async def latencies(cfg: SandboxConfig, reps: int, cold_every: int, cmd: list[str] = CMD) -> dict[str, list[float]]:
    """Per-command latency of a pooled sandbox, channel vs `docker exec`, with a cold `docker run`
    every ``cold_every`` rounds in between."""
    times: dict[str, list[float]] = {"channel": [], "docker exec": [], "cold docker run": []}
    async with DockerPool(size=1, config=cfg) as pool:
        async with await pool.acquire() as sb:
            for mode in (True, False):  # the first exec of each path warms the page cache
                sb.exec_channel = mode
                await sb.exec(cmd, timeout=30)
            for i in range(reps):
                for mode in ((True, False) if i % 2 else (False, True)):
                    sb.exec_channel = mode
                    t0 = time.perf_counter()
                    res = await sb.exec(cmd, timeout=30)
                    times["channel" if mode else "docker exec"].append(time.perf_counter() - t0)
                    assert res.ok and res.stdout == ("ok\n" if cmd == CMD else ""), res
                if i % cold_every == 0:
                    times["cold docker run"] += await asyncio.to_thread(cold_docker_run, cfg, 1, cmd)
    return times


async def warm_pool_episode(cfg: SandboxConfig, reps: int) -> list[float]:
    """acquire + one command + close of a pooled sandbox (an episode's sandbox overhead)."""
    episodes = []
    async with DockerPool(size=2, config=cfg) as pool:
        for _ in range(reps):
            while pool.ready < 1:  # measure a warm start, as a pool sized for its load gives
                await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            sb = await pool.acquire()
            await sb.exec(CMD, timeout=30)
            episodes.append(time.perf_counter() - t0)
            await sb.close()
    return episodes


async def bwrap_exec(cfg: SandboxConfig, reps: int) -> list[float]:
    times = []
    async with BwrapSandbox(tempfile.mkdtemp(), cfg) as sb:
        await sb.exec(CMD, timeout=30)
        for _ in range(reps):
            t0 = time.perf_counter()
            await sb.exec(CMD, timeout=30)
            times.append(time.perf_counter() - t0)
    return times


def make_repo(root: Path, n_tests: int = 40) -> Path:
    """A small repo whose pytest run costs a realistic fraction of a second of CPU."""
    (root / "calc").mkdir(parents=True)
    (root / "calc" / "__init__.py").write_text(
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
    )
    tests = "\n".join(
        f"def test_fib_{i}():\n    assert fib({14 + i % 6}) == {_fib(14 + i % 6)}\n" for i in range(n_tests)
    )
    (root / "test_calc.py").write_text("from calc import fib\n\n" + tests)
    return root


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


async def pytest_throughput(cfg: SandboxConfig, repo: Path, jobs: int, parallel: int) -> float:
    """Run `jobs` pytest runs (copy in, run, close), `parallel` sandboxes at a time; return runs/s."""
    async with DockerPool(size=parallel, config=cfg) as pool:
        sem = asyncio.Semaphore(parallel)

        async def one() -> None:
            async with sem:
                async with await pool.acquire() as sb:
                    await sb.copy_in(repo)
                    res = await sb.exec(
                        ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"], timeout=120
                    )
                    assert res.exit_code == 0, res.stdout[-2000:]

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(jobs)))
        return jobs / (time.perf_counter() - t0)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40, help="latency samples of the warm modes")
    ap.add_argument("--cold-every", type=int, default=2, help="one cold `docker run` per this many warm rounds")
    ap.add_argument("--jobs", type=int, default=16, help="pytest runs per throughput measurement")
    ap.add_argument("--parallel", type=int, default=4, help="N parallel sandboxes")
    args = ap.parse_args()
    cfg = SandboxConfig(memory_mb=512, pids_limit=128, cpus=1.0)
    print(f"machine: {os.cpu_count()} CPUs; image {cfg.image}")

    for cmd in (CMD, TRUE):
        t = await latencies(cfg, args.reps, args.cold_every, cmd)
        cold = t["cold docker run"]
        print(f"command: {cmd}")
        for name, xs in t.items():
            print(f"  {name:<24} {_ms(xs)}")
        what = "python3 -c print" if cmd == CMD else "true"
        note = f"{' '.join(cmd)!r} in the sandbox image; {len(t['channel'])} warm / {len(cold)} cold samples, interleaved"
        for q, label in ((0.5, "p50"), (0.95, "p95")):
            for mode in ("channel", "docker exec"):
                ratio = p(cold, q) / p(t[mode], q)
                print(f"  ratio cold / warm {mode:<12} {label}: {ratio:5.1f}x"
                      + ("  (target >= 10)" if mode == "channel" else ""))
                results.record(f"sandbox `{what}` {label}: warm {mode} vs cold docker run",
                               ours=p(t[mode], q) * 1000, baseline=p(cold, q) * 1000, unit="ms", ratio=ratio,
                               target=">= 10" if mode == "channel" else "", baseline_name="cold docker run",
                               note=note + ("" if mode == "channel" else " (the path before the channel)"),
                               bench="bench_sandbox.py")
        if cmd == CMD:
            episodes = await warm_pool_episode(cfg, max(5, args.reps // 4))
            print(f"  warm acquire+exec+close  {_ms(episodes)}")
            print(f"  ratio cold / warm acquire+exec+close p50: {p(cold, 0.5) / p(episodes, 0.5):.1f}x")
    if bwrap_available():
        bw = await bwrap_exec(cfg, args.reps)
        print(f"  bwrap exec (fallback)    {_ms(bw)}")

    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "repo")
        one = await pytest_throughput(cfg, repo, args.jobs, 1)
        many = await pytest_throughput(cfg, repo, args.jobs, args.parallel)
    print(f"pytest throughput, 1 sandbox      : {one:.2f} runs/s ({args.jobs} runs)")
    print(f"pytest throughput, {args.parallel} sandboxes     : {many:.2f} runs/s ({args.jobs} runs)")
    print(
        f"ratio {args.parallel} vs 1                  : {many / one:.2f}x  (bounded by {os.cpu_count()} CPUs)"
    )
    results.record(f"pytest throughput, {args.parallel} sandboxes vs 1", ours=many, baseline=one, unit="runs/s",
                   ratio=many / one, baseline_name="1 sandbox", note=f"{args.jobs} runs each, {os.cpu_count()} CPUs",
                   bench="bench_sandbox.py")


if __name__ == "__main__":
    asyncio.run(main())
