"""Bench reports: ``report.md``, the self-contained ``report.html``, the leaderboard, a rich table.

>>> from rowgym.evals.report import fmt_ci
>>> fmt_ci(0.5, (0.25, 0.75))
'0.50 [0.25, 0.75]'

Every table row names its run directory, and ``metrics.json`` beside the reports
lists the episode ids behind each number (``episode_ids`` per outcome), so a number
can always be traced back to the rows that produced it (``rowgym show RUN --episode ID``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rowgym.evals.metrics import GroupMetrics
from rowgym.evals.plots import short_agent, short_env
from rowgym.rows import Split
from rowgym.store import atomic_write

if TYPE_CHECKING:
    from rowgym.evals.runner import BenchResult


def fmt_ci(x: float, ci: tuple[float, float]) -> str:
    return f"{x:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def fmt_outcomes(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in outcomes.items()) or "-"


def table_rows(groups: list[GroupMetrics]) -> tuple[list[str], list[list[str]]]:
    """The summary table shared by the markdown report and the CLI."""
    k = max((g.k for g in groups), default=1)
    head = ["env", "agent", "tasks×k", "success [95% CI]", "reward", "pass@1", f"pass@{k}", f"pass^{k}",
            "turns", "tokens/ep", "bad-call rate", "s/ep", "outcomes"]
    rows = []
    for g in groups:
        rows.append([short_env(g.env_id), short_agent(g.agent), f"{g.n_tasks}×{g.attempts}", fmt_ci(g.success_rate, g.success_ci),
                     f"{g.mean_reward:.2f}", f"{g.pass_at.get(1, 0):.2f}", f"{g.pass_at.get(k, float('nan')):.2f}",
                     f"{g.pass_hat.get(k, float('nan')):.2f}", f"{g.mean_turns:.1f}",
                     f"{g.mean_completion_tokens:.0f}", f"{g.bad_call_rate:.3f}", f"{g.mean_time_s:.3f}",
                     fmt_outcomes(g.outcomes)])
    return head, rows


def split_notice(split: Split) -> str:
    if split == Split.HELDOUT:
        return "Split: **heldout** (seeds never used for training)."
    return (f"**WARNING — split: {split.value.upper()}, not heldout.** These seeds may overlap what agents "
            f"were tuned on; numbers are not a held-out evaluation.")


def markdown(res: BenchResult) -> str:
    head, rows = table_rows(res.groups)
    out = [f"# rowgym bench `{res.bench_id}`", "", split_notice(res.split), "",
           f"Created {res.created_at} · {len(res.config.env_ids)} env(s) × {len(res.config.agents)} agent(s) · "
           f"{res.config.episodes} tasks × {res.config.attempts} attempt(s)", ""]
    c = res.contamination
    if c is None:
        out += ["Contamination check: not run (no `--training-data`).", ""]
    elif c.clean:
        out += [f"Contamination check: **{c.message()}** ({', '.join(c.training_paths)}).", ""]
    else:
        out += ["## ⚠ CONTAMINATED", "", "```", c.message(), "```", ""]
    out += ["## Results", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", "Success CI: percentile bootstrap over tasks (2000 resamples, seeded). pass@k: Chen et al. 2021; "
            "pass^k: tau-bench (all k attempts succeed). Bad-call rate is per step.", "", "## Runs", "",
            "| env | agent | run dir | run id | seed set | policy |", "|---|---|---|---|---|---|"]
    for r in res.runs:
        m = r.manifest
        out.append(f"| {short_env(r.env_id)} | {r.agent} | `{r.run_dir}` | {m.run_id} | {m.source.seed_set_hash} | "
                   f"{m.policy.agent}{' ' + m.policy.model if m.policy.model else ''} |")
    out += ["", "Episode ids behind every number: `metrics.json` (`episode_ids`, `per_task`). "
            "Open one with `rowgym show <run dir> --episode <id>`.", ""]
    return "\n".join(out)


def leaderboard_line(res: BenchResult, run: Any) -> dict[str, Any]:
    m = run.manifest
    return {"bench_id": res.bench_id, "run_id": m.run_id, "env_id": run.env_id, "env_version": m.source.env_version,
            "agent": run.agent, "policy": m.policy.model_dump(mode="json"), "split": res.split.value,
            "seed_set_hash": m.source.seed_set_hash, "seeds": m.source.seeds, "group_size": m.source.group_size,
            "rowgym_version": m.rowgym_version, "reward_versions": m.reward_versions,
            "shards": [s.model_dump() for s in m.shards], "manifest_status": m.status,
            "created_at": res.created_at, "run_dir": str(run.run_dir.resolve()),
            "report": str((res.out_dir / "report.html").resolve()),
            "contaminated": bool(res.contamination and run.env_id in {o.env_id for o in res.contamination.overlaps}),
            "contamination_checked": res.contamination is not None,
            "metrics": run.metrics.headline()}


def upsert_leaderboard(res: BenchResult, path: Path) -> Path:
    """Add one line per (run, env, agent); a re-run of the same run replaces its line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = [leaderboard_line(res, r) for r in res.runs]
    keys = {(n["bench_id"], n["run_id"]) for n in new}
    old = []
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                if (d.get("bench_id"), d.get("run_id")) not in keys:
                    old.append(line)
    atomic_write(path, "".join(line + "\n" for line in old + [json.dumps(n, sort_keys=True) for n in new]))
    return path


def rich_table(res: BenchResult) -> Any:
    from rich.table import Table

    head, rows = table_rows(res.groups)
    split = res.split.value if res.split == Split.HELDOUT else f"[bold yellow]{res.split.value} (NOT heldout)[/]"
    t = Table(title=f"rowgym bench {res.bench_id} · split {split}")
    for h in head:
        t.add_column(h, overflow="fold", no_wrap=h in ("env", "agent"))
    for r in rows:
        t.add_row(*r)
    return t


def write_reports(res: BenchResult) -> dict[str, Path]:
    from rowgym.evals.html import html_report

    md, page = res.out_dir / "report.md", res.out_dir / "report.html"
    atomic_write(md, markdown(res))
    atomic_write(page, html_report(res))
    return {"markdown": md, "html": page, "metrics": res.out_dir / "metrics.json"}
