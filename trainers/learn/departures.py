"""Where an episode leaves its task's gold plan: the first call that differs, and how.

The learn benchmark's tasks each have a gold plan (``task.gold``: four calls for cancel / cabin /
baggage). Success rates say how often a policy solves a task; this says *what* it gets wrong, so a
reader can see whether an arm fixed the start's weak spot (e.g. choosing the change tool) or only
moved noise. Calls are compared after the env's own parsing and validation (``rowgym.tools.parse_action``),
so formatting differences that parse to the same arguments are not departures.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rowgym.tools import BadCall, parse_action

SUCCESS = "success"
ON_PLAN = "followed the gold plan, graded a failure"


def departure(gold: list[Any], steps: list[Any], tools: dict[str, Any], success: bool) -> str:
    """A label for one episode: ``success``, ``call N (tool): malformed / wrong tool / wrong arguments``,
    ``call N (tool): not made (episode ended)``, or ``ON_PLAN``."""
    if success:
        return SUCCESS
    for i, g in enumerate(gold):
        where = f"call {i + 1} ({g.name})"
        if i >= len(steps):
            return f"{where}: not made (episode ended)"
        got = parse_action(steps[i].action, tools)
        if isinstance(got, BadCall):
            if got.call is None:
                return f"{where}: malformed"
            return f"{where}: wrong tool" if got.call.name != g.name else f"{where}: wrong arguments"
        if got.tool.name != g.name:
            return f"{where}: wrong tool"
        want = parse_action(g, tools)
        if isinstance(want, BadCall) or got.args.model_dump() != want.args.model_dump():
            return f"{where}: wrong arguments"
    return ON_PLAN


def count_departures(env: Any, episodes: list[Any]) -> dict[str, int]:
    """Departure labels counted over ``episodes`` of ``env`` (an env whose tasks carry a gold plan), most
    common first; empty for an env without gold plans."""
    if not hasattr(env, "make_task"):
        return {}
    tools = {t.name: t for t in env.tool_list}
    counts = Counter(departure(env.make_task(e.seed).gold, e.steps, tools, bool(e.success)) for e in episodes)
    return dict(counts.most_common())


def merge(parts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for p in parts:
        total.update(p)
    return dict(total.most_common())
