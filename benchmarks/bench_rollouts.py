"""Orchestration efficiency of the rollout engine against a fixed-latency mock policy server.

    .venv/bin/python benchmarks/bench_rollouts.py [--episodes 256] [--turns 8] [--latency 0.2,1,2] [--no-ray]

Workload: ``episodes`` episodes all in flight at once, each exactly 8 turns of the
mock env ``rowgym-mock/Countdown-v0``; every turn is one ``/v1/completions`` call that
the mock answers after ``latency`` seconds (vLLM's response shape, nothing tokenised).
Ideal time = turns × latency. Efficiency = ideal / measured. For each latency, three
loops in one run:

* plain   — 256 coroutines posting the same token-id JSON over keep-alive connections and
            appending the returned ids (the floor: the leanest client loop, with the same
            event loop, JSON library and HTTP client — rowgym.agents.http_transport — as the
            engine, so the ratio is the engine's own overhead); the same loop over one aiohttp
            session is printed beside it (``plain aiohttp``: what the HTTP client alone costs);
* engine  — ``rowgym`` collect with the ``vllm`` agent (token-in/token-out prompts,
            rows with ids/logprobs/masks, the env, the store with fsync);
* ray     — the same collection with ``backend="ray"`` (actor start-up excluded from
            the rollout time, printed separately).

The mock server runs in its own process on the same machine, so at short latencies
on a 2-core VM the server and client compete for the CPU (every turn re-sends the whole
prompt) and even the plain loop falls short of the ideal: the sweep shows from which
latency on the machine, not the engine, stops being the limit. A policy turn of a real
model (tens of sampled tokens) takes seconds; 0.2 s is a stress setting.

The machine's load changes the wall-clock ratios (the client, the mock server and anything
else share the cores), so each latency also prints the load average and the CPU each loop
spends per policy turn, which load changes far less.

Prints numbers and records the engine/plain ratios in results/bench.json; asserts nothing.
Needs the tiny model's tokenizer (``rowgym model build-tiny``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from rowgym import aio
from rowgym.agents.http_transport import LeanHTTP
from rowgym.rollouts import mock
from rowgym.rollouts.engine import CollectConfig, acollect
from rowgym.store import TrajectoryStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

COMPLETION = '<tool_call>\n{"name": "tick", "arguments": {}}\n</tool_call>'


def completion_ids(tokenizer) -> list[int]:
    return tokenizer.encode(COMPLETION, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]


async def _token_loop(post, episodes: int, turns: int, prompt: Prompt) -> float:
    """``episodes`` coroutines of ``turns`` token-id JSON posts each (``post(payload) -> body bytes``),
    parsing only what is needed: the same loop for both transports, so they differ in the client only.
    Each request has the engine's fields, and its prompt the engine's ids (see :func:`engine_prompts`)."""
    async def episode() -> None:
        ids = list(prompt.first)
        for turn in range(turns):
            body = {"model": "m", "prompt": ids, "max_tokens": 64, "temperature": 1.0, "top_p": 1.0, "logprobs": 0,
                    "return_token_ids": True, "skip_special_tokens": False}
            data = aio.loads(await post(aio.dumps(body)))
            ids += data["choices"][0]["token_ids"] + prompt.observation(turn)

    t0 = time.perf_counter()
    await asyncio.gather(*(episode() for _ in range(episodes)))
    return time.perf_counter() - t0


async def plain_loop(base_url: str, episodes: int, turns: int, prompt: Prompt) -> float:
    """The baseline: the agent's lean HTTP client."""
    lean = LeanHTTP()
    target = lean.target(base_url + "/v1/completions")

    async def post(payload: bytes) -> bytes:
        status, raw = await lean.post(target, payload, 120.0)
        assert status == 200, raw[:200]
        return raw

    try:
        return await _token_loop(post, episodes, turns, prompt)
    finally:
        lean.close()


async def plain_aiohttp_loop(base_url: str, episodes: int, turns: int, prompt: Prompt) -> float:
    """The same loop over one aiohttp session (the agent's transport for https servers)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as sess:
        async def post(payload: bytes) -> bytes:
            async with sess.post(base_url + "/v1/completions", data=payload, headers=aio.JSON_HEADERS) as r:
                return await r.read()

        return await _token_loop(post, episodes, turns, prompt)


@dataclass
class Prompt:
    """The engine's prompts for the mock env: the first one, and the ids each observation appends."""

    first: list[int]
    observations: list[list[int]]

    def observation(self, turn: int) -> list[int]:
        return self.observations[min(turn, len(self.observations) - 1)]


async def engine_prompts(completion: list[int]) -> Prompt:
    """One engine episode's prompts (against a mock that answers at once), read back from its rows,
    so the plain loop posts the same ids; they do not depend on the latency."""
    with mock.MockServerProcess(completion, COMPLETION, 0.0) as srv, tempfile.TemporaryDirectory() as d:
        await acollect(engine_config(d, 1, srv.base_url))
        steps = next(TrajectoryStore(d, readonly=True).episodes()).steps
    prompts = [s.tokens.prompt_ids for s in steps]
    segments = [b[len(a) + len(completion):] for a, b in zip(prompts, prompts[1:], strict=False)]
    assert all(b[:len(a)] == a for a, b in zip(prompts, prompts[1:], strict=False)), "prompts must only grow"
    return Prompt(first=prompts[0], observations=segments)


def engine_config(out: str, episodes: int, base_url: str, backend: str = "asyncio") -> CollectConfig:
    return CollectConfig(env_id=mock.COUNTDOWN_ID, agent="vllm", episodes=episodes, out=out, concurrency=episodes,
                         progress=False, backend=backend, setup_modules=["rowgym.rollouts.mock"],
                         agent_kwargs={"base_url": base_url, "max_tokens": 64})


async def measure(args: argparse.Namespace, latency: float, ids: list[int], prompt: Prompt) -> dict:
    """plain vs engine (and ray) at one latency, over ``repeats`` rounds of each: engine/plain is the median of
    the rounds' own ratios (a round's two runs are seconds apart, so a change of the machine's load between
    rounds cancels out; the best of each side would pair runs from different rounds), efficiencies the best."""
    ideal = args.turns * latency

    def per_turn(cpu_s: float) -> float:  # ms of this process's CPU per policy turn
        return cpu_s / (args.episodes * args.turns) * 1e3

    print(f"\n== latency {latency}s per call: {args.episodes} episodes in flight x {args.turns} turns, "
          f"ideal {ideal:.2f}s (load average {os.getloadavg()[0]:.2f})")
    rows = []
    with mock.MockServerProcess(ids, COMPLETION, latency) as srv:
        for rep in range(args.repeats):
            c0 = time.process_time()
            plain = await plain_loop(srv.base_url, args.episodes, args.turns, prompt)
            c1 = time.process_time()
            with tempfile.TemporaryDirectory() as d:
                s = await acollect(engine_config(d, args.episodes, srv.base_url))
            c2 = time.process_time()
            assert s.n_done == args.episodes and s.n_success == args.episodes, s
            plain_aio = await plain_aiohttp_loop(srv.base_url, args.episodes, args.turns, prompt)
            c3 = time.process_time()
            print(f"[{rep}] plain  {plain:6.2f}s eff {ideal / plain:.3f} ({per_turn(c1 - c0):.2f} ms CPU/turn; "
                  f"plain aiohttp {plain_aio:.2f}s eff {ideal / plain_aio:.3f}, {per_turn(c3 - c2):.2f} ms) | "
                  f"engine {s.rollout_s:6.2f}s eff {ideal / s.rollout_s:.3f} ({per_turn(c2 - c1):.2f} ms CPU/turn, "
                  f"whole collect() {ideal / s.wall_s:.3f}) | engine/plain {plain / s.rollout_s:.3f}")
            rows.append((plain, s.rollout_s, per_turn(c1 - c0), per_turn(c2 - c1), plain_aio, per_turn(c3 - c2)))
        best_plain, best_engine = min(r[0] for r in rows), min(r[1] for r in rows)
        paired = sorted(r[0] / r[1] for r in rows)
        out = {"latency": latency, "plain": ideal / best_plain, "engine": ideal / best_engine,
               "engine/plain": statistics.median(paired), "rounds": (paired[0], paired[-1]),
               "best/best": best_plain / best_engine, "plain_cpu_ms": min(r[2] for r in rows),
               "engine_cpu_ms": min(r[3] for r in rows), "load": os.getloadavg()[0],
               "plain_aiohttp": ideal / min(r[4] for r in rows), "plain_aiohttp_cpu_ms": min(r[5] for r in rows)}
        results.record(f"rollout engine, {args.episodes} in flight at {latency:g} s/call: plain / engine time",
                       ours=best_engine, baseline=best_plain, unit="s", ratio=out["engine/plain"], target=">= 0.95",
                       baseline_name="plain token-id loop",
                       note=f"median of {args.repeats} rounds' ratios (range {paired[0]:.3f}-{paired[-1]:.3f}; best "
                            f"of each side {out['best/best']:.3f}; times: the best of each), {args.turns} turns; "
                            f"CPU per turn engine "
                            f"{out['engine_cpu_ms']:.2f} ms, plain {out['plain_cpu_ms']:.2f} ms (over aiohttp "
                            f"{out['plain_aiohttp_cpu_ms']:.2f} ms); load average "
                            f"{out['load']:.2f} on {os.cpu_count()} CPUs", bench="bench_rollouts.py")
        if args.ray:
            import ray

            if not ray.is_initialized():
                t = time.perf_counter()
                ray.init(include_dashboard=False, configure_logging=False)
                print(f"ray.init {time.perf_counter() - t:.1f}s")
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                s = await acollect(engine_config(d, args.episodes, srv.base_url, backend="ray"))
                total = time.perf_counter() - t
            assert s.n_done == args.episodes, s
            print(f"[ray] {s.rollout_s:6.2f}s eff {ideal / s.rollout_s:.3f} (with actor start-up {total:.2f}s -> "
                  f"{ideal / total:.3f}) | ray/plain {best_plain / s.rollout_s:.3f}")
            out["ray"] = ideal / s.rollout_s
    return out


async def main_async(args: argparse.Namespace) -> None:
    from rowgym.agents.llm import load_tokenizer
    from rowgym.agents.serving import default_model_dir

    tok = load_tokenizer(args.model_dir or default_model_dir())
    ids = completion_ids(tok)
    assert mock.TURNS == args.turns, "the mock env has exactly 8 turns"
    prompt = await engine_prompts(ids)
    print(f"mock server in its own process; prompts: {len(prompt.first)} ids, then + {len(ids)} completion ids + "
          f"{len(prompt.observation(0))} observation ids a turn (the engine's, read from its rows); "
          f"event loop {'uvloop' if aio.loop_factory() else 'asyncio'}")
    table = []
    try:
        for latency in args.latency:
            table.append(await measure(args, latency, ids, prompt))
    finally:
        if args.ray:
            import ray

            ray.shutdown()
    print(f"\nefficiency = ideal / measured, best of {args.repeats}; engine/plain: the median of the {args.repeats} "
          f"rounds' own ratios (target >= 0.95), their range beside it; CPU: ms of this process per policy turn, "
          f"least of {args.repeats}; load: 1-minute load average after the runs ({os.cpu_count()} CPUs)")
    print(f"{'latency':>8} {'plain':>7} {'engine':>7} {'engine/plain':>13} {'rounds':>12} {'plain CPU':>10} {'engine CPU':>11} "
          f"{'plain aiohttp':>14} {'its CPU':>8} {'load':>5}" + (f" {'ray':>6}" if args.ray else ""))
    for r in table:
        print(f"{r['latency']:>7}s {r['plain']:>7.3f} {r['engine']:>7.3f} {r['engine/plain']:>13.3f} "
              f"{r['rounds'][0]:>6.3f}-{r['rounds'][1]:.3f} "
              f"{r['plain_cpu_ms']:>10.2f} {r['engine_cpu_ms']:>11.2f} {r['plain_aiohttp']:>14.3f} "
              f"{r['plain_aiohttp_cpu_ms']:>8.2f} {r['load']:>5.2f}"
              + (f" {r['ray']:>6.3f}" if args.ray else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=256)
    ap.add_argument("--turns", type=int, default=mock.TURNS)
    ap.add_argument("--latency", type=lambda v: [float(x) for x in v.split(",")], default=[0.2, 1.0, 2.0],
                    help="seconds per policy call, comma-separated for a sweep")
    ap.add_argument("--repeats", type=int, default=3)  # a median of 3 rounds outlasts one round in a noisy window
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--no-ray", dest="ray", action="store_false")
    aio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
