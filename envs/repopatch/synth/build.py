"""Build (validate) and cache synthesized tasks; the env loads the cached manifest.

Usage::

    python -m rowgym.envs.repopatch.synth.build            # all candidates of every library
    ROWGYM_SYNTH_TASKS=20 python -m rowgym.envs.repopatch.synth.build

Per library: run its test suite once (baseline), then for each mutation candidate
(deterministic order, at most ``PER_FUNCTION`` per function) write the mutated file in
a sandbox, run the suite, and keep the mutation iff it breaks at least one baseline-
passing test, at most half of them, and does not time out. FAIL_TO_PASS = the tests it
breaks; PASS_TO_PASS = up to ``P2P_SAMPLE`` other passing tests (sampled for speed).
Workers validate in parallel sandboxes. Results go to
``$ROWGYM_CACHE/repopatch/synth/<lib>-<version>-m<mutator version>.json``, with how many
candidates were tried, so a later build with a larger count resumes where this one stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

from rowgym.envs.repopatch.grading import Boxes
from rowgym.envs.repopatch.synth.libraries import LIBRARIES, Library, cache_root, source_dir
from rowgym.envs.repopatch.synth.mutate import MUTATOR_VERSION, Mutation, candidates
from rowgym.envs.repopatch.task import (
    Base,
    RepoPatchTask,
    call,
    edit_calls,
    is_test_config,
    parse_pytest_summary,
    pytest_argv,
    unified_diff,
)

PER_FUNCTION = 8
P2P_SAMPLE = 30
MAX_CANDIDATES = 300


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def manifest_path(lib: Library) -> Path:
    return cache_root() / "synth" / f"{lib.key}-m{MUTATOR_VERSION}.json"


def library_candidates(lib: Library) -> list[Mutation]:
    """Candidates in a deterministic, function-spread order (at most PER_FUNCTION per function)."""
    root = source_dir(lib)
    picked: list[Mutation] = []
    for rel in lib.sources:
        per_fn: dict[str, list[Mutation]] = {}
        for m in candidates((root / rel).read_text(), rel):
            per_fn.setdefault(m.function, []).append(m)
        for fn, ms in per_fn.items():
            random.Random(f"{lib.key}:{rel}:{fn}").shuffle(ms)
            picked.extend(ms[:PER_FUNCTION])
    random.Random(lib.key).shuffle(picked)
    return picked[: min(MAX_CANDIDATES, lib.max_candidates)]


def test_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("test*.py")
                  if is_test_config(p.relative_to(root).as_posix()) and p.name != "conftest.py")


def _exc_types(stdout: str, f2p: list[str]) -> list[str]:
    types = set()
    for line in stdout.splitlines():
        if line.startswith("FAILED ") and " - " in line:
            m = re.match(r"([A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit))", line.split(" - ", 1)[1])
            if m:
                types.add(m.group(1).rsplit(".", 1)[-1])
    return sorted(types) or ["wrong results"]


def make_task(lib: Library, root: Path, m: Mutation, f2p: list[str], passing: list[str], stdout: str) -> RepoPatchTask:
    """A task from a validated mutation (problem statement names behaviour, not tests)."""
    hidden = sorted({n.split("::")[0] for n in f2p})
    others = sorted(n for n in passing if n not in f2p)
    p2p = sorted(random.Random(f"{lib.key}:{m.id}").sample(others, min(P2P_SAMPLE, len(others))))
    original = (root / m.file).read_text()
    module = m.file.removeprefix("src/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    kinds = ", ".join(_exc_types(stdout, f2p))
    statement = (f"A regression in {lib.name} {lib.version}: `{module}.{m.function}` no longer behaves as "
                 f"documented. {len(f2p)} test(s) exercising it now fail ({kinds}). Find the bug in "
                 f"`{m.file}` and fix it without changing the tests.")
    return RepoPatchTask(
        instance_id=f"{lib.key}__{m.id}", source="synth", repo=lib.name, base=Base(dir=str(root)),
        edits={m.file: m.source}, remove=hidden, problem_statement=statement,
        visible_tests=[t for t in test_files(root) if t not in hidden],
        hidden_files={h: (root / h).read_text() for h in hidden},
        test_paths=sorted(set(hidden) | {n.split("::")[0] for n in p2p}), fail_to_pass=sorted(f2p),
        pass_to_pass=p2p, pythonpath=list(lib.pythonpath),
        gold=[*edit_calls(m.file, m.source, original), call("submit")],
        gold_patch=unified_diff({m.file: m.source.encode()}, {m.file: original.encode()}),
        location=f"{m.file}::{m.function}")


async def build_library(lib: Library, want: int | None, workers: int, backend: str = "auto",
                        progress: bool = True) -> list[RepoPatchTask]:
    """Validate candidates of ``lib`` until ``want`` tasks exist (all candidates if None); cache them."""
    path = manifest_path(lib)
    root = source_dir(lib)
    cands = library_candidates(lib)
    digest = hashlib.sha256("\n".join(f"{m.file}:{m.id}:{hash_text(m.source)}" for m in cands).encode()).hexdigest()[:16]
    data = json.loads(path.read_text()) if path.exists() else {}
    if data.get("candidates_hash") != digest:  # another candidate list: start over
        data = {"tried": 0, "tasks": [], "seconds": 0.0, "candidates_hash": digest}
    todo_from = data["tried"]
    if (want is not None and len(data["tasks"]) >= want) or todo_from >= len(cands):
        return [_load(t, root) for t in data["tasks"]]
    t0 = time.perf_counter()
    env = {"PYTHONPATH": ":".join(f"/workspace/{p}" for p in lib.pythonpath)} if lib.pythonpath else {}
    tests = test_files(root)
    results: dict[int, dict | None] = {}
    next_i = todo_from
    stop = False
    async with Boxes(backend, pool_size=workers, warm=False) as boxes:  # batch: throughput over latency
        async def baseline() -> tuple[set[str], float]:
            sb = await boxes.acquire()
            try:
                await sb.copy_in(root)
                r = await sb.exec(pytest_argv(tests), timeout=600, env=env)
            finally:
                await sb.close()
            res = parse_pytest_summary(r.stdout)
            return {n for n, s in res.items() if s == "passed"}, r.duration_s

        passing, base_s = await baseline()
        timeout = max(30.0, base_s * 4 + 10)

        async def worker() -> None:
            nonlocal next_i, stop
            sb = await boxes.acquire()
            try:
                await sb.copy_in(root)
                while not stop and next_i < len(cands):
                    i, next_i = next_i, next_i + 1
                    m = cands[i]
                    await sb.write_file(m.file, m.source)
                    r = await sb.exec(pytest_argv(tests), timeout=timeout, env=env)
                    await sb.write_file(m.file, (root / m.file).read_bytes())
                    res = parse_pytest_summary(r.stdout)
                    f2p = sorted(n for n in passing if res.get(n) != "passed")
                    ok = not r.timed_out and res and 1 <= len(f2p) <= len(passing) // 2
                    results[i] = make_task(lib, root, m, f2p, sorted(passing), r.stdout).model_dump(
                        mode="json") if ok else None
                    if want is not None and len(data["tasks"]) + sum(v is not None for v in results.values()) >= want:
                        stop = True
                    if progress:
                        n_ok = sum(v is not None for v in results.values())
                        print(f"\r[synth] {lib.key}: {len(results)}/{len(cands) - todo_from} candidates, "
                              f"{n_ok} valid", end="", file=sys.stderr, flush=True)
            finally:
                await sb.close()

        await asyncio.gather(*(worker() for _ in range(workers)))
    if progress:
        print(file=sys.stderr)
    # Keep results only for a contiguous prefix of candidates, so a resumed build never skips one.
    done = todo_from
    while done in results:
        if results[done] is not None:
            data["tasks"].append(_store(results[done]))
        done += 1
    data["tried"] = done
    data["seconds"] = round(data["seconds"] + time.perf_counter() - t0, 1)
    data.update(library=lib.key, mutator_version=MUTATOR_VERSION, candidates=len(cands))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return [_load(t, root) for t in data["tasks"]]


def _store(task: dict) -> dict:
    task = dict(task)
    task["base"] = {"dir": "<source>"}
    return task


def _load(task: dict, root: Path) -> RepoPatchTask:
    return RepoPatchTask.model_validate({**task, "base": {"dir": str(root)}})


def _run_sync(coro):  # noqa: ANN001, ANN202
    """Run a coroutine to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()


def load_or_build(n_tasks: int | None = None, workers: int | None = None, backend: str = "auto",
                  progress: bool = True) -> list[RepoPatchTask]:
    """The synthesized tasks (``n_tasks`` of them, spread over the libraries), building what is missing."""
    workers = workers or 2
    per_lib = None if n_tasks is None else -(-n_tasks // len(LIBRARIES))
    by_lib = [_run_sync(build_library(lib, per_lib, workers, backend, progress)) for lib in LIBRARIES]
    if per_lib is not None:
        by_lib = [ts[:per_lib] for ts in by_lib]
    out = [t for ts in by_lib for t in ts]
    return out if n_tasks is None else out[:n_tasks]


def main(argv: list[str] | None = None) -> int:
    import os

    ap = argparse.ArgumentParser(description="Build and cache the synthesized repo-patch tasks.")
    env_n = os.environ.get("ROWGYM_SYNTH_TASKS")
    ap.add_argument("--tasks", type=int, default=int(env_n) if env_n else None, help="default: all candidates")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--backend", default="auto")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    tasks = load_or_build(a.tasks, a.workers, a.backend)
    for lib in LIBRARIES:
        d = json.loads(manifest_path(lib).read_text())
        print(f"{lib.key}: {len(d['tasks'])} valid of {d['tried']}/{d['candidates']} candidates tried "
              f"({d['seconds']}s of validation in total)")
    print(f"{len(tasks)} synthesized tasks loaded in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
