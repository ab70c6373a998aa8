"""Deterministic product catalogue, generated from a fixed seed and stored in SQLite.

>>> from rowgym.envs.shop.catalog import generate_products, catalog_hash
>>> products = generate_products()
>>> len(products) >= 2000, products[0].id
(True, 'P00001')
>>> catalog_hash(products) == catalog_hash(generate_products())
True

Why a generator and not a data file: the catalogue must be identical on every machine
and cost nothing to ship. ``random.Random`` seeded with a *string* hashes it with
SHA-512, and its ``choice``/``sample``/``uniform`` algorithms are stable across
platforms, so the same Python gives the same products everywhere (a test pins the
content hash). The SQLite file is a cache keyed by :data:`GENERATOR_VERSION`: bump it
whenever this module or :mod:`.catalog_data` changes what is generated.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from rowgym.envs.shop.catalog_data import BRANDS, CATEGORIES, ORDERED_OPTIONS, CategorySpec

GENERATOR_VERSION = 2
PRODUCTS_PER_CATEGORY = 70
_SEED = "rowgym-shop-catalog"


@dataclass(frozen=True)
class Product:
    """One catalogue item.

    Attributes:
        id: Stable id like ``"P00042"``.
        attributes: Single-valued attributes, e.g. ``{"material": "cotton"}``.
        features: Multi-valued attributes, e.g. ``["machine washable"]``.
        options: Option groups the buyer chooses from, e.g. ``{"size": ["S", "M"]}``;
            empty for products sold in one variant.
    """

    id: str
    title: str
    description: str
    category: str
    department: str
    brand: str
    price: float
    rating: float
    reviews: int
    attributes: dict[str, str] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    options: dict[str, list[str]] = field(default_factory=dict)

    def tags(self) -> set[str]:
        """All attribute values and features: what a goal's attributes are matched against."""
        return set(self.attributes.values()) | set(self.features)


def category(slug: str) -> CategorySpec:
    """The category spec for ``slug`` (raises ``KeyError`` if unknown)."""
    return _CATEGORIES_BY_SLUG[slug]


_CATEGORIES_BY_SLUG = {c.slug: c for c in CATEGORIES}


def product_noun(spec: CategorySpec, attrs: dict[str, str]) -> str:
    """The noun to put after the attributes: empty when the style already names it ("rain jacket")."""
    return "" if spec.noun.split()[-1] in attrs.get("style", "").split() else spec.noun


def _title_case(text: str) -> str:
    small = {"a", "an", "and", "for", "of", "to", "with", "in", "x"}
    words = text.split(" ")
    return " ".join(w if (i and w in small) or any(ch.isdigit() for ch in w) else w[:1].upper() + w[1:]
                    for i, w in enumerate(words))


def _pick_options(rng: random.Random, spec: CategorySpec) -> dict[str, list[str]]:
    if not spec.options or rng.random() >= spec.option_prob:
        return {}
    out: dict[str, list[str]] = {}
    for name, values in spec.options.items():
        if name in ORDERED_OPTIONS and len(values) > 2:
            # Sizes come in contiguous runs (S-XL), like a real listing.
            k = rng.randint(min(3, len(values)), len(values))
            start = rng.randint(0, len(values) - k)
            out[name] = list(values[start:start + k])
        elif name in ORDERED_OPTIONS:
            out[name] = list(values)
        else:
            k = rng.randint(2, min(6, len(values)))
            out[name] = sorted(rng.sample(values, k), key=values.index)
    return out


_PLURAL = {"capacity": "capacities"}


def _describe(rng: random.Random, spec: CategorySpec, brand: str, attrs: dict[str, str],
              features: list[str], options: dict[str, list[str]]) -> str:
    bits = [f"The {brand} {spec.noun} in {attrs['material']}." if "material" in attrs
            else f"A {spec.noun} from {brand}."]
    rest = [v for k, v in attrs.items() if k not in ("material", "gender")]
    if rest:
        bits.append(f"Details: {', '.join(rest)}.")
    bits.append(f"Features: {', '.join(features)}.")
    bits.append(rng.choice(["Built to last and easy to care for.", "A customer favourite.",
                            "Designed for everyday use.", "Great value for the quality.",
                            "Thoughtfully made with attention to detail."]))
    for name, values in options.items():
        bits.append(f"Available {_PLURAL.get(name, name + 's')}: {', '.join(values)}.")
    return " ".join(bits)


def _make_product(rng: random.Random, pid: str, spec: CategorySpec, brands: list[str]) -> Product:
    attrs = {key: rng.choice(values) for key, values in spec.axes.items()}
    features = sorted(rng.sample(spec.features, rng.randint(1, min(3, len(spec.features)))),
                      key=spec.features.index)
    options = _pick_options(rng, spec)
    brand = rng.choice(brands)
    head = [attrs[k] for k in ("gender", "material", "style") if k in attrs]
    tail = [v for k, v in attrs.items() if k not in ("gender", "material", "style")] + features[:2]
    title = _title_case(" ".join(filter(None, [brand, *head, product_noun(spec, attrs)]))) + " - " + _title_case(", ".join(tail))
    lo, hi = spec.price
    price = max(lo - 0.01, round(rng.uniform(lo, hi)) - rng.choice([0.01, 0.01, 0.05, 0.51]))
    rating = round(min(5.0, max(1.0, rng.gauss(4.1, 0.6))), 1)
    reviews = int(rng.expovariate(1 / 250))
    return Product(id=pid, title=title, description=_describe(rng, spec, brand, attrs, features, options),
                   category=spec.slug, department=spec.department, brand=brand, price=round(price, 2),
                   rating=rating, reviews=reviews, attributes=attrs, features=features, options=options)


@lru_cache(maxsize=1)
def _generate() -> tuple[Product, ...]:
    rng = random.Random(f"{_SEED}-v{GENERATOR_VERSION}")
    products: list[Product] = []
    for spec in CATEGORIES:
        brands = rng.sample(BRANDS, 8)
        for _ in range(PRODUCTS_PER_CATEGORY):
            products.append(_make_product(rng, f"P{len(products) + 1:05d}", spec, brands))
    return tuple(products)


def generate_products() -> list[Product]:
    """The whole catalogue, in id order (cached; the same list on every call and machine)."""
    return list(_generate())


def catalog_hash(products: list[Product]) -> str:
    """SHA-256 of the catalogue's canonical JSON: equal hashes mean identical catalogues."""
    blob = json.dumps([asdict(p) for p in products], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def cache_dir() -> Path:
    """Where the shop keeps its files: ``$ROWGYM_CACHE_DIR/shop`` or ``~/.cache/rowgym/shop``."""
    root = os.environ.get("ROWGYM_CACHE_DIR") or os.path.join(Path.home(), ".cache", "rowgym")
    path = Path(root) / "shop"
    path.mkdir(parents=True, exist_ok=True)
    return path


_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE products (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, description TEXT NOT NULL, category TEXT NOT NULL,
    department TEXT NOT NULL, brand TEXT NOT NULL, price REAL NOT NULL, rating REAL NOT NULL,
    reviews INTEGER NOT NULL, attributes TEXT NOT NULL, features TEXT NOT NULL, options TEXT NOT NULL);
CREATE INDEX products_category ON products(category);
CREATE TABLE categories (slug TEXT PRIMARY KEY, label TEXT NOT NULL, department TEXT NOT NULL,
    noun TEXT NOT NULL, position INTEGER NOT NULL);
"""


def _stored_version(path: Path) -> str | None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='generator_version'").fetchone()
            return row[0] if row else None
    except sqlite3.Error:
        return None


def build_catalog_db(path: Path | None = None) -> Path:
    """Write the catalogue to SQLite unless a file of the current generator version exists.

    The file is written to a temporary name and renamed, so concurrent starters
    (several env workers) never see a half-written catalogue.

    Args:
        path: Target file; defaults to ``cache_dir()/catalog-v{GENERATOR_VERSION}.sqlite``.

    Returns:
        The path of the up-to-date catalogue database.
    """
    path = Path(path) if path else cache_dir() / f"catalog-v{GENERATOR_VERSION}.sqlite"
    if path.exists() and _stored_version(path) == str(GENERATOR_VERSION):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    products = generate_products()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".catalog-", suffix=".sqlite")
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        with conn:
            conn.executescript(_SCHEMA)
            conn.executemany("INSERT INTO categories VALUES (?,?,?,?,?)",
                             [(c.slug, c.label, c.department, c.noun, i) for i, c in enumerate(CATEGORIES)])
            conn.executemany(
                "INSERT INTO products VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(p.id, p.title, p.description, p.category, p.department, p.brand, p.price, p.rating,
                  p.reviews, json.dumps(p.attributes), json.dumps(p.features), json.dumps(p.options))
                 for p in products])
            conn.executemany("INSERT INTO meta VALUES (?,?)", [
                ("generator_version", str(GENERATOR_VERSION)), ("n_products", str(len(products))),
                ("content_hash", catalog_hash(products))])
        conn.close()
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; other users may serve it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_catalog_db(path: Path) -> list[Product]:
    """Read every product back from a catalogue database (id order)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT id, title, description, category, department, brand, price, rating,"
                            " reviews, attributes, features, options FROM products ORDER BY id").fetchall()
    return [Product(*r[:9], attributes=json.loads(r[9]), features=json.loads(r[10]), options=json.loads(r[11]))
            for r in rows]
