"""Choose an arm's recipe on dev seeds: a grid over ``make learn``'s options, every point from the same starts.

    python -m rowgym.trainers.learn.sweep --out runs/sweep --arms grpo --seeds 0,1,2 \\
        --grid temperature=0.7,1.0 --grid grpo_lr=1e-4,3e-4

Each grid point trains the chosen arms exactly as ``make learn`` does (``arms.run_arm``) and records
their learning curves on the **dev** seeds. No held-out seed is played: the arms' contexts carry none,
so a choice read off this table has never seen held-out data. The base model, the expert data and
the SFT starts come from the cache (``--cache``, default ``<out>/cache``; point it at a ``make learn``
run's cache to reuse its starts); a point that changes a start's own options builds and caches its own.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from rowgym.trainers.learn.config import LearnConfig
from rowgym.trainers.learn.run import config_parser, prepare, run_jobs
from rowgym.trainers.learn.stats import seed_summary

NOT_SWEPT = ("out", "cache", "seeds", "arms", "workers", "heldout_episodes")
"""Options that say where and what to run, not how an arm trains."""


def parse_grid(specs: list[str]) -> list[dict[str, Any]]:
    """``["temperature=0.7,1.0", "grpo_lr=1e-4,3e-4"]`` -> every combination, as LearnConfig overrides."""
    types = {f.name: type(f.default) for f in fields(LearnConfig)}
    axes: list[tuple[str, list[Any]]] = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in types:
            raise ValueError(f"--grid {spec!r}: expected OPTION=V1,V2,... with OPTION one of make learn's options "
                             f"(python -m rowgym.trainers.learn --help)")
        if name in NOT_SWEPT:
            raise ValueError(f"--grid {spec!r}: {name} is not a recipe option; set it once with --{name.replace('_', '-')}")
        try:
            vals = [types[name](v.strip()) for v in values.split(",") if v.strip()]
        except ValueError as e:
            raise ValueError(f"--grid {spec!r}: {e}") from None
        if not vals:
            raise ValueError(f"--grid {spec!r}: no values")
        axes.append((name, vals))
    return [dict(zip([a for a, _ in axes], combo, strict=True)) for combo in itertools.product(*[v for _, v in axes])]


def point_label(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items()) or "(defaults)"


def run_sweep(cfg: LearnConfig, grid: list[dict[str, Any]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = cfg.cache or str(out / "cache")
    setups, jobs, owner = [], [], []
    for i, point in enumerate(grid):
        pc = replace(cfg, cache=cache, **point).scaled()
        pc.validate()
        setup = prepare(pc, out / f"point-{i}")
        for ctx in setup.ctxs:
            ctx = replace(ctx, heldout=[])  # dev only: nothing here may read a held-out seed
            jobs += [(arm, ctx) for arm in pc.arm_list()]
            owner += [i] * len(pc.arm_list())
        setups.append(setup)
    results = list(zip(owner, run_jobs(cfg, jobs), strict=True))  # run_jobs keeps the jobs' order
    rows = []
    for i, (point, setup) in enumerate(zip(grid, setups, strict=True)):
        for arm in cfg.arm_list():
            rs = sorted((r for j, r in results if j == i and r.arm == arm), key=lambda r: r.seed)
            chosen = [r.curve[r.chosen_stage - 1]["dev_success"] for r in rs]
            rows.append({"point": point, "label": point_label(point), "arm": arm,
                         "start_dev": [setup.starts[r.seed]["dev_success"] for r in rs],
                         "curves": [[c["dev_success"] for c in r.curve] for r in rs], "seeds": [r.seed for r in rs],
                         "chosen_dev": seed_summary(chosen), "wall_s": sum(r.wall_s for r in rs)})
    lines = table_lines(rows)
    played = sum(len(r.heldout.get("success", [])) for _, r in results)  # 0 by construction; counted, not assumed
    res = {"config": asdict(cfg), "grid": grid, "rows": rows, "table": lines, "heldout_episodes_played": played,
           "dev_seeds": setups[0].dev if setups else [], "wall_s": round(time.perf_counter() - t0, 1)}
    (out / "sweep.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    print()
    print(f"rowgym learn sweep · dev success of the dev-chosen stage ({cfg.dev_episodes} dev episodes per point; "
          f"held-out episodes played: {played}) · wall {res['wall_s']:.0f}s")
    print("\n".join(lines))
    print(f"results: {out / 'sweep.json'}")
    return res


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per point and arm: dev success start -> stages for each seed, and the chosen stage's mean ± sd."""
    best = max((r["chosen_dev"]["mean"] for r in rows), default=0.0)
    head = f"{'point':<34} {'arm':<10} {'dev: start -> stages, per seed':<48} {'chosen stage, mean ± sd':>24}"
    out = [head, "-" * len(head)]
    for r in rows:
        curves = " | ".join(f"{s:.3f}->" + " ".join(f"{v:.3f}" for v in c)
                            for s, c in zip(r["start_dev"], r["curves"], strict=True))
        cd = r["chosen_dev"]
        mark = " *" if cd["mean"] == best else ""
        out.append(f"{r['label']:<34} {r['arm']:<10} {curves:<48} {cd['mean']:>14.3f} ± {cd['std']:.3f}{mark}")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = config_parser("python -m rowgym.trainers.learn.sweep",
                      "Choose an arm's recipe on dev seeds: every combination of the --grid values, from the same "
                      "cached starts; no held-out episode is played (docs/learn.md).")
    p.add_argument("--grid", action="append", default=[], metavar="OPTION=V1,V2",
                   help="an option of make learn and the values to try (repeat for more options: every combination)")
    args = vars(p.parse_args(argv))
    specs = args.pop("grid")
    try:
        grid = parse_grid(specs)
    except ValueError as e:
        p.error(str(e))
    return run_sweep(LearnConfig(**args), grid)


if __name__ == "__main__":
    main()
