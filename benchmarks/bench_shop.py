"""Speed of the browser shop environment: reset latency, one shared Chromium vs one per env, overhead vs Playwright.

    python benchmarks/bench_shop.py [--episodes 16] [--split dev] [--sections sharing,steps]

Measured in one run over the same seeds and the same actions:
  record      the scripted expert plays every seed once; its actions are kept for the replays;
  env         those actions replayed through ``env.astep`` (no agent, no rows): ms per step;
  bare        the same actions replayed by a bare Playwright loop on the same pages
              (``locator("aria-ref=...")`` action, wait for load, ``aria_snapshot(mode="ai")``;
              no validation, observation text, progress rewards or grading): ms per step;
  episodes/s  ``play_episode`` with the expert (rows recorded) with 1 worker, then 8 workers on one
              event loop (one shared Chromium, one context per episode, as in
              ``rowgym collect --concurrency 8``), and the same for the bare loop.
  sharing     (section ``sharing``) the recorded episodes replayed through ``areset`` + ``astep``:
              reset latency with 1 env, before (full ``chromium --headless``, a Chromium of its own,
              context and page made inside ``reset``) and after (the defaults: the headless shell, the
              loop's shared Chromium, the next context prepared while the episode runs), with the
              defaults on full ``chromium`` between them; then 8 envs on one loop, 8 contexts in one
              shared Chromium vs 8 Chromiums (the same binary, spare contexts on in both), run
              alternately ``--rounds`` times: episodes/s, CPU seconds per episode (this process, the
              Playwright driver(s) and every Chromium process, children reaped included), reset p50/p95
              and the Chromium processes' memory.
Browser launch is outside the timings (each worker warms up with one episode first). The machine may
be shared: the load average is printed with every number, and CPU seconds per episode, unlike
episodes/s, do not depend on how much of the machine other processes take.
Prints the numbers and the ratios and records them in ``results/bench.json`` (``results.py``); asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import rowgym
from rowgym.envs.shop.browser import default_executable
from rowgym.envs.shop.client import ShopClient
from rowgym.envs.shop.expert import ShopExpert
from rowgym.envs.shop.screenshots import CHROMIUM, CHROMIUM_ARGS
from rowgym.rollouts.episode import EpisodeKey, play_episode
from rowgym.rows import Action

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

ENV_ID = "rowgym/Shop-v0"


async def record(seeds: list[int]) -> dict[int, list[Action]]:
    env = rowgym.make(ENV_ID)
    try:
        out = {}
        for s in seeds:
            ep = await play_episode(env, ShopExpert(), EpisodeKey("bench", s))
            assert ep.success, f"expert failed seed {s}"
            out[s] = [st.action for st in ep.steps]
        return out
    finally:
        await env.aclose()


async def env_replay(plans: dict[int, list[Action]], workers: int) -> tuple[list[float], float]:
    """Replay through env.astep; per-step seconds and the wall time of all episodes."""
    envs = [rowgym.make(ENV_ID) for _ in range(workers)]
    seeds = list(plans)
    await asyncio.gather(*(e.areset(seed=seeds[0]) for e in envs))  # launch the browsers (not timed)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for s in seeds:
        queue.put_nowait(s)
    steps: list[float] = []

    async def work(env: Any) -> None:
        while not queue.empty():
            s = queue.get_nowait()
            await env.areset(seed=s)
            for action in plans[s]:
                t = time.perf_counter()
                await env.astep(action)
                steps.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(work(e) for e in envs))
        return steps, time.perf_counter() - t0
    finally:
        await asyncio.gather(*(e.aclose() for e in envs))


async def bare_replay(plans: dict[int, list[Action]], workers: int, base_url: str) -> tuple[list[float], float]:
    """The same actions with Playwright alone: one browser for all workers, a context per episode."""
    from playwright.async_api import async_playwright

    seeds = list(plans)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for s in seeds:
        queue.put_nowait(s)
    steps: list[float] = []
    env = rowgym.make(ENV_ID)
    goals = {s: env.make_task(s) for s in seeds}

    async def episode(browser: Any, shop: ShopClient, s: int, timed: bool) -> None:
        created = await shop.create_session(goals[s].instruction)
        ctx = await browser.new_context(viewport={"width": 1100, "height": 760})
        page = await ctx.new_page()
        await page.goto(shop.start_url(created))
        await page.aria_snapshot(mode="ai")
        for action in plans[s]:
            t = time.perf_counter()
            call = action.tool_call
            args = call.args()
            if call.name == "finish":
                pass
            elif call.name == "click":
                await page.locator(f"aria-ref={args['ref']}").click()
            elif call.name == "type":
                loc = page.locator(f"aria-ref={args['ref']}")
                await loc.fill(args["text"])
                if args.get("submit"):
                    await loc.press("Enter")
            elif call.name == "select":
                await page.locator(f"aria-ref={args['ref']}").select_option(label=args["option"])
            else:
                raise ValueError(f"the bare loop does not replay {call.name}")
            if call.name != "finish":
                await page.wait_for_load_state("load")
                await page.aria_snapshot(mode="ai")
            if timed:
                steps.append(time.perf_counter() - t)
        await ctx.close()

    async with async_playwright() as pw:
        browsers = [await pw.chromium.launch(executable_path=default_executable(), args=CHROMIUM_ARGS)] * workers
        async with ShopClient(base_url) as shop:
            await asyncio.gather(*(episode(b, shop, seeds[0], timed=False) for b in browsers))  # warm-up

            async def work(browser: Any) -> None:
                while not queue.empty():
                    await episode(browser, shop, queue.get_nowait(), timed=True)

            t0 = time.perf_counter()
            await asyncio.gather(*(work(b) for b in browsers))
            wall = time.perf_counter() - t0
        await browsers[0].close()
    return steps, wall


async def engine(seeds: list[int], workers: int) -> tuple[int, float]:
    """Expert episodes through play_episode (rows recorded), ``workers`` envs on one loop."""
    envs = [rowgym.make(ENV_ID) for _ in range(workers)]
    await asyncio.gather(*(e.areset(seed=seeds[0]) for e in envs))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for s in seeds:
        queue.put_nowait(s)
    ok = 0

    async def work(env: Any) -> None:
        nonlocal ok
        while not queue.empty():
            ep = await play_episode(env, ShopExpert(), EpisodeKey("bench", queue.get_nowait()))
            ok += ep.success

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(work(e) for e in envs))
        return ok, time.perf_counter() - t0
    finally:
        await asyncio.gather(*(e.aclose() for e in envs))


def _tree() -> dict[int, tuple[int, int, bytes]]:
    """pid -> (parent pid, CPU ticks of it and of its reaped children, argv) for this process's descendants."""
    procs: dict[int, tuple[int, int, bytes]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            procs[int(entry.name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]),
                                      (entry / "cmdline").read_bytes()[:200])
        except (OSError, IndexError, ValueError):
            continue
    me, mine = os.getpid(), {}
    for pid, info in procs.items():
        p = pid
        while p > 1 and p != me:
            p = procs.get(p, (1, 0, b""))[0]
        if p == me and pid != me:
            mine[pid] = info
    return mine


def cpu_split() -> dict[str, float]:
    """CPU seconds so far of this process, the Playwright driver(s), Chromium's browser processes and its
    other processes (renderers, GPU, network; renderers of closed contexts count through their reaper)."""
    tck = os.sysconf("SC_CLK_TCK")
    usage = os.times()
    out = {"python": usage.user + usage.system, "driver": 0.0, "browser": 0.0, "renderers etc.": 0.0}
    for _, ticks, argv in _tree().values():
        kind = ("renderers etc." if b"--type=" in argv else "browser") if b"chromium" in argv else "driver"
        out[kind] += ticks / tck
    return out


def chromium_rss_mb() -> float:
    """Resident memory of the Chromium processes that descend from this process, in MB."""
    me, total = os.getpid(), 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"chromium" not in (entry / "cmdline").read_bytes():
                continue
            pid = int(entry.name)
            while pid > 1 and pid != me:
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if pid == me:
                rss = next(ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("VmRSS:"))
                total += int(rss.split()[1])
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


async def sharing_run(plans: dict[int, list[Action]], workers: int, *, share: bool,
                      spare: bool, executable: str | None = None) -> dict[str, Any]:
    """``workers`` envs on one loop replay the recorded episodes; each ``areset`` is timed."""
    envs = [rowgym.make(ENV_ID, share_browser=share, spare_context=spare, executable_path=executable)
            for _ in range(workers)]
    seeds = list(plans)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for s in seeds:
        queue.put_nowait(s)
    resets: list[float] = []
    ok = 0

    async def work(env: Any) -> None:
        nonlocal ok
        while not queue.empty():
            s = queue.get_nowait()
            t = time.perf_counter()
            await env.areset(seed=s)
            resets.append(time.perf_counter() - t)
            info: dict = {}
            for action in plans[s]:
                *_, info = await env.astep(action)
            ok += bool(info.get("verdict") and info["verdict"].success)

    try:
        await asyncio.gather(*(e.areset(seed=seeds[0]) for e in envs))  # launch the browsers (not timed)
        for e in envs:  # ... and end the warm-up episode like a real one: the next reset follows steps
            await e.astep({"name": "scroll", "arguments": {"direction": "down"}})
        cpu0, load0, t0 = cpu_split(), os.getloadavg()[0], time.perf_counter()
        await asyncio.gather(*(work(e) for e in envs))
        wall = time.perf_counter() - t0
        cpu1, load1 = cpu_split(), os.getloadavg()[0]
        rss = chromium_rss_mb()
    finally:
        await asyncio.gather(*(e.aclose() for e in envs))
    cpu = {k: (cpu1[k] - cpu0[k]) / len(seeds) for k in cpu0}
    return {"resets": resets, "wall": wall, "ok": ok, "eps": len(seeds) / wall, "rss": rss, "cpu": cpu,
            "cpu_total": sum(cpu.values()), "load": (load0 + load1) / 2}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def describe_run(r: dict[str, Any], n: int) -> str:
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu"].items())
    return (f"reset p50 {pct(r['resets'], .5):.3f} s  p95 {pct(r['resets'], .95):.3f} s  {r['eps']:.2f} episodes/s  "
            f"CPU {r['cpu_total']:.2f} s/episode ({cpu})  success {r['ok']}/{n}  load {r['load']:.1f}")


def mean_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.mean(r[key] for r in runs)


async def sharing(plans: dict[int, list[Action]], rounds: int) -> None:
    n, full = len(plans), CHROMIUM
    print(f"\n== sharing: {n} recorded episodes replayed (areset + astep); {os.cpu_count()} CPUs ==")
    before = await sharing_run(plans, 1, share=False, spare=False, executable=full)
    full_after = await sharing_run(plans, 1, share=True, spare=True, executable=full)
    after = await sharing_run(plans, 1, share=True, spare=True)
    for name, r in (("before: chromium, own browser, context made in reset", before),
                    ("shared chromium, spare context", full_after),
                    (f"after: {Path(default_executable()).name}, shared, spare context", after)):
        print(f"  1 env, {name:56s}: {describe_run(r, n)}")
    shared_runs, own_runs = [], []
    for _ in range(rounds):  # alternately, so that a change in the machine's load hits both alike
        shared_runs.append(await sharing_run(plans, 8, share=True, spare=True))
        own_runs.append(await sharing_run(plans, 8, share=False, spare=True))
    for name, runs in (("8 contexts in 1 Chromium", shared_runs), ("8 Chromiums, 1 context each", own_runs)):
        for r in runs:
            print(f"  8 envs, {name:28s}: {describe_run(r, n)}  Chromium RSS {r['rss']:.0f} MB")
    b50, a50 = pct(before["resets"], .5), pct(after["resets"], .5)
    eps_s, eps_o = mean_of(shared_runs, "eps"), mean_of(own_runs, "eps")
    cpu_s, cpu_o = mean_of(shared_runs, "cpu_total"), mean_of(own_runs, "cpu_total")
    rss_s, rss_o = mean_of(shared_runs, "rss"), mean_of(own_runs, "rss")
    print(f"  reset p50 before / after: {b50 / a50:.2f}x; after vs the 0.3 s target: {a50:.3f} s")
    print(f"  8 contexts in 1 Chromium / 8 Chromiums ({rounds} alternating rounds): episodes/s {eps_s / eps_o:.2f}x, "
          f"CPU s per episode {cpu_s / cpu_o:.2f}x, Chromium memory {rss_s:.0f} MB vs {rss_o:.0f} MB")
    note = f"{n} dev episodes replayed; os.cpu_count()={os.cpu_count()}"
    results.record("shop reset p50: defaults / 0.3 s target", ours=a50, baseline=0.3,
                   unit="s", baseline_name="target", ratio=a50 / 0.3, target="<= 1",
                   note=f"p95 {pct(after['resets'], .95):.3f} s; 1 env; load {after['load']:.1f}; {note}",
                   bench="bench_shop.py")
    results.record("shop reset p50: before (chromium, own browser, context in reset) / after", ours=a50,
                   baseline=b50, unit="s", baseline_name="before", ratio=b50 / a50,
                   note=f"p95 {pct(before['resets'], .95):.3f} -> {pct(after['resets'], .95):.3f} s; CPU "
                        f"{before['cpu_total']:.2f} -> {after['cpu_total']:.2f} s/episode; load "
                        f"{before['load']:.1f} / {after['load']:.1f}; {note}", bench="bench_shop.py")
    results.record("shop episodes/s: 8 contexts in 1 Chromium / 8 Chromiums", ours=eps_s,
                   baseline=eps_o, unit="episodes/s", baseline_name="8 Chromiums", ratio=eps_s / eps_o,
                   note=f"{rounds} alternating rounds; CPU {cpu_s:.2f} vs {cpu_o:.2f} s/episode; Chromium RSS "
                        f"{rss_s:.0f} vs {rss_o:.0f} MB; load {mean_of(shared_runs, 'load'):.1f} / "
                        f"{mean_of(own_runs, 'load'):.1f}; {note}", bench="bench_shop.py")


def ms(xs: list[float]) -> str:
    return f"mean {1000 * statistics.mean(xs):6.1f} ms  median {1000 * statistics.median(xs):6.1f} ms"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of 8 contexts vs 8 Chromiums")
    ap.add_argument("--sections", default="sharing,steps",
                    help="comma-separated: sharing (reset latency, 1 vs 8 Chromiums), steps (env vs bare Playwright)")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    env = rowgym.make(ENV_ID)
    seeds = env.splits.seeds(args.split, args.episodes)
    plans = await record(seeds)
    base_url = env.base_url or __import__("rowgym.envs.shop.server", fromlist=["x"]).base_url(env.port)
    n_steps = sum(len(p) for p in plans.values())
    print(f"{len(seeds)} {args.split} episodes, {n_steps} expert steps ({n_steps / len(seeds):.1f} per episode)")
    if "sharing" in sections:
        await sharing(plans, args.rounds)
    if "steps" not in sections:
        return
    rows = {}
    for workers in (1, 8):
        e_steps, e_wall = await env_replay(plans, workers)
        b_steps, b_wall = await bare_replay(plans, workers, base_url)
        ok, g_wall = await engine(seeds, workers)
        rows[workers] = (e_steps, e_wall, b_steps, b_wall, ok, g_wall)
        print(f"\nconcurrency {workers} ({workers} envs sharing one Chromium, one context per episode)")
        print(f"  env step   {ms(e_steps)}   replay {len(seeds) / e_wall:5.2f} episodes/s")
        print(f"  bare step  {ms(b_steps)}   replay {len(seeds) / b_wall:5.2f} episodes/s")
        print(f"  env / bare step time: {statistics.mean(e_steps) / statistics.mean(b_steps):.2f}x")
        print(f"  expert via play_episode (rows recorded): {len(seeds) / g_wall:5.2f} episodes/s, "
              f"success {ok}/{len(seeds)}")
    one, eight = rows[1], rows[8]
    print(f"\nconcurrency 8 vs 1: episodes/s x{one[5] / eight[5]:.2f} (play_episode), "
          f"x{one[1] / eight[1]:.2f} (env replay), x{one[3] / eight[3]:.2f} (bare); "
          f"mean step time x{statistics.mean(eight[0]) / statistics.mean(one[0]):.2f} (env)")
    print(f"machine: {__import__('os').cpu_count()} CPUs")


if __name__ == "__main__":
    asyncio.run(main())
