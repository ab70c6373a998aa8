"""Keyword search over the catalogue (in memory; 2,500 products need no search engine).

>>> from rowgym.envs.shop.catalog import generate_products
>>> index = SearchIndex(generate_products())
>>> hits = index.search("cotton t-shirt", category="t-shirts", max_price=30)
>>> all(p.category == "t-shirts" and p.price <= 30 for p in hits)
True

Ranking: each query term found in the title scores 3, found only elsewhere (description,
attributes, options) scores 1; ties break on rating, then id, so results are
deterministic. Terms are lower-cased and crudely singularised ("shirts" -> "shirt"),
and instruction filler words ("i", "need", "price", "dollars") are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rowgym.envs.shop.catalog import Product

STOPWORDS = frozenset(
    "a an and are for i im i'm in is it looking lower me need of or price than that the to want with "
    "dollars dollar under less please buy find some".split())
_TOKEN = re.compile(r"[a-z0-9]+(?:[-.'][a-z0-9]+)*")


def _norm(token: str) -> str:
    if len(token) > 3 and token.endswith("es") and token[-3] in "sxz":
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def terms(text: str) -> list[str]:
    """Normalised search terms of ``text``; hyphenated words also yield their parts."""
    out: list[str] = []
    for tok in _TOKEN.findall(text.lower()):
        if tok in STOPWORDS:
            continue
        out.append(_norm(tok))
        if "-" in tok:
            out.extend(_norm(part) for part in tok.split("-") if part not in STOPWORDS)
    return out


@dataclass(frozen=True)
class _Doc:
    product: Product
    title: frozenset[str]
    body: frozenset[str]


class SearchIndex:
    """Term sets per product, built once at app start.

    Args:
        products: The catalogue.
    """

    def __init__(self, products: list[Product]):
        self._docs = []
        for p in products:
            title = frozenset(terms(p.title))
            extra = " ".join([p.description, p.category, p.department, *p.attributes.values(), *p.features,
                              *(v for vs in p.options.values() for v in vs)])
            self._docs.append(_Doc(p, title, frozenset(terms(extra)) | title))

    def search(self, query: str = "", *, category: str | None = None,
               max_price: float | None = None) -> list[Product]:
        """Products matching at least one query term (all products if the query is empty).

        Args:
            query: Free text.
            category: Keep only this category slug.
            max_price: Keep only products at or under this price.

        Returns:
            Matching products, best first.
        """
        q = list(dict.fromkeys(terms(query)))
        scored = []
        for d in self._docs:
            p = d.product
            if (category and p.category != category) or (max_price is not None and p.price > max_price):
                continue
            s = sum(3 if t in d.title else 1 if t in d.body else 0 for t in q)
            if q and s == 0:
                continue
            scored.append((-s, -p.rating, p.id, p))
        scored.sort(key=lambda x: x[:3])
        return [x[3] for x in scored]
