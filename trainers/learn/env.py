"""A subset of one tool-API family's task kinds, as its own env id (same tasks, same seeds, same splits).

>>> from rowgym.trainers.learn.env import subset_env_id
>>> env_id = subset_env_id("rowgym/ToolAPI-Airline-v0", ("cancel", "cabin"))
>>> env_id
'rowgym-learn/ToolAPI-Airline-cancel.cabin-v0'
>>> import rowgym
>>> env = rowgym.make(env_id)
>>> seeds = env.splits.seeds("heldout", 3)
>>> sorted({env.make_task(s).kind for s in seeds}) <= ["cabin", "cancel"]
True
>>> env.close()

The subset env is the family's own class with one change: ``splits.seeds(split, n)`` lists only
the seeds whose task is of one of the chosen kinds. A seed's task, its split (the family's hash
split) and its task hash are exactly the family's, so held-out seeds of the subset are held-out
seeds of the family and every leak check (trainers re-derive a row's split from its env) holds.
With ``tools="gold"`` the env offers only the tools the chosen kinds' gold plans use (every other
call is an unknown-tool bad call): the prompt then carries 6 tool schemas instead of 13-14, which
halves its length (Airline: 925 instead of 1,852 tiny-model tokens) and with it the cost of every
SFT step, sampled turn and evaluation. ``tools="all"`` keeps the family's full tool list.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from rowgym.errors import UnknownEnvError
from rowgym.registry import register, spec
from rowgym.rows import Split
from rowgym.splits import SeedSplits, as_split

NAMESPACE = "rowgym-learn"


class KindSplits:
    """The family's splits, listing only seeds whose task kind is in ``kinds``."""

    def __init__(self, base: SeedSplits, kinds: tuple[str, ...], kind_of: Any):
        self.base, self.kinds, self.kind_of = base, frozenset(kinds), kind_of
        self._lists: dict[Split, list[int]] = {}
        self._next: dict[Split, int] = {}

    def split_of(self, seed: int) -> Split:
        return self.base.split_of(seed)

    def seeds(self, split: str | Split, n: int | None = None, start: int = 0) -> list[int]:
        if n is None:
            raise ValueError("a kind subset of an infinite seed set needs n")
        split = as_split(split)
        got = self._lists.setdefault(split, [])
        i = self._next.get(split, 0)
        while len(got) < start + n:  # walk the family's seeds of this split in order, keep the wanted kinds
            chunk = self.base.seeds(split, 256, start=i)
            i += len(chunk)
            got += [s for s in chunk if self.kind_of(s) in self.kinds]
        self._next[split] = i
        return got[start:start + n]


def gold_tools(base: type, kinds: tuple[str, ...], n: int = 64) -> tuple[str, ...]:
    """The tools that the gold plans of the first ``n`` train seeds of ``kinds`` call (plus ``finish``)."""
    cls = subset_class(base, kinds, None)
    probe = cls()
    names = {c.name for s in cls.splits.seeds("train", n) for c in probe.make_task(s).gold} | {"finish"}
    return tuple(t.name for t in probe.tool_list if t.name in names)


@functools.cache
def subset_class(base: type, kinds: tuple[str, ...], tools: tuple[str, ...] | None = None) -> type:
    """``base`` (a tool-API env class) restricted to ``kinds`` (and to ``tools``, if given)."""
    unknown = set(kinds) - set(getattr(importlib.import_module(base.__module__), "KINDS", kinds))
    if unknown:
        raise ValueError(f"{base.__name__} has no task kinds {sorted(unknown)}")
    probe = base()

    @functools.lru_cache(maxsize=65536)
    def kind_of(seed: int) -> str:
        return probe.make_task(seed).kind

    if tools is not None:
        def tools_of(cls: type, klass: type) -> list:
            return [t for t in base.tools_of(klass) if t.name in tools]
        extra = {"tools_of": classmethod(tools_of), "tool_names": tools}
    else:
        extra = {}
    name = f"{base.__name__}Subset_{'_'.join(kinds)}" + ("_gold_tools" if tools else "")
    splits = subset_class(base, kinds, None).splits if tools is not None else KindSplits(base.splits, kinds, kind_of)
    return type(name, (base,), {"splits": splits, "kinds": kinds, "__module__": __name__, **extra})


def subset_env_id(family_id: str, kinds: tuple[str, ...] | list[str], tools: str = "all") -> str:
    """Register (once) and return the id of ``family_id`` restricted to ``kinds`` (``tools``: all | gold)."""
    kinds = tuple(kinds)
    base_spec = spec(family_id)
    name = family_id.split("/", 1)[-1].rsplit("-v", 1)[0]
    env_id = f"{NAMESPACE}/{name}-{'.'.join(kinds)}{'-goldtools' if tools == 'gold' else ''}-v0"
    try:
        spec(env_id)
    except UnknownEnvError:
        base = base_spec.load()
        keep = gold_tools(base, kinds) if tools == "gold" else None
        register(env_id, entry_point=subset_class(base, kinds, keep), expert=base_spec.expert, tags=base_spec.tags,
                 description=f"{family_id} restricted to the task kinds {', '.join(kinds)}", source="rowgym.learn")
    return env_id
