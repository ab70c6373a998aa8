import hashlib
import json

import pytest

from rowgym.envs.shop.catalog import generate_products
from rowgym.envs.shop.instructions import (
    N_GOALS,
    Goal,
    all_goals,
    goal_for_seed,
    goal_splits,
    product_split,
    score,
    score_breakdown,
    split_seeds,
)
from rowgym.envs.shop.models import OrderLine
from rowgym.rows import Split

BY_ID = {p.id: p for p in generate_products()}
PINNED_GOALS = "1ab230daac1cc63735ca52ee88302d3e7729cae88db81e4b6731c94ecbd43b27"


def line_for(pid: str, options: dict[str, str], price: float | None = None) -> OrderLine:
    p = BY_ID[pid]
    return OrderLine(product_id=pid, title=p.title, category=p.category, department=p.department,
                     attributes=sorted(p.tags()), options=options,
                     unit_price=p.price if price is None else price, quantity=1)


def goal_with_options() -> Goal:
    return next(g for g in all_goals() if g.options and g.attributes)


def test_goals_are_deterministic_and_pinned():
    blob = json.dumps([g.model_dump(mode="json") for g in all_goals()]).encode()
    assert hashlib.sha256(blob).hexdigest() == PINNED_GOALS
    assert goal_for_seed(123) == all_goals()[123]


def test_thousands_of_goals_in_three_splits():
    goals = all_goals()
    assert len(goals) == N_GOALS >= 5000
    counts = {s: len(split_seeds(s)) for s in Split}
    assert counts[Split.HELDOUT] >= 500 and counts[Split.DEV] >= 500 and counts[Split.TRAIN] >= 4000
    assert goal_splits().split_of(7) == goals[7].split


def test_heldout_shares_no_target_product_or_options_with_train():
    def targets(split):
        return {(pid, tuple(sorted(g.options.items())))
                for g in all_goals() if g.split == split for pid in g.target_product_ids}
    train, heldout, dev = targets(Split.TRAIN), targets(Split.HELDOUT), targets(Split.DEV)
    assert not train & heldout and not train & dev and not dev & heldout
    assert all(product_split(pid) == g.split for g in all_goals() for pid in g.target_product_ids)


def test_targets_satisfy_their_goal():
    for g in all_goals()[:500]:
        assert g.product_id in g.target_product_ids
        assert g.instruction and str(g.price_upper) and g.goal_id == f"shop-{g.seed}"
        for pid in g.target_product_ids:
            p = BY_ID[pid]
            assert p.category == g.category and set(g.attributes) <= p.tags() and p.price <= g.price_upper
            assert all(v in p.options[n] for n, v in g.options.items())


def test_goal_forbids_extra_fields():
    with pytest.raises(ValueError):
        Goal(**goal_for_seed(0).model_dump(), extra_field=1)


def test_perfect_purchase_scores_one_for_any_target():
    g = next(g for g in all_goals() if len(g.target_product_ids) > 1)
    for pid in g.target_product_ids:
        assert score(g, [line_for(pid, dict(g.options))]) == 1.0


def test_wrong_option_scores_below_one():
    g = goal_with_options()
    name, value = next(iter(g.options.items()))
    other = next(v for v in BY_ID[g.product_id].options[name] if v != value)
    b = score_breakdown(g, [line_for(g.product_id, {**g.options, name: other})])
    assert 0 < b.score < 1 and b.options_matched == len(g.options) - 1


def test_over_price_scores_below_one():
    g = goal_with_options()
    b = score_breakdown(g, [line_for(g.product_id, dict(g.options), price=g.price_upper + 5)])
    assert 0 < b.score < 1 and not b.price_ok
    total = len(g.attributes) + len(g.options) + 1
    assert b.score == pytest.approx((total - 1) / total)


def test_nothing_bought_scores_zero():
    g = goal_for_seed(0)
    assert score(g, []) == 0.0


def test_wrong_category_and_buying_everything_are_penalised():
    g = goal_with_options()
    other = next(p for p in generate_products() if p.department != g.department)
    wrong = score(g, [line_for(other.id, {})])
    assert wrong <= 0.1 / (len(g.attributes) + len(g.options) + 1) + 1e-9
    both = score(g, [line_for(g.product_id, dict(g.options)), line_for(other.id, {})])
    assert both == pytest.approx(0.5)
