"""benchmarks/results.py: benchmarks run side by side keep every row."""

from __future__ import annotations

import importlib.util
import multiprocessing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _results_module():
    spec = importlib.util.spec_from_file_location("bench_results", ROOT / "benchmarks" / "results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _record_many(path: str, who: int) -> None:
    mod = _results_module()
    for i in range(15):
        mod.record(f"bench {who} ratio {i}", ours=1.0, baseline=2.0, unit="ms", ratio=2.0, target=">= 1",
                   path=Path(path))


def test_concurrent_benchmarks_keep_every_row(tmp_path):
    path = tmp_path / "bench.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_record_many, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    rows = _results_module().load(path)["rows"]
    assert sorted(r["name"] for r in rows) == sorted(f"bench {w} ratio {i}" for w in range(4) for i in range(15))
    assert (tmp_path / "bench.md").read_text().count("| bench ") == 60
