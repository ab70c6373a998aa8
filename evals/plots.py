"""Report plots as inline SVG strings (matplotlib, Agg backend; no files, no external URLs).

>>> from rowgym.evals.metrics import GroupMetrics
>>> svg = success_svg([GroupMetrics("rowgym/A-v0", "expert", success_rate=0.5, success_ci=(0.3, 0.7))])
>>> svg.startswith("<svg")
True
"""

from __future__ import annotations

import io
import re
from typing import Any

from rowgym.evals.metrics import GroupMetrics

FIGSIZE = (5.2, 3.1)
PALETTE = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"]


def short_env(env_id: str) -> str:
    return env_id.split("/", 1)[-1]


def short_agent(spec: str) -> str:
    """A display name: ``rowgym.evals.demo:FlakyExpert,skill=0.8`` -> ``FlakyExpert,skill=0.8``."""
    name, sep, kwargs = spec.partition(",")
    return name.rsplit(":", 1)[-1].rsplit(".", 1)[-1] + sep + kwargs


def agent_colors(groups: list[GroupMetrics]) -> dict[str, str]:
    agents = list(dict.fromkeys(g.agent for g in groups))
    return {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(agents)}


def _plt() -> Any:
    from rowgym.extras import require

    matplotlib = require("matplotlib", "report plots")

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.family": "sans-serif", "font.size": 10,
                         "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#94a3b8",
                         "axes.titleweight": "bold", "axes.titlesize": 11, "xtick.color": "#334155",
                         "ytick.color": "#334155", "axes.labelcolor": "#334155"})
    return plt


def _to_svg(fig: Any) -> str:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]                     # drop the XML prolog and DOCTYPE for inlining
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    return re.sub(r'(<svg[^>]*?) width="[^"]+" height="[^"]+"', r'\1 width="100%"', svg, count=1)


def _layout(groups: list[GroupMetrics]) -> tuple[list[str], list[str]]:
    return list(dict.fromkeys(g.env_id for g in groups)), list(dict.fromkeys(g.agent for g in groups))


def success_svg(groups: list[GroupMetrics]) -> str:
    """Grouped bars: success rate per env and agent, with 95% bootstrap CI error bars."""
    plt = _plt()
    envs, agents = _layout(groups)
    colors = agent_colors(groups)
    by = {(g.env_id, g.agent): g for g in groups}
    fig, ax = plt.subplots(figsize=FIGSIZE)
    width = 0.8 / max(1, len(agents))
    for j, agent in enumerate(agents):
        xs, ys, lo, hi = [], [], [], []
        for i, env in enumerate(envs):
            g = by.get((env, agent))
            if g is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(g.success_rate)
            lo.append(max(0.0, g.success_rate - g.success_ci[0]))
            hi.append(max(0.0, g.success_ci[1] - g.success_rate))
        ax.bar(xs, ys, width * 0.92, color=colors[agent], label=agent, zorder=2)
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="#0f172a", capsize=4, lw=1.2, zorder=3)
        for x, y in zip(xs, ys, strict=True):
            inside = y > 0.15
            ax.text(x, 0.03, f"{y:.0%}", ha="center", va="bottom", fontsize=8, fontweight="bold",
                    color="white" if inside else "#0f172a")
    ax.set_xticks(range(len(envs)), [short_env(e) for e in envs])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.yaxis.grid(True, color="#e2e8f0", zorder=0)
    ax.set_title("Success rate (95% bootstrap CI)")
    return _to_svg(fig)


def reward_svg(groups: list[GroupMetrics]) -> str:
    """Final-reward distribution per agent (jittered points, mean marked), one panel per env."""
    import numpy as np

    plt = _plt()
    envs, agents = _layout(groups)
    colors = agent_colors(groups)
    by = {(g.env_id, g.agent): g for g in groups}
    fig, axes = plt.subplots(1, len(envs), figsize=FIGSIZE, squeeze=False, sharey=True)
    rng = np.random.default_rng(0)
    for ax, env in zip(axes[0], envs, strict=True):
        for j, agent in enumerate(agents):
            g = by.get((env, agent))
            if g is None or not g.rewards:
                continue
            r = np.asarray(g.rewards)
            ax.scatter(j + rng.uniform(-0.22, 0.22, len(r)), r, s=12, alpha=0.55, color=colors[agent], lw=0)
            ax.plot([j + 0.32], [r.mean()], marker="D", ms=6, color="#0f172a", mec="white")
        ax.set_xticks(range(len(agents)), [short_agent(a)[:14] for a in agents], rotation=25 if len(agents) > 2 else 0,
                      ha="right" if len(agents) > 2 else "center", fontsize=8)
        ax.set_title(short_env(env), fontsize=10)
        ax.yaxis.grid(True, color="#e2e8f0")
    axes[0][0].set_ylabel("final reward (◆ = mean)")
    fig.suptitle("Final reward distribution", fontweight="bold", fontsize=11, y=1.03)
    return _to_svg(fig)


def turns_svg(groups: list[GroupMetrics]) -> str:
    """Histogram of episode length (turns) per agent, one panel per env."""
    plt = _plt()
    envs, agents = _layout(groups)
    colors = agent_colors(groups)
    by = {(g.env_id, g.agent): g for g in groups}
    fig, axes = plt.subplots(1, len(envs), figsize=FIGSIZE, squeeze=False, sharey=True)
    for ax, env in zip(axes[0], envs, strict=True):
        present = [a for a in agents if (env, a) in by and by[(env, a)].turns]
        hi = max((max(by[(env, a)].turns) for a in present), default=1)
        if present:
            ax.hist([by[(env, a)].turns for a in present], bins=range(0, hi + 2), color=[colors[a] for a in present],
                    edgecolor="white", lw=0.3)
        ax.set_title(short_env(env), fontsize=10)
        ax.set_xlabel("turns")
        ax.yaxis.grid(True, color="#e2e8f0")
    axes[0][0].set_ylabel("episodes")
    fig.suptitle("Episode length (turns)", fontweight="bold", fontsize=11, y=1.03)
    return _to_svg(fig)


OUTCOME_COLORS = {"success": "#16a34a", "wrong": "#f59e0b", "truncated": "#6366f1"}


def outcomes_svg(groups: list[GroupMetrics]) -> str:
    """Failure attribution: each (env, agent) run's episodes split by outcome, as stacked bars."""
    plt = _plt()
    kinds = list(dict.fromkeys(["success", "wrong", "truncated", *(k for g in groups for k in g.outcomes)]))
    fig, ax = plt.subplots(figsize=FIGSIZE)
    labels = [f"{short_env(g.env_id)[:18]} · {short_agent(g.agent)[:16]}" for g in groups]
    left = [0.0] * len(groups)
    for kind in kinds:
        frac = [g.outcomes.get(kind, 0) / max(1, g.n_episodes) for g in groups]
        if not any(frac):
            continue
        ax.barh(range(len(groups)), frac, left=left, color=OUTCOME_COLORS.get(kind, "#dc2626"), label=kind,
                edgecolor="white", lw=0.5)
        left = [a + b for a, b in zip(left, frac, strict=True)]
    ax.set_yticks(range(len(groups)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of episodes")
    ax.set_title("Outcomes (failure attribution)")
    ax.legend(frameon=False, fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.4, -0.18))
    return _to_svg(fig)
