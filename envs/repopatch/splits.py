"""Splits of repo-patch tasks by repository and source file.

>>> from rowgym.envs.repopatch.task import Base, RepoPatchTask
>>> def t(i, loc):
...     return RepoPatchTask(instance_id=str(i), source="corpus", repo="r", base=Base(files={}),
...                          problem_statement="", fail_to_pass=["t"], location=loc)
>>> tasks = [t(i, f"r/f{i % 7}.py::fn") for i in range(30)]
>>> s = assign_splits(tasks)
>>> {str(x) for x in s} == {"train", "dev", "heldout"}
True

Every task has a group, ``repo::file`` (the file its bug is in). A group's split is
a hash of the group alone, so adding tasks never moves another group, and all tasks
of a group share one split: a held-out task never shares a mutated source file (hence
never a mutated function) with a training task. When hashing leaves dev or heldout
empty (few groups), the train groups with the highest hashes move there.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

from rowgym.rows import Split

TRAIN_CUT, DEV_CUT = 0.75, 0.875
NAMESPACE = "repopatch-v1"


def group_of(task: object) -> str:
    """``repo::file`` of a task (its ``location`` without the function)."""
    loc = getattr(task, "location", "") or getattr(task, "instance_id", "")
    return f"{getattr(task, 'repo', '')}::{loc.split('::')[0]}"


def _u(key: str) -> float:
    return int.from_bytes(hashlib.blake2b(f"{NAMESPACE}:{key}".encode(), digest_size=8).digest(), "big") / 2**64


def assign_splits(tasks: Sequence[object]) -> list[Split]:
    """The split of each task (same order), grouped by repository and source file."""
    groups = sorted({group_of(t) for t in tasks}, key=_u)
    by_group: dict[str, Split] = {}
    for g in groups:
        u = _u(g)
        by_group[g] = Split.TRAIN if u < TRAIN_CUT else Split.DEV if u < DEV_CUT else Split.HELDOUT
    if len(groups) >= 3:
        for need in (Split.DEV, Split.HELDOUT):
            members: dict[Split, list[str]] = defaultdict(list)
            for g, s in by_group.items():
                members[s].append(g)
            if not members[need] and len(members[Split.TRAIN]) > 1:
                by_group[max(members[Split.TRAIN], key=_u)] = need
    elif len(groups) == 2:
        by_group[groups[0]], by_group[groups[1]] = Split.DEV, Split.HELDOUT
    else:
        by_group[groups[0]] = Split.DEV
    return [by_group[group_of(t)] for t in tasks]
