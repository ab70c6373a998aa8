"""Sandbox benchmarks: warm-pool exec latency vs cold `docker run`, and pytest throughput 1 vs N.

    python benchmarks/bench_sandbox.py                    # defaults: 20 reps, 16 pytest jobs, N = 4
    python benchmarks/bench_sandbox.py --parallel 8 --jobs 32

Prints numbers and ratios; asserts nothing (timings are noisy on small shared machines).
Needs `make env-up` (the Docker daemon and the rowgym-sandbox image).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rowgym.sandboxes import SandboxConfig
from rowgym.sandboxes.bwrap_backend import BwrapSandbox, bwrap_available
from rowgym.sandboxes.docker_backend import DockerPool

CMD = ["python3", "-c", "print('ok')"]


def _median_ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"


def cold_docker_run(cfg: SandboxConfig, reps: int) -> list[float]:
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
                    *CMD,
                ],
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - t0)
    return times


async def warm_pool_exec(cfg: SandboxConfig, reps: int) -> tuple[list[float], list[float]]:
    """Exec latency on a pooled sandbox, and acquire+exec+close latency per episode."""
    execs, episodes = [], []
    async with DockerPool(size=2, config=cfg) as pool:
        async with await pool.acquire() as sb:
            await sb.exec(CMD, timeout=30)  # first exec warms the page cache
            for _ in range(reps):
                t0 = time.perf_counter()
                res = await sb.exec(CMD, timeout=30)
                execs.append(time.perf_counter() - t0)
                assert res.stdout == "ok\n", res
        for _ in range(reps):
            while pool.ready < 1:  # measure a warm start, as a pool sized for its load gives
                await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            sb = await pool.acquire()
            await sb.exec(CMD, timeout=30)
            episodes.append(time.perf_counter() - t0)
            await sb.close()
    return execs, episodes


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
    ap.add_argument("--reps", type=int, default=20, help="latency samples per mode")
    ap.add_argument("--jobs", type=int, default=16, help="pytest runs per throughput measurement")
    ap.add_argument("--parallel", type=int, default=4, help="N parallel sandboxes")
    args = ap.parse_args()
    cfg = SandboxConfig(memory_mb=512, pids_limit=128, cpus=1.0)
    print(f"machine: {os.cpu_count()} CPUs; image {cfg.image}")

    cold = cold_docker_run(cfg, max(3, args.reps // 4))
    execs, episodes = await warm_pool_exec(cfg, args.reps)
    print(f"cold `docker run` {CMD}: {_median_ms(cold)}")
    print(f"warm-pool exec            : {_median_ms(execs)}")
    print(f"warm-pool acquire+exec    : {_median_ms(episodes)}")
    print(f"ratio cold/warm exec      : {statistics.median(cold) / statistics.median(execs):.1f}x")
    print(f"ratio cold/warm acquire+exec: {statistics.median(cold) / statistics.median(episodes):.1f}x")
    if bwrap_available():
        bw = await bwrap_exec(cfg, args.reps)
        print(f"bwrap exec (fallback)     : {_median_ms(bw)}")

    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "repo")
        one = await pytest_throughput(cfg, repo, args.jobs, 1)
        many = await pytest_throughput(cfg, repo, args.jobs, args.parallel)
    print(f"pytest throughput, 1 sandbox      : {one:.2f} runs/s ({args.jobs} runs)")
    print(f"pytest throughput, {args.parallel} sandboxes     : {many:.2f} runs/s ({args.jobs} runs)")
    print(
        f"ratio {args.parallel} vs 1                  : {many / one:.2f}x  (bounded by {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    asyncio.run(main())
