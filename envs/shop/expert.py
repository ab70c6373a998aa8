"""A scripted expert that shops through the browser like a person, from the page snapshot.

>>> import asyncio, rowgym                                                # doctest: +SKIP
>>> from rowgym.envs.shop.expert import ShopExpert                     # doctest: +SKIP
>>> env = rowgym.make("rowgym/Shop-v0")                                  # doctest: +SKIP
>>> obs, info = env.reset(seed=3)                                        # doctest: +SKIP
>>> agent = ShopExpert()                                                 # doctest: +SKIP
>>> from rowgym.contract import episode_context                          # doctest: +SKIP
>>> asyncio.run(agent.reset(episode_context(env, obs, info, privileged=True)))  # doctest: +SKIP
>>> asyncio.run(agent.act(obs)).action.tool_call.name                    # doctest: +SKIP
'type'

It is privileged: it reads the goal (``ctx.task``: words to search for, the category, the price bound,
the options, and which product ids satisfy it, the way the tool-API expert reads its
gold plan), but it acts only through references it finds in the latest observation:
search with the goal's words, filter by category and price, open a result whose link
points at a target product (next page if none is listed), choose each option, add to
the cart, proceed to checkout, fill in the shipping form, place the order, finish.
Each decision is a function of the current page, so after an error it re-reads the
page (``scroll``) and carries on.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rowgym.contract import Agent, AgentTurn, EpisodeContext
from rowgym.envs.shop.aria import Node, parse
from rowgym.envs.shop.catalog_data import CATEGORIES
from rowgym.errors import AgentError
from rowgym.rows import Action, PolicyInfo

SHIPPING = (("Full name", "Ada Lovelace"), ("Street address", "12 St James's Square"), ("City", "London"),
            ("Postcode", "SW1Y 4JH"))
_URL = re.compile(r"^URL: (.*)$", re.M)


def _find(nodes: list[Node], role: str, name: str | None = None, *, within: str | None = None) -> Node | None:
    for n in nodes:
        if n.role == role and n.ref and (name is None or n.name.lower() == name.lower()) and (
                within is None or within in n.parents):
            return n
    return None


class ShopExpert(Agent):
    """Search, filter, open a matching product, choose options, buy; only through snapshot refs."""

    name = "expert"
    privileged = True

    def __init__(self, max_errors: int = 3):
        self.max_errors = max_errors
        self.goal: Any = None
        self._labels = {c.slug: c.label for c in CATEGORIES}
        self._errors = 0
        self._filter_stage = 0
        self._picked: set[str] = set()

    def policy_info(self) -> PolicyInfo:
        return PolicyInfo(agent=self.name, model="scripted")

    async def reset(self, ctx: EpisodeContext) -> None:
        goal = ctx.task
        if goal is None or not hasattr(goal, "target_product_ids"):
            raise AgentError(f"ShopExpert needs the shop env's goal (ctx.task); got {type(goal).__name__}")
        self.goal = goal
        self._errors = 0
        self._filter_stage = 0
        self._picked = set()

    @staticmethod
    def call(name: str, **args: Any) -> AgentTurn:
        return AgentTurn(Action.call(name, **args))

    async def act(self, obs: str) -> AgentTurn:
        m = _URL.search(obs)
        if obs.startswith("Error:") or m is None:
            self._errors += 1
            if self._errors > self.max_errors:
                return self.call("finish")
            return self.call("scroll", direction="down")  # re-read the page
        nodes = parse(obs.split("\nPage (", 1)[-1])
        url = urlsplit(m.group(1))
        path, query = url.path, parse_qs(url.query)
        if path == "/search":
            return self._on_search(nodes, query)
        if path.startswith("/product/"):
            return self._on_product(nodes, path.rsplit("/", 1)[1])
        if path == "/cart":
            return self._click(nodes, "link", "Proceed to checkout")
        if path == "/checkout":
            return self._on_checkout(nodes)
        if path.startswith("/order/"):
            return self.call("finish")
        return self._search(nodes)

    # ---------------------------------------------------------------- pages
    def _click(self, nodes: list[Node], role: str, name: str) -> AgentTurn:
        node = _find(nodes, role, name)
        if node is None:
            self._errors += 1
            return self.call("finish") if self._errors > self.max_errors else self.call("goto", path="/")
        return self.call("click", ref=node.ref)

    def _search(self, nodes: list[Node]) -> AgentTurn:
        box = _find(nodes, "searchbox", "Search products")
        if box is None:
            return self.call("goto", path="/")
        self._filter_stage = 0
        words = " ".join([*self.goal.attributes, self.goal.product_type])
        return self.call("type", ref=box.ref, text=words, submit=True)

    def _on_search(self, nodes: list[Node], query: dict[str, list[str]]) -> AgentTurn:
        goal = self.goal
        if not query.get("category"):  # filter like a person: category, then the price bound
            if self._filter_stage == 0:
                combo = _find(nodes, "combobox", "Category")
                if combo is not None:
                    self._filter_stage = 1
                    return self.call("select", ref=combo.ref, option=self._labels.get(goal.category, goal.category))
            price = _find(nodes, "spinbutton", "Max price ($)")
            if price is not None and self._filter_stage == 1:
                self._filter_stage = 2
                return self.call("type", ref=price.ref, text=f"{goal.price_upper:.2f}", submit=True)
        targets = set(goal.target_product_ids)
        for n in nodes:
            if n.role == "link" and n.ref and n.url and n.url.rsplit("/", 1)[-1] in targets:
                return self.call("click", ref=n.ref)
        nxt = _find(nodes, "link", "Next page")
        if nxt is not None:
            return self.call("click", ref=nxt.ref)
        self._errors += 1  # nothing left to page through: search again, then give up
        return self.call("finish") if self._errors > self.max_errors else self._search(nodes)

    def _on_product(self, nodes: list[Node], pid: str) -> AgentTurn:
        if pid not in self.goal.target_product_ids:
            return self.call("back")
        for option, value in self.goal.options.items():
            group = _find(nodes, "group", option)
            if group is None:
                continue
            radio = _find(nodes, "radio", value, within=group.ref)
            if radio is not None and not radio.checked and f"{pid}:{option}" not in self._picked:
                self._picked.add(f"{pid}:{option}")
                return self.call("click", ref=radio.ref)
        return self._click(nodes, "button", "Add to cart")

    def _on_checkout(self, nodes: list[Node]) -> AgentTurn:
        for i, (label, value) in enumerate(SHIPPING):
            box = _find(nodes, "textbox", label)
            if box is not None and box.text != value:
                return self.call("type", ref=box.ref, text=value, submit=i == len(SHIPPING) - 1)
        return self._click(nodes, "button", "Place order")
