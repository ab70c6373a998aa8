"""WebShop-style shopping goals per seed, their train/dev/heldout splits, and scoring.

>>> from rowgym.envs.shop.instructions import goal_for_seed, split_seeds, score
>>> g = goal_for_seed(0)
>>> g.instruction.endswith("dollars") and g.product_id in g.target_product_ids
True
>>> set(split_seeds("train")) & set(split_seeds("heldout"))
set()

A goal is drawn from one product: a few of its attribute values, one value of each
of its option groups, and a price bound a little above its price. Any product of the
same category that has those attributes, offers those options and costs no more than
the bound satisfies the goal (``target_product_ids``).

Splits are over *products*: a product's split is a hash of its id (80/10/10), a goal
takes its product's split, and a goal is only kept if every product satisfying it
lies in that same split. So a held-out goal never shares a target product (let alone
a product + options) with a training goal. Seeds ``0 .. N_GOALS-1`` index the goals.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from pydantic import BaseModel, ConfigDict

from rowgym.envs.shop.catalog import GENERATOR_VERSION, Product, category, generate_products
from rowgym.envs.shop.models import OrderLine, SessionReport
from rowgym.rows import Split
from rowgym.splits import ListSplits, as_split

GOALS_VERSION = 1
#: Version of :func:`score`; record it with rewards computed from it.
SCORE_VERSION = "shop-match-1"
N_GOALS = 8000
_SPLIT_CUTS = ((80, Split.TRAIN), (90, Split.DEV), (100, Split.HELDOUT))


class Goal(BaseModel):
    """One shopping task.

    Attributes:
        goal_id: ``"shop-<seed>"``.
        product_id: The product the goal was drawn from (always a target).
        target_product_ids: Every product that satisfies the goal.
        category, department, product_type: Where the product lives and its noun.
        attributes: Attribute values and features the purchase should have.
        options: Option group -> value the purchase should be bought with.
        price_upper: The purchase's unit price should be at most this.
        instruction: The natural-language request shown to the agent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    goal_id: str
    seed: int
    split: Split
    product_id: str
    target_product_ids: list[str]
    category: str
    department: str
    product_type: str
    attributes: list[str]
    options: dict[str, str]
    price_upper: float
    instruction: str


@cache
def product_split(product_id: str) -> Split:
    """The split a product (and every goal drawn from it) belongs to: a hash of its id."""
    bucket = int.from_bytes(hashlib.blake2b(f"rowgym-shop:{product_id}".encode(), digest_size=8).digest(),
                            "big") % 100
    return next(split for cut, split in _SPLIT_CUTS if bucket < cut)


@lru_cache(maxsize=1)
def _by_category() -> dict[str, list[tuple[Product, frozenset[str]]]]:
    out: dict[str, list[tuple[Product, frozenset[str]]]] = {}
    for p in generate_products():
        out.setdefault(p.category, []).append((p, frozenset(p.tags())))
    return out


def _nice_bound(x: float) -> float:
    step = 1 if x < 20 else 5 if x < 100 else 10
    return float(math.ceil(x / step) * step)


def _satisfies(q: Product, tags: frozenset[str], attrs: list[str], options: dict[str, str],
               bound: float) -> bool:
    return (q.price <= bound and tags.issuperset(attrs)
            and all(v in q.options.get(n, ()) for n, v in options.items()))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_OPTION_PHRASE = {"size": "in size {}", "colour": "in {}", "capacity": "with a capacity of {}",
                  "length": "with a length of {}", "scent": "in {} scent", "model": "for the {}"}
_OPENERS = ("i need", "i am looking for", "i want to buy", "find me", "i would like")


def _instruction(rng: random.Random, p: Product, attrs: list[str], options: dict[str, str],
                 bound: float) -> str:
    noun = category(p.category).noun
    axis_values = set(p.attributes.values())
    pre = [a for a in attrs if a in axis_values and not a.startswith(("for ", "with "))]
    post = [a for a in attrs if a not in pre]
    # "a rain jacket", not "a rain jacket jacket"
    words = " ".join([*pre, noun] if noun.split()[-1] not in " ".join(pre).split() else pre)
    plural = noun.endswith("s") and not noun.endswith("ss")
    article = "" if plural else ("an " if words[0] in "aeiou" else "a ")
    text = f"{rng.choice(_OPENERS)} {article}{words}"
    if post:
        fixed = [a for a in post if a.startswith(("for ", "with "))]
        loose = [a for a in post if a not in fixed]
        parts = fixed + ([("that are " if plural else "that is ") + _and(loose)] if loose else [])
        text += " " + " ".join(parts)
    if options:
        text += " " + " and ".join(_OPTION_PHRASE[n].format(v) for n, v in options.items())
    return text + rng.choice([f", and price lower than {bound:.2f} dollars",
                              f" under {bound:.2f} dollars", f", priced under ${bound:.2f}"])


def goal_for_seed(seed: int) -> Goal:
    """The goal for ``seed`` (any non-negative int; deterministic, cheap)."""
    rng = random.Random(f"rowgym-shop-goal-v{GOALS_VERSION}-c{GENERATOR_VERSION}-{seed}")
    products = generate_products()
    for _ in range(100):
        p = rng.choice(products)
        split = product_split(p.id)
        tags = sorted(p.tags())  # sorted: set order depends on PYTHONHASHSEED
        attrs = rng.sample(tags, min(rng.choice((1, 2, 2, 3)), len(tags)))
        spare = [t for t in tags if t not in attrs]
        rng.shuffle(spare)
        options = {n: rng.choice(vs) for n, vs in p.options.items()}
        bound = _nice_bound(p.price * rng.uniform(1.1, 1.6))
        while True:
            targets = [q for q, tags in _by_category()[p.category] if _satisfies(q, tags, attrs, options, bound)]
            if all(product_split(q.id) == split for q in targets):
                break
            if not spare:
                targets = []
                break
            attrs.append(spare.pop())  # narrow the goal until only this split's products fit
        if targets:
            return Goal(goal_id=f"shop-{seed}", seed=seed, split=split, product_id=p.id,
                        target_product_ids=[q.id for q in targets], category=p.category,
                        department=p.department, product_type=category(p.category).noun,
                        attributes=attrs, options=options, price_upper=bound,
                        instruction=_instruction(rng, p, attrs, options, bound))
    raise RuntimeError(f"no goal found for seed {seed}: the catalogue is too ambiguous")  # pragma: no cover


@lru_cache(maxsize=1)
def all_goals() -> tuple[Goal, ...]:
    """Goals for seeds ``0 .. N_GOALS-1`` (cached; about a second to build)."""
    return tuple(goal_for_seed(s) for s in range(N_GOALS))


def goal_splits() -> ListSplits:
    """The seed -> split assignment, in the core's :class:`~rowgym.splits.ListSplits` form."""
    return ListSplits([g.split for g in all_goals()])


def split_seeds(split: str | Split, n: int | None = None) -> list[int]:
    """Seeds of ``split`` in increasing order (the first ``n`` if given)."""
    return goal_splits().seeds(as_split(split), n)


# --- scoring -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreBreakdown:
    """Why a purchase scored what it did (the best purchased line is the one reported)."""

    score: float
    r_type: float
    attributes_matched: int
    attributes_total: int
    options_matched: int
    options_total: int
    price_ok: bool
    n_purchased: int
    product_id: str | None


def _line_score(goal: Goal, line: OrderLine, n: int) -> ScoreBreakdown:
    r_type = 1.0 if line.category == goal.category else 0.5 if line.department == goal.department else 0.1
    have = {a.lower() for a in line.attributes}
    att = sum(a.lower() in have for a in goal.attributes)
    opts = {k: v.lower() for k, v in line.options.items()}
    opt = sum(opts.get(k) == v.lower() for k, v in goal.options.items())
    price_ok = line.unit_price <= goal.price_upper + 1e-9
    r = r_type * (att + opt + price_ok) / (len(goal.attributes) + len(goal.options) + 1)
    return ScoreBreakdown(r / n, r_type, att, len(goal.attributes), opt, len(goal.options), price_ok, n,
                          line.product_id)


def score_breakdown(goal: Goal, purchased: SessionReport | Sequence[OrderLine]) -> ScoreBreakdown:
    """WebShop's reward for what was bought, with its parts.

    ``r = r_type * (|attrs matched| + |options matched| + [price <= bound]) /
    (|attrs| + |options| + 1)``, where ``r_type`` is 1 for the goal's category, 0.5
    for another category of the same department, 0.1 otherwise. Several distinct
    purchases (product + options) score the best one divided by their number, so
    buying everything in sight does not pay. Quantity is not scored.

    Args:
        goal: The episode's goal.
        purchased: The grader report (only placed orders count) or its order lines.

    Returns:
        The breakdown; ``.score`` is in [0, 1] and 0 when nothing was bought.
    """
    lines = purchased.purchased() if isinstance(purchased, SessionReport) else list(purchased)
    distinct = {(ln.product_id, tuple(sorted(ln.options.items()))): ln for ln in lines}
    if not distinct:
        return ScoreBreakdown(0.0, 0.0, 0, len(goal.attributes), 0, len(goal.options), False, 0, None)
    n = len(distinct)
    return max((_line_score(goal, ln, n) for ln in distinct.values()), key=lambda b: (b.score, b.product_id))


def score(goal: Goal, purchased: SessionReport | Sequence[OrderLine]) -> float:
    """The final reward in [0, 1]: 1.0 for a perfect purchase (see :func:`score_breakdown`)."""
    return score_breakdown(goal, purchased).score
