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

PALETTE = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"]


def short_env(env_id: str) -> str:
    return env_id.split("/", 1)[-1]


def agent_colors(groups: list[GroupMetrics]) -> dict[str, str]:
    agents = list(dict.fromkeys(g.agent for g in groups))
    return {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(agents)}


def _plt() -> Any:
    import matplotlib

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
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(envs) * max(1, len(agents)) / 2 + 2), 3.2))
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
            ax.text(x, min(y, 1.0) + 0.03, f"{y:.0%}", ha="center", va="bottom", fontsize=8, color="#0f172a")
    ax.set_xticks(range(len(envs)), [short_env(e) for e in envs])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("success rate")
    ax.yaxis.grid(True, color="#e2e8f0", zorder=0)
    ax.set_title("Success rate (95% bootstrap CI)")
    ax.legend(frameon=False, ncols=min(4, len(agents)), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return _to_svg(fig)


def reward_svg(groups: list[GroupMetrics]) -> str:
    """Final-reward distribution per agent (jittered points, mean marked), one panel per env."""
    import numpy as np

    plt = _plt()
    envs, agents = _layout(groups)
    colors = agent_colors(groups)
    by = {(g.env_id, g.agent): g for g in groups}
    fig, axes = plt.subplots(1, len(envs), figsize=(max(4.5, 2.6 * len(envs)), 3.0), squeeze=False, sharey=True)
    rng = np.random.default_rng(0)
    for ax, env in zip(axes[0], envs, strict=True):
        for j, agent in enumerate(agents):
            g = by.get((env, agent))
            if g is None or not g.rewards:
                continue
            r = np.asarray(g.rewards)
            ax.scatter(j + rng.uniform(-0.22, 0.22, len(r)), r, s=12, alpha=0.55, color=colors[agent], lw=0)
            ax.plot([j - 0.3, j + 0.3], [r.mean()] * 2, color="#0f172a", lw=2)
        ax.set_xticks(range(len(agents)), agents, rotation=20 if len(agents) > 2 else 0)
        ax.set_title(short_env(env), fontsize=10)
        ax.yaxis.grid(True, color="#e2e8f0")
    axes[0][0].set_ylabel("final reward (bar = mean)")
    fig.suptitle("Final reward distribution", fontweight="bold", fontsize=11)
    return _to_svg(fig)


def turns_svg(groups: list[GroupMetrics]) -> str:
    """Histogram of episode length (turns) per agent, one panel per env."""
    plt = _plt()
    envs, agents = _layout(groups)
    colors = agent_colors(groups)
    by = {(g.env_id, g.agent): g for g in groups}
    fig, axes = plt.subplots(1, len(envs), figsize=(max(4.5, 2.6 * len(envs)), 3.0), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        hi = max((max(g.turns, default=0) for g in groups if g.env_id == env), default=1)
        bins = range(0, hi + 2)
        for agent in agents:
            g = by.get((env, agent))
            if g is None or not g.turns:
                continue
            ax.hist(g.turns, bins=bins, color=colors[agent], alpha=0.55, label=agent, edgecolor="white", lw=0.5)
        ax.set_title(short_env(env), fontsize=10)
        ax.set_xlabel("turns")
        ax.yaxis.grid(True, color="#e2e8f0")
    axes[0][0].set_ylabel("episodes")
    axes[0][-1].legend(frameon=False, fontsize=8)
    fig.suptitle("Episode length", fontweight="bold", fontsize=11)
    return _to_svg(fig)
