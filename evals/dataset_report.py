"""``rowgym dataset report DATASET``: a dataset's gates and four manifests as one self-contained HTML page.

    rowgym dataset report data/sft --png docs/img/dataset-report.png

Reads only the files beside the data (``processing.json``, ``source.json``, ``consumption.json``,
``isolation.json``); inline CSS and SVG, no scripts, no URLs. Plots: each histogram the
distribution gate keeps (task kind, tool, turns, length), before and after the gates.
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any

from rowgym.errors import RowgymError
from rowgym.evals.html import CSS
from rowgym.store import atomic_write

MANIFESTS = ("source.json", "processing.json", "consumption.json", "isolation.json")
BEFORE, AFTER = "#94a3b8", "#2563eb"


def _load(dataset: Path) -> dict[str, Any]:
    out = {}
    for name in MANIFESTS:
        p = dataset / name
        if not p.exists():
            raise RowgymError(f"{dataset} has no {name}; build it with `rowgym dataset sft|grpo ... --out {dataset}`")
        out[name.removesuffix(".json")] = json.loads(p.read_text())
    return out


def bars_svg(title: str, before: dict[str, int], after: dict[str, int], width: int = 540) -> str:
    """Grouped horizontal bars, one pair (before, after) per bucket."""
    keys = list(dict.fromkeys([*before, *after]))
    if all(re.sub(r"^[<>=]+", "", k).isdigit() for k in keys):  # turns, length buckets: numeric order
        keys.sort(key=lambda k: (int(re.sub(r"^[<>=]+", "", k)), k.startswith(">")))
    top = max([*before.values(), *after.values(), 1])
    row, label_w, pad = 22, 170, 40
    h = 28 + row * len(keys) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" '
             f'aria-label="{escape(title)}"><text x="0" y="16" font-size="13" font-weight="600">{escape(title)}</text>']
    span = width - label_w - pad
    for i, k in enumerate(keys):
        y = 26 + i * row
        b, a = before.get(k, 0), after.get(k, 0)
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="11" text-anchor="end">{escape(k[:28])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{span * b / top:.1f}" height="8" fill="{BEFORE}"/>')
        parts.append(f'<rect x="{label_w}" y="{y + 10}" width="{span * a / top:.1f}" height="8" fill="{AFTER}"/>')
        parts.append(f'<text x="{label_w + span * max(a, b) / top + 4:.1f}" y="{y + 16}" font-size="10" '
                     f'fill="#475569">{b}→{a}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><tr>{th}</tr>{body}</table></div>'


def render(dataset: str | Path) -> str:
    ds = Path(dataset)
    m = _load(ds)
    proc, src, cons, iso = m["processing"], m["source"], m["consumption"], m["isolation"]
    rep = proc["report"]
    rate = rep["effective_sample_rate"]
    cls = "ok" if rep["n_kept"] == rep["n_generated"] else "warn"
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>dataset {escape(ds.name)}</title>"
           f"<style>{CSS}</style></head><body><header><h1>Dataset <code>{escape(str(ds))}</code></h1>"
           f"<div class='sub'>builder {escape(proc['builder'])} · built {escape(proc['created_at'])} · data sha256 "
           f"<code>{escape(str(proc.get('data_sha256'))[:16])}</code></div></header><main>",
           f"<div class='banner {cls}'>Kept {rep['n_kept']} of {rep['n_generated']} generated rows — effective sample "
           f"rate {rate:.3f}. Quarantine overlap after the gates: {len(iso.get('dataset_overlap', []))} task(s).</div>"]
    rows = []
    for g in rep["gates"]:
        reasons = "<br>".join(f"<code>{escape(r)}</code> {n}" for r, n in g["reasons"].items()) or "—"
        params = ", ".join(f"{k}={v}" for k, v in g["params"].items() if not isinstance(v, dict | list))
        rows.append([f"<b>{escape(g['id'])}</b>", str(g["n_in"]), str(g["n_rejected"]), reasons,
                     f"<span class='meta'>{escape(params)}</span>"])
    out.append("<div class='card'><h2>Gates (in order)</h2>"
               + _table(["gate", "rows in", "rejected", "reasons", "thresholds"], rows) + "</div>")
    hist_b, hist_a = rep["histograms"].get("before", {}), rep["histograms"].get("after", {})
    plots = "".join(f"<div>{bars_svg(f'{name} (before → after)', hist_b.get(name, {}), hist_a.get(name, {}))}</div>"
                    for name in ("task_kind", "tool", "turns", "length"))
    out.append(f"<div class='card'><h2>Distribution before and after the gates</h2><div class='legend'>"
               f"<span><i class='dot' style='background:{BEFORE}'></i>generated</span><span><i class='dot' "
               f"style='background:{AFTER}'></i>kept</span></div><div class='grid'>{plots}</div></div>")
    ex = [[escape(e["gate"]), f"<code>{escape(e['reason'])}</code>", f"<code>{escape(e['key'][:28])}</code>",
           escape(e["detail"][:300])] for e in rep["examples"]]
    out.append("<div class='card'><h2>Rejected examples</h2>"
               + (_table(["gate", "reason", "row", "why"], ex) if ex else "<p>None: every row passed.</p>") + "</div>")
    for note in rep.get("notes", []):
        out.append(f"<div class='banner muted'>{escape(note)}</div>")
    if src.get("kind") == "runs":
        srows = [[f"<code>{escape(str(r.get('run_dir')))}</code>", escape(r["env_id"]), escape(r["env_version"]),
                  escape(r["split"]), f"<code>{escape(r['seed_set_hash'])}</code>",
                  escape(r["agent"] + (f" {r['policy_model']}" if r.get("policy_model") else "")),
                  escape(r["collected_from"][:19]), str(r["n_episodes"])] for r in src["runs"]]
        stab = _table(["run", "env", "version", "split", "seed set", "agent / policy", "collected", "episodes"], srows)
    else:
        stab = _table(["env", "version", "split", "seeds", "seed set"],
                      [[escape(src["env_id"]), escape(src["env_version"]), escape(src["split"]), str(src["n_seeds"]),
                        f"<code>{escape(src['seed_set_hash'])}</code>"]])
    out.append(f"<div class='card'><h2>Source manifest</h2>{stab}</div>")
    irows = [[escape(s), ", ".join(f"{sp} {len(v)}" for sp, v in splits.items())] for s, splits in iso["sources"].items()]
    irows += [[escape(s), f"skipped: {escape(why)}"] for s, why in iso.get("skipped", {}).items()]
    out.append(f"<div class='card'><h2>Isolation manifest (quarantine, {iso['n_entries']} hashed entries)</h2>"
               + _table(["source", "quarantined"], irows) + "</div>")
    crow = [[escape(c.get("at", "")), escape(c.get("trainer", "")), f"<code>{escape(c.get('model_out', ''))}</code>",
             str(c.get("n_episode_ids", ""))] for c in cons.get("consumers", [])]
    out.append("<div class='card'><h2>Consumption manifest</h2>"
               + (_table(["at", "trainer", "model", "episodes"], crow) if crow else "<p>Not trained on yet.</p>")
               + "</div></main></body></html>")
    return "".join(out)


def write_dataset_report(dataset: str | Path, out: str | Path | None = None) -> Path:
    path = Path(out) if out else Path(dataset) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render(dataset))
    return path
