import sqlite3

from rowgym.envs.shop import catalog
from rowgym.envs.shop.catalog import (
    GENERATOR_VERSION,
    build_catalog_db,
    catalog_hash,
    generate_products,
    load_catalog_db,
)
from rowgym.envs.shop.catalog_data import CATEGORIES, OPTION_NAMES

# Pinned: the catalogue must be byte-identical on every machine. If you change the
# generator on purpose, bump GENERATOR_VERSION and update this hash.
PINNED = {2: "f2533623eb22d971b4256dc4e2d14cbe4c398d98f18c89fe18b816e0cbd94ba4"}


def test_catalogue_is_deterministic_and_pinned():
    products = generate_products()
    assert catalog_hash(products) == PINNED[GENERATOR_VERSION]
    catalog._generate.cache_clear()
    assert catalog_hash(generate_products()) == PINNED[GENERATOR_VERSION]


def test_catalogue_size_and_shape():
    products = generate_products()
    assert len(products) >= 2000
    assert len({p.id for p in products}) == len(products)
    cats = {p.category for p in products}
    assert len(cats) == len(CATEGORIES) >= 30
    assert {"t-shirts", "jeans", "jackets", "dresses", "sneakers"} <= cats
    assert any(not p.options for p in products), "some products have no options"
    assert all(set(p.options) <= set(OPTION_NAMES) for p in products)
    assert all(p.price > 0 and 1.0 <= p.rating <= 5.0 and p.title and p.description for p in products)


def test_sqlite_roundtrip_and_rebuild_on_version_change(tmp_path):
    path = build_catalog_db(tmp_path / "c.sqlite")
    assert load_catalog_db(path) == generate_products()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value='0' WHERE key='generator_version'")
        conn.execute("DELETE FROM products")
    build_catalog_db(path)  # stale version -> rebuilt
    assert len(load_catalog_db(path)) == len(generate_products())
