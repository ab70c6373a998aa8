"""The self-contained HTML report: inline CSS, inline SVG plots, an episode viewer; no JS, no URLs.

The viewer is plain ``<details>`` elements: one per (env, agent), one per episode
inside, showing the instruction, the first observation, then each step's action,
local reward with its breakdown, flags and the observation returned, and the
verifier's checks. Each episode has an HTML anchor equal to its episode id.
"""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING

from rowgym.evals.metrics import GroupMetrics, outcome
from rowgym.evals.plots import (
    agent_colors,
    outcomes_svg,
    reward_svg,
    short_agent,
    short_env,
    success_svg,
    turns_svg,
)
from rowgym.rows import Episode, Split, StepRow
from rowgym.store import TrajectoryStore

if TYPE_CHECKING:
    from rowgym.evals.runner import BenchResult, GroupRun

MAX_TEXT = 2500
MAX_TASKS = 25

CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#0f172a;background:#f1f5f9}main{max-width:1180px;margin:0 auto;padding:24px}
header{background:#0f172a;color:#f8fafc;padding:20px 24px}header h1{margin:0;font-size:22px}
header .sub{color:#94a3b8;font-size:13px;margin-top:4px}code,pre{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
.banner{border-radius:10px;padding:12px 16px;margin:0 0 14px;font-weight:600}
.ok{background:#dcfce7;color:#14532d;border:1px solid #86efac}.warn{background:#fef3c7;color:#78350f;border:1px solid #fcd34d}
.bad{background:#fee2e2;color:#7f1d1d;border:2px solid #ef4444}.muted{background:#e2e8f0;color:#334155;border:1px solid #cbd5e1}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;font-weight:700;letter-spacing:.04em}
.badge.heldout{background:#16a34a;color:#fff}.badge.other{background:#f59e0b;color:#111}
.card{background:#fff;border-radius:12px;box-shadow:0 1px 3px #0f172a1a;padding:16px 18px;margin:0 0 18px}
.card h2{margin:0 0 10px;font-size:16px}table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:#475569;font-weight:600;border-bottom:2px solid #e2e8f0;padding:6px 8px;white-space:nowrap}
td{border-bottom:1px solid #f1f5f9;padding:6px 8px;vertical-align:top}tr.best td{font-weight:600}
td.agent{white-space:nowrap}.num{text-align:right;font-variant-numeric:tabular-nums}.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px}
.bar{position:relative;height:8px;background:#e2e8f0;border-radius:4px;min-width:110px;margin-top:3px}
.bar i{position:absolute;top:0;bottom:0;left:0;border-radius:4px}.bar b{position:absolute;top:-2px;height:12px;border-left:2px solid #0f172a;border-right:2px solid #0f172a}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:14px 24px;align-items:center}
.legend{display:flex;gap:18px;flex-wrap:wrap;margin:0 0 8px;font-size:13px}.scroll{overflow-x:auto}
tr.env td{background:#f8fafc;font-weight:700;color:#334155;border-top:2px solid #e2e8f0;padding-top:8px}
.ep-some>summary{border-left:4px solid #f59e0b}
.chip{display:inline-block;border-radius:6px;padding:0 6px;margin:1px 2px;font-size:11px;background:#e2e8f0}
.chip.success{background:#dcfce7}.chip.wrong{background:#fef3c7}.chip.truncated{background:#e0e7ff}.chip.fail{background:#fee2e2}
details{border:1px solid #e2e8f0;border-radius:8px;margin:6px 0;background:#fff}details>summary{cursor:pointer;padding:7px 10px}
details details{margin:6px 10px}.ep-ok>summary{border-left:4px solid #16a34a}.ep-no>summary{border-left:4px solid #dc2626}
.step{border-top:1px dashed #e2e8f0;padding:8px 12px}.step .act{color:#1d4ed8}.meta{color:#64748b;font-size:12px;padding:0 12px 6px}
pre{white-space:pre-wrap;word-break:break-word;background:#f8fafc;border-radius:6px;padding:8px;margin:4px 0;max-height:320px;overflow:auto}
.flag{color:#b91c1c;font-weight:700;font-size:11px;margin-left:6px}.flag.rep{color:#15803d}.small{font-size:12px;color:#64748b}
"""


def _t(text: str, limit: int = MAX_TEXT) -> str:
    text = text or ""
    more = f"\n… ({len(text) - limit} more characters)" if len(text) > limit else ""
    return escape(text[:limit] + more)


def _chips(outcomes: dict[str, int]) -> str:
    def cls(k: str) -> str:
        return "fail" if k.startswith("failure") else k
    return "".join(f'<span class="chip {cls(k)}">{escape(k)} {v}</span>' for k, v in outcomes.items())


def _banners(res: BenchResult) -> str:
    out = []
    if res.split == Split.HELDOUT:
        out.append('<div class="banner ok"><span class="badge heldout">SPLIT: HELDOUT</span>&nbsp; '
                   'Evaluated on held-out seeds only.</div>')
    else:
        out.append(f'<div class="banner warn"><span class="badge other">SPLIT: {escape(res.split.value.upper())}'
                   '</span>&nbsp; Not the held-out split (run with --allow-split): these numbers are not a '
                   'held-out evaluation.</div>')
    c = res.contamination
    if c is None:
        out.append('<div class="banner muted">Contamination check: not run (no --training-data given).</div>')
    elif c.clean:
        out.append(f'<div class="banner ok">Contamination check: {escape(c.message())}. Training data: '
                   f'<code>{escape(", ".join(c.training_paths))}</code></div>')
    else:
        out.append(f'<div class="banner bad">⚠ CONTAMINATED — run with --contamination flag.<pre>'
                   f'{escape(c.message())}</pre></div>')
    return "".join(out)


def _summary(groups: list[GroupMetrics], colors: dict[str, str]) -> str:
    k = max((g.k for g in groups), default=1)
    cols = ["agent", "tasks×k", "success [95% CI]", "reward", "pass@1", f"pass@{k}", f"pass^{k}", "turns",
            "tokens/ep", "bad calls/step", "s/ep", "outcomes"]
    num = {1, 3, 4, 5, 6, 7, 8, 9, 10}
    rows = []
    for env in dict.fromkeys(g.env_id for g in groups):
        rows.append(f'<tr class="env"><td colspan="{len(cols)}">{escape(env)}</td></tr>')
        best = max(g.success_rate for g in groups if g.env_id == env)
        for g in (g for g in groups if g.env_id == env):
            lo, hi = g.success_ci
            bar = (f'<div class="bar"><i style="width:{g.success_rate:.0%};background:{colors[g.agent]}"></i>'
                   f'<b style="left:{lo:.1%};width:{max(hi - lo, 0.004):.1%}"></b></div>')
            cells = [f'<span class="dot" style="background:{colors[g.agent]}"></span>'
                     f'<span title="{escape(g.agent)}">{escape(short_agent(g.agent))}</span>',
                     f"{g.n_tasks}×{g.attempts}",
                     f"<b>{g.success_rate:.2f}</b> <span class=small>[{lo:.2f}, {hi:.2f}]</span>{bar}",
                     f"{g.mean_reward:.2f}", f"{g.pass_at.get(1, 0):.2f}", f"{g.pass_at.get(k, float('nan')):.2f}",
                     f"{g.pass_hat.get(k, float('nan')):.2f}", f"{g.mean_turns:.1f}",
                     f"{g.mean_completion_tokens:.0f}", f"{g.bad_call_rate:.3f}", f"{g.mean_time_s:.3f}",
                     _chips(g.outcomes)]
            tr = ' class="best"' if g.success_rate == best and best > 0 else ""
            rows.append(f"<tr{tr}>" + "".join(f'<td{" class=num" if i in num else " class=agent" if i == 0 else ""}>{c}</td>'
                                              for i, c in enumerate(cells)) + "</tr>")
    return ('<div class="scroll"><table><tr>' + "".join(f"<th>{escape(c)}</th>" for c in cols) + "</tr>"
            + "".join(rows) + "</table></div>"
            '<p class="small">Success CI: percentile bootstrap over tasks (2000 resamples, seeded). pass@k: unbiased '
            "estimator of Chen et al. 2021; pass^k: all k attempts succeed (tau-bench). Bold: best success per "
            "environment. Episode ids behind every number: <code>metrics.json</code>.</p>")


def _legend(colors: dict[str, str]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><span class="dot" style="background:{c}"></span>{escape(short_agent(a))}</span>'
        for a, c in colors.items()) + "</div>"


def _step(s: StepRow) -> str:
    call = s.action.tool_call
    act = (f"{escape(call.name)}({escape(call.arguments)})" if call else f"text: {escape(s.action.text[:500])}")
    flags = "".join(f'<span class="flag{" rep" if f == "repaired" else ""}">{f.upper().replace("_", "-")}</span>'
                    for f, on in (("bad_call", s.bad_call), ("repaired", s.repaired), ("terminated", s.terminated),
                                  ("truncated", s.truncated)) if on)
    err = f' <span class="small">({escape(s.error_kind)})</span>' if s.error_kind else ""
    brk = escape(json.dumps(s.reward_breakdown)) if s.reward_breakdown else ""
    return (f'<div class="step"><b>turn {s.turn}</b> <code class="act">{act}</code>{flags}{err}<br>'
            f'<span class="small">local reward {s.reward:+.3f} {brk} · policy {s.timings.policy_s * 1000:.1f} ms · '
            f"env {s.timings.env_s * 1000:.1f} ms</span><pre>{_t(s.next_observation)}</pre></div>")


def _episode(ep: Episode) -> str:
    ok = ep.success
    v = ep.verdict
    checks = "".join(f'<div class="small">{"✓" if c.passed else "✗"} {escape(c.name)} {escape(c.detail[:300])}</div>'
                     for c in (v.checks if v else []))
    fail = f'<div class="banner bad">failure ({ep.failure.kind}): {_t(ep.failure.reason, 600)}</div>' if ep.failure else ""
    first = ep.steps[0].observation if ep.steps else ""
    intro = (f"<b>instruction</b><pre>{_t(ep.instruction)}</pre>" if ep.instruction and ep.instruction not in first
             else "") + f"<b>first observation</b><pre>{_t(first)}</pre>"
    return (f'<details id="{escape(ep.episode_id)}" class="{"ep-ok" if ok else "ep-no"}"><summary>'
            f'{"✓" if ok else "✗"} attempt {ep.sample_index} · reward {ep.final_reward:.2f} · '
            f'{len(ep.steps)} turns · {escape(outcome(ep))} <span class="small">{escape(ep.episode_id)}</span></summary>'
            f'<div class="meta">task_hash {escape(ep.task_hash)} · split {ep.split.value} · verifier '
            f'{escape(v.verifier + "@" + v.verifier_version) if v else "-"} · {ep.duration_s:.3f} s</div>{fail}'
            f'<div class="step">{intro}</div>' + "".join(_step(s) for s in ep.steps) +
            f'<div class="step">{checks}</div></details>')


def _viewer(run: GroupRun, color: str) -> str:
    by_seed: dict[int, list[Episode]] = {}
    for e in sorted(TrajectoryStore(run.run_dir, readonly=True).episodes(), key=lambda e: (e.seed, e.sample_index)):
        by_seed.setdefault(e.seed, []).append(e)
    seeds = list(by_seed)[:MAX_TASKS]
    more = (f'<p class="small">{len(by_seed) - len(seeds)} more tasks in <code>{escape(str(run.run_dir))}</code> '
            f"(<code>rowgym show RUN --episode ID</code>).</p>") if len(by_seed) > len(seeds) else ""
    tasks = []
    for seed in seeds:
        eps = by_seed[seed]
        c = sum(e.success for e in eps)
        cls = "ep-ok" if c == len(eps) else "ep-no" if c == 0 else "ep-some"
        tasks.append(f'<details class="{cls}"><summary>seed {seed} · {c}/{len(eps)} attempts succeeded '
                     f'<span class="small">task_hash {escape(eps[0].task_hash)}</span></summary>'
                     f'{"".join(_episode(e) for e in eps)}</details>')
    m = run.metrics
    return (f'<details><summary><span class="dot" style="background:{color}"></span><b>{escape(short_env(run.env_id))}'
            f' · {escape(run.agent)}</b> — {m.n_tasks} tasks × {m.attempts}, success {m.success_rate:.2f} '
            f'<span class="small">run {escape(run.manifest.run_id)} · <code>{escape(str(run.run_dir))}</code></span>'
            f"</summary>{''.join(tasks)}{more}</details>")


def html_report(res: BenchResult) -> str:
    groups = res.groups
    colors = agent_colors(groups)
    plots = (f'<div class="card"><h2>Plots</h2>{_legend(colors)}<div class="grid"><div>{success_svg(groups)}</div>'
             f'<div>{reward_svg(groups)}</div><div>{turns_svg(groups)}</div><div>{outcomes_svg(groups)}</div></div></div>') if groups else ""
    envs = ", ".join(short_env(e) for e in res.config.env_ids)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>rowgym bench {escape(res.bench_id)}</title>
<style>{CSS}</style></head><body><header><h1>rowgym bench · {escape(envs)}</h1>
<div class="sub">bench {escape(res.bench_id)} · {escape(res.created_at)} · {len(res.config.agents)} agent(s) ·
{res.config.episodes} tasks × {res.config.attempts} attempt(s) per env</div></header><main>
{_banners(res)}<div class="card"><h2>Results</h2>{_summary(groups, colors)}</div>{plots}
<div class="card viewer"><h2>Episode viewer</h2><p class="small">Per environment and agent, per task (seed),
per attempt: the first observation, then each step's action, local reward and flags, and the observation returned.</p>
{''.join(_viewer(r, colors[r.agent]) for r in res.runs)}</div></main></body></html>"""
