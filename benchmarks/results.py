"""Shared results of the performance benchmarks: ``results/bench.json`` and ``results/bench.md``.

    python benchmarks/results.py --reset    # start a fresh run (make bench does this first)
    python benchmarks/results.py            # print the markdown table of every ratio

Each benchmark script calls :func:`record` once per ratio it measured side by side in one
run. A row is (name, ours, floor/baseline, ratio, target); recording a name again replaces
its row, so one script can be rerun alone. Nothing here passes or fails: ``meets`` is
printed next to the target for the reader.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "bench.json"
>>> row = record("demo", ours=12.0, baseline=120.0, unit="ms", ratio=10.0, target=">= 10", path=path)
>>> row["meets"], markdown(load(path)).splitlines()[2].split("|")[1].strip()
(True, 'demo')
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "bench.json"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _meets(ratio: float, target: str) -> bool | None:
    """Whether ``ratio`` satisfies a target written as ``">= 10"`` or ``"<= 1.10"`` (None: no target)."""
    op, _, num = target.strip().partition(" ")
    try:
        bound = float(num)
    except ValueError:
        return None
    return {">=": ratio >= bound, "<=": ratio <= bound}.get(op)


def load(path: Path = RESULTS) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            return data
    except (OSError, ValueError):
        pass
    return {"rows": []}


def record(name: str, *, ours: float, baseline: float, unit: str, ratio: float, target: str = "",
           baseline_name: str = "", note: str = "", bench: str = "", path: Path = RESULTS) -> dict[str, Any]:
    """Add (or replace) one ratio row and rewrite ``bench.json`` and ``bench.md`` beside it.

    Args:
        name: What the ratio compares, e.g. ``"sandbox exec p50: cold docker run / channel"``.
        ours: Our number (in ``unit``).
        baseline: The floor or baseline it is compared with (same unit).
        unit: ``"ms"``, ``"steps/s"``, ...
        ratio: The ratio as the target states it (e.g. cold/warm, or record/no-record time).
        target: ``">= 10"``, ``"<= 1.10"`` or empty.
        baseline_name: What the baseline is.
        note: How it was measured (reps, statistic).
        bench: The script that measured it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:  # benchmarks run side by side must not lose each other's rows
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _record_locked(path, name, ours=ours, baseline=baseline, unit=unit, ratio=ratio, target=target,
                              baseline_name=baseline_name, note=note, bench=bench)


def _record_locked(path: Path, name: str, **f: Any) -> dict[str, Any]:
    ours, baseline, unit, ratio, target = f["ours"], f["baseline"], f["unit"], f["ratio"], f["target"]
    baseline_name, note, bench = f["baseline_name"], f["note"], f["bench"]
    data = load(path)
    row = {"name": name, "ours": round(ours, 4), "baseline": round(baseline, 4), "unit": unit,
           "baseline_name": baseline_name, "ratio": round(ratio, 3), "target": target,
           "meets": _meets(ratio, target), "note": note, "bench": bench,
           "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "commit": _commit()}
    data["rows"] = [r for r in data["rows"] if r.get("name") != name] + [row]
    data["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    for p, text in ((path, json.dumps(data, indent=2) + "\n"), (path.with_suffix(".md"), markdown(data))):
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, p)
    return row


def markdown(data: dict[str, Any]) -> str:
    """The table of every ratio: name, ours, floor/baseline, ratio, target."""
    lines = ["| benchmark | ours | floor / baseline | ratio | target |", "|---|---|---|---|---|"]
    for r in data["rows"]:
        meets = {True: " (met)", False: " (NOT met)", None: ""}[r.get("meets")]
        base = f"{_num(r['baseline'])} {r['unit']}" + (f" ({r['baseline_name']})" if r.get("baseline_name") else "")
        lines.append(f"| {r['name']} | {_num(r['ours'])} {r['unit']} | {base} | {r['ratio']:.2f}x | "
                     f"{r.get('target') or '-'}{meets} |")
    commits = sorted({r.get("commit", "?") for r in data["rows"]})
    if data["rows"]:
        lines.append("")
        lines.append(f"commit {', '.join(commits)}; {data.get('machine', '')}")
    return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}" if abs(x) < 1 else f"{x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reset", action="store_true", help="forget earlier rows (start of a `make bench`)")
    ap.add_argument("--path", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.reset:
        args.path.unlink(missing_ok=True)
        args.path.with_suffix(".md").unlink(missing_ok=True)
        return
    print(markdown(load(args.path)), end="")
    print(f"\n(written to {args.path} and {args.path.with_suffix('.md')})")


if __name__ == "__main__":
    main()
