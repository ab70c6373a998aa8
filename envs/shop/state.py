"""Per-session shop state (sessions, carts, orders) in SQLite.

>>> import tempfile, os
>>> st = ShopState(os.path.join(tempfile.mkdtemp(), "state.sqlite"))
>>> sid = st.create_session("buy socks")
>>> st.add_to_cart(sid, "P00001", {"size": "L"}, 2, 9.99)
>>> [(r.product_id, r.quantity) for r in st.cart(sid)]
[('P00001', 2)]
>>> st.cart(st.create_session())   # another session sees nothing
[]
>>> st.close()

Isolation is by construction: every query that reads or writes a cart or an order
filters on the session id, and order pages check ownership. Session ids are random
tokens (``secrets.token_urlsafe``), never counters, so one episode cannot guess
another's.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS sessions (sid TEXT PRIMARY KEY, created REAL NOT NULL, instruction TEXT);
CREATE TABLE IF NOT EXISTS cart_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT NOT NULL REFERENCES sessions(sid),
    product_id TEXT NOT NULL, options TEXT NOT NULL, quantity INTEGER NOT NULL, unit_price REAL NOT NULL);
CREATE INDEX IF NOT EXISTS cart_sid ON cart_items(sid);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, sid TEXT NOT NULL REFERENCES sessions(sid), placed_at REAL NOT NULL,
    shipping TEXT NOT NULL, total REAL NOT NULL);
CREATE INDEX IF NOT EXISTS orders_sid ON orders(sid);
CREATE TABLE IF NOT EXISTS order_items (
    order_id TEXT NOT NULL REFERENCES orders(order_id), product_id TEXT NOT NULL, options TEXT NOT NULL,
    quantity INTEGER NOT NULL, unit_price REAL NOT NULL);
CREATE INDEX IF NOT EXISTS order_items_oid ON order_items(order_id);
"""


@dataclass(frozen=True)
class StoredLine:
    """A cart or order line as stored (the app adds catalogue details for display)."""

    item_id: int
    product_id: str
    options: dict[str, str]
    quantity: int
    unit_price: float


@dataclass(frozen=True)
class StoredOrder:
    """A placed order as stored."""

    order_id: str
    placed_at: float
    shipping: dict[str, str]
    total: float
    lines: list[StoredLine]


def _opts(options: dict[str, str]) -> str:
    return json.dumps(options, sort_keys=True)


class ShopState:
    """Sessions, carts and orders of one shop server.

    One connection guarded by a lock: the app's handlers are ``async`` and run on one
    event loop, and SQLite writes here take microseconds, so a pool buys nothing.

    Args:
        path: The SQLite file (created if missing; ``":memory:"`` works for tests).
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> ShopState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self, fn):
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return out

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # --- sessions ---
    def create_session(self, instruction: str | None = None) -> str:
        """Start a new, empty session and return its id."""
        sid = secrets.token_urlsafe(18)
        self._tx(lambda c: c.execute("INSERT INTO sessions VALUES (?,?,?)", (sid, time.time(), instruction)))
        return sid

    def has_session(self, sid: str) -> bool:
        """Whether ``sid`` names an existing session."""
        return bool(self._read("SELECT 1 FROM sessions WHERE sid=?", (sid,)))

    def instruction(self, sid: str) -> str | None:
        """The instruction attached to the session, if any."""
        rows = self._read("SELECT instruction FROM sessions WHERE sid=?", (sid,))
        return rows[0][0] if rows else None

    # --- cart ---
    def cart(self, sid: str) -> list[StoredLine]:
        """The session's cart lines, oldest first."""
        rows = self._read("SELECT id, product_id, options, quantity, unit_price FROM cart_items"
                          " WHERE sid=? ORDER BY id", (sid,))
        return [StoredLine(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def add_to_cart(self, sid: str, product_id: str, options: dict[str, str], quantity: int,
                    unit_price: float) -> None:
        """Add a line, or raise the quantity of the same product with the same options."""
        def fn(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT id FROM cart_items WHERE sid=? AND product_id=? AND options=?",
                            (sid, product_id, _opts(options))).fetchone()
            if row:
                c.execute("UPDATE cart_items SET quantity=MIN(99, quantity+?) WHERE id=?", (quantity, row[0]))
            else:
                c.execute("INSERT INTO cart_items (sid, product_id, options, quantity, unit_price)"
                          " VALUES (?,?,?,?,?)", (sid, product_id, _opts(options), quantity, unit_price))
        self._tx(fn)

    def remove_from_cart(self, sid: str, item_id: int) -> bool:
        """Remove one line of *this* session's cart; False if it was not there."""
        cur = self._tx(lambda c: c.execute("DELETE FROM cart_items WHERE id=? AND sid=?", (item_id, sid)))
        return cur.rowcount > 0

    # --- orders ---
    def place_order(self, sid: str, shipping: dict[str, str]) -> str | None:
        """Turn the cart into an order (atomically) and empty it; None if the cart is empty."""
        def fn(c: sqlite3.Connection) -> str | None:
            lines = c.execute("SELECT product_id, options, quantity, unit_price FROM cart_items"
                              " WHERE sid=? ORDER BY id", (sid,)).fetchall()
            if not lines:
                return None
            oid = "R" + secrets.token_hex(5).upper()
            total = round(sum(q * p for _, _, q, p in lines), 2)
            c.execute("INSERT INTO orders VALUES (?,?,?,?,?)",
                      (oid, sid, time.time(), json.dumps(shipping), total))
            c.executemany("INSERT INTO order_items VALUES (?,?,?,?,?)", [(oid, *line) for line in lines])
            c.execute("DELETE FROM cart_items WHERE sid=?", (sid,))
            return oid
        return self._tx(fn)

    def orders(self, sid: str) -> list[StoredOrder]:
        """The session's orders, oldest first."""
        heads = self._read("SELECT order_id, placed_at, shipping, total FROM orders WHERE sid=?"
                           " ORDER BY placed_at, order_id", (sid,))
        return [self._order(*h) for h in heads]

    def order(self, sid: str, order_id: str) -> StoredOrder | None:
        """One order, only if it belongs to ``sid`` (another session's order is None)."""
        heads = self._read("SELECT order_id, placed_at, shipping, total FROM orders WHERE sid=? AND order_id=?",
                           (sid, order_id))
        return self._order(*heads[0]) if heads else None

    def _order(self, oid: str, placed_at: float, shipping: str, total: float) -> StoredOrder:
        rows = self._read("SELECT rowid, product_id, options, quantity, unit_price FROM order_items"
                          " WHERE order_id=? ORDER BY rowid", (oid,))
        lines = [StoredLine(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]
        return StoredOrder(oid, placed_at, json.loads(shipping), total, lines)
