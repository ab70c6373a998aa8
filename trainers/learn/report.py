"""The learn benchmark's outputs: the printed table, ``learn.png`` and ``report.html`` (the PNG embedded).

Kept inside ``trainers`` (not ``evals``): the two are sibling layers that never import each other.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

COLORS = {"start": "#888888", "sft": "#2563eb", "rsft": "#16a34a", "dpo": "#9333ea", "grpo": "#f97316",
          "grpo_turn": "#dc2626"}
LABELS = {"start": "SFT start", "sft": "(a) more SFT", "rsft": "(b) RSFT", "dpo": "(c) DPO",
          "grpo": "(d) GRPO credit=grpo", "grpo_turn": "(e) GRPO credit=turn"}
SEED_COLORS = ("#1d4ed8", "#0d9488", "#a16207", "#be185d", "#4b5563")
"""The SFT start's dev checks, one colour per training seed."""


def _top(values: list[float]) -> float:
    """A success axis that fits the data (low numbers stay readable) and never goes past 1."""
    return min(1.05, max(0.3, 1.25 * max(values, default=0.0)))


def table_lines(summary: dict[str, Any]) -> list[str]:
    """The table: arm, held-out success [95% CI], bad-call rate, turns, sampled episodes, wall seconds."""
    rows = summary["rows"]
    n_seeds = summary["n_seeds"]
    head = (f"{'arm':<22} {'held-out success [95% CI]':<27} {'seed spread':<13} {'bad-call':>8} {'turns':>6} "
            f"{'sampled eps':>11} {'wall s':>7}")
    out = [head, "-" * len(head)]
    for r in rows:
        s = r["success"]
        ci = f"{s['mean']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
        spread = f"±{s['std']:.3f} (n={n_seeds})" if n_seeds > 1 else "(1 seed)"
        out.append(f"{LABELS.get(r['arm'], r['arm']):<22} {ci:<27} {spread:<13} {r['bad_call_rate']:>8.3f} "
                   f"{r['mean_turns']:>6.2f} {r['sampled_episodes']:>11} {r['wall_s']:>7.0f}")
    return out


def plot(summary: dict[str, Any], path: Path, starts: dict[str, Any] | None = None) -> Path:
    """Held-out success per arm with CI bars; dev learning curves; the SFT start's loss and dev checks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if starts else 2, figsize=(19 if starts else 13, 4.6))
    ax = axes[0]
    rows = summary["rows"]
    xs = range(len(rows))
    for i, r in enumerate(rows):
        m, (lo, hi) = r["success"]["mean"], r["ci"]
        ax.bar(i, m, color=COLORS.get(r["arm"], "#444"), alpha=0.85)
        ax.errorbar(i, m, yerr=[[m - lo], [hi - m]], color="black", capsize=5, lw=1.2)
        for v in r["per_seed"]:
            ax.plot(i, v, "o", color="black", ms=3)
        ax.text(i, max([hi, *r["per_seed"]]) + 0.01, f"{m:.2f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(xs), [LABELS.get(r["arm"], r["arm"]).replace(" credit=", "\n") for r in rows], fontsize=8)
    ax.set(ylim=(0, _top([max([r["ci"][1], *r["per_seed"]]) for r in rows]) + 0.03), ylabel="held-out success",
           title=f"held-out success, 95% bootstrap CI ({summary['heldout_episodes']} episodes"
                 f"{', dots: seeds' if summary['n_seeds'] > 1 else ''})")
    ax = axes[1]
    for arm, curves in summary["curves"].items():
        for j, c in enumerate(curves):
            ax.plot([p[0] for p in c], [p[1] for p in c], marker="o", color=COLORS.get(arm, "#444"),
                    label=LABELS.get(arm, arm) if j == 0 else None, alpha=0.9 if j == 0 else 0.5)
    dev = [p[1] for curves in summary["curves"].values() for c in curves for p in c]
    ax.set(xlabel="sampled episodes (training data)", ylabel="dev success", ylim=(0, _top(dev)),
           title=f"learning curves on dev seeds ({summary['dev_episodes']} episodes per point)")
    ax.legend(fontsize=8)
    if starts:
        ax = axes[2]
        ax2 = ax.twinx()
        for k, (seed, st) in enumerate(starts.items()):
            ax.plot(range(1, len(st["losses"]) + 1), st["losses"], lw=1, color="#888", label=f"loss seed {seed}")
            ax2.plot([c["step"] for c in st["checks"]], [c["dev_success"] for c in st["checks"]], "o-",
                     color=SEED_COLORS[k % len(SEED_COLORS)], label=f"dev success seed {seed}")
            chosen = [c for c in st["checks"] if c["step"] == st.get("chosen_step")]
            ax2.plot([c["step"] for c in chosen], [c["dev_success"] for c in chosen], "*", ms=14, color="#d62728",
                     label="chosen checkpoint" if seed == next(iter(starts)) else None)
        ax.set(yscale="log", xlabel="SFT step", ylabel="SFT loss (assistant tokens)",
               title=f"the SFT start: best dev check (*), stops at dev success >= {next(iter(starts.values()))['target']}")
        checks = [c["dev_success"] for st in starts.values() for c in st["checks"]]
        ax2.set(ylim=(-0.02, _top(checks)), ylabel="dev success")
        ax2.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_html(summary: dict[str, Any], results: dict[str, Any], png: Path, path: Path) -> Path:
    img = base64.b64encode(png.read_bytes()).decode()
    cfg = results["config"]
    rows = "".join(
        f"<tr><td>{html.escape(LABELS.get(r['arm'], r['arm']))}</td><td>{r['success']['mean']:.3f} "
        f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]</td><td>{' '.join(f'{v:.3f}' for v in r['per_seed'])}</td>"
        f"<td>{r['bad_call_rate']:.3f}</td><td>{r['mean_turns']:.2f}</td><td>{r['sampled_episodes']}</td>"
        f"<td>{r['wall_s']:.0f}</td></tr>" for r in summary["rows"])
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in results.get("notes", []))
    departures = departures_table(summary["rows"])
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>rowgym learn benchmark</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
pre{{background:#f6f6f6;padding:8px;overflow:auto}}</style></head><body>
<h1>Learning benchmark: {html.escape(results['env_id'])}</h1>
<p>Family {html.escape(cfg['family'])}, task kinds {html.escape(cfg['kinds'])} (tools: {html.escape(cfg['tools'])},
prompt {results.get('prompt_tokens', '?')} tokens). Every arm starts from the same SFT start and spends
{summary['budget']} sampled episodes. Checkpoints and choices on {summary['dev_episodes']} dev seeds;
held-out numbers on {summary['heldout_episodes']} held-out seeds (one greedy episode each), 95% percentile
bootstrap CI over episodes (pooled over {summary['n_seeds']} training seed(s)).</p>
<table><tr><th>arm</th><th>held-out success [95% CI]</th><th>per seed</th><th>bad-call rate</th><th>turns</th>
<th>sampled episodes</th><th>wall s (mean per seed)</th></tr>{rows}</table>
<p><img src="data:image/png;base64,{img}" style="width:100%"></p>
{departures}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Configuration</h2><pre>{html.escape(json.dumps(cfg, indent=2))}</pre>
<p>Total wall {results['wall_s']:.0f} s, CPU {results['cpu_s']:.0f} s (this process; arms run in child processes).</p>
</body></html>"""
    path.write_text(doc)
    return path


def departures_table(rows: list[dict[str, Any]]) -> str:
    """Where each arm's held-out episodes first leave the gold plan (pooled over seeds), as an HTML table;
    rows ordered by the first arm's (the start's) counts. Empty when no run recorded departures."""
    if not any(r.get("departures") for r in rows):
        return ""
    labels: list[str] = []
    for r in rows:
        labels += [k for k in r.get("departures", {}) if k not in labels]
    head = "".join(f"<th>{html.escape(LABELS.get(r['arm'], r['arm']))}</th>" for r in rows)
    body = "".join(f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{r.get('departures', {}).get(k, 0)}</td>"
                                                              for r in rows) + "</tr>" for k in labels)
    return (f"<h2>Where held-out episodes leave the gold plan</h2><p>The first call of each episode that differs "
            f"from its task's gold plan (after the env's own parsing), episodes pooled over seeds.</p>"
            f"<table><tr><th>first departure</th>{head}</tr>{body}</table>")


def render(out: str | Path) -> tuple[Path, Path]:
    """Re-render ``learn.png`` and ``report.html`` of a finished run from its ``results.json``."""
    out = Path(out)
    res = json.loads((out / "results.json").read_text())
    png = plot(res["summary"], out / "learn.png", res.get("starts"))
    return png, write_html(res["summary"], res, png, out / "report.html")
