"""Per-session shop state (sessions, carts, orders) in SQLite, with idle expiry.

>>> import tempfile, os
>>> now = [1000.0]
>>> st = ShopState(os.path.join(tempfile.mkdtemp(), "state.sqlite"), ttl_s=60, clock=lambda: now[0])
>>> sid = st.create_session("buy socks")
>>> st.add_to_cart(sid, "P00001", {"size": "L"}, 2, 9.99)
>>> [(r.product_id, r.quantity) for r in st.cart(sid)]
[('P00001', 2)]
>>> st.cart(new_sid())   # another session sees nothing
[]
>>> now[0] += 61         # idle for longer than the TTL: gone, cart and all
>>> st.has_session(sid), st.sweep(), st.count()
(False, 1, 0)
>>> st.close()

Isolation is by construction: every query that reads or writes a cart or an order
filters on the session id, and order pages check ownership. Session ids are random
tokens (``secrets.token_urlsafe``, 144 bits), never counters, so one episode cannot
guess another's.

Bounded by construction too: a session is stored only when the environment creates
one (``owner="env"``) or a browser first writes (adds to its cart); reading pages
stores nothing. A session idle for ``ttl_s`` seconds (by the injectable ``clock``) is
expired at once and deleted, with its cart and orders, by the next sweep (at most every
``sweep_every_s``); above ``max_sessions`` stored sessions the least recently used
browser sessions are evicted first.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

#: Bump when the schema changes: an older state file is dropped (it holds only ephemeral sessions).
SCHEMA_VERSION = 3
_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY, created REAL NOT NULL, last_seen REAL NOT NULL, owner TEXT NOT NULL, instruction TEXT);
CREATE INDEX IF NOT EXISTS sessions_seen ON sessions(last_seen);
CREATE TABLE IF NOT EXISTS join_tokens (token TEXT PRIMARY KEY, sid TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cart_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT NOT NULL REFERENCES sessions(sid),
    product_id TEXT NOT NULL, options TEXT NOT NULL, quantity INTEGER NOT NULL, unit_price REAL NOT NULL);
CREATE INDEX IF NOT EXISTS cart_sid ON cart_items(sid);
CREATE TABLE IF NOT EXISTS orders (
    oid INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, sid TEXT NOT NULL REFERENCES sessions(sid),
    placed_at REAL NOT NULL, shipping TEXT NOT NULL, total REAL NOT NULL, UNIQUE (sid, order_id));
CREATE TABLE IF NOT EXISTS order_items (
    oid INTEGER NOT NULL REFERENCES orders(oid), product_id TEXT NOT NULL, options TEXT NOT NULL,
    quantity INTEGER NOT NULL, unit_price REAL NOT NULL);
CREATE INDEX IF NOT EXISTS order_items_oid ON order_items(oid);
"""
_TABLES = ("order_items", "orders", "cart_items", "join_tokens", "sessions")
DEFAULT_TTL_S = 3600.0
DEFAULT_MAX_SESSIONS = 10_000
JOIN_TOKEN_TTL_S = 120.0


def new_sid() -> str:
    """A fresh, unguessable session id (not stored until the session writes something)."""
    return secrets.token_urlsafe(18)


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
        ttl_s: A session idle (no request, no grader call) this long is expired.
        max_sessions: Stored sessions above this are evicted, browser-made ones first.
        sweep_every_s: Expired sessions are deleted at most this often (on a write or a request).
        clock: Seconds since the epoch; tests pass a fake one instead of sleeping.
    """

    def __init__(self, path: str | Path, *, ttl_s: float = DEFAULT_TTL_S, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 sweep_every_s: float = 60.0, clock: Callable[[], float] = time.time):
        if ttl_s <= 0 or max_sessions < 1:
            raise ValueError(f"ttl_s must be > 0 and max_sessions >= 1, got {ttl_s}, {max_sessions}")
        self.path = str(path)
        self.ttl_s, self.max_sessions, self.sweep_every_s, self.clock = ttl_s, max_sessions, sweep_every_s, clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self._conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            for table in _TABLES:
                self._conn.execute(f"DROP TABLE IF EXISTS {table}")
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._conn.executescript(_SCHEMA)
        self._last_sweep = self.clock()

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

    @staticmethod
    def _purge(c: sqlite3.Connection, sids: Iterable[str]) -> int:
        sids = [(s,) for s in sids]
        c.executemany("DELETE FROM order_items WHERE oid IN (SELECT oid FROM orders WHERE sid=?)", sids)
        for table in ("orders", "cart_items", "join_tokens", "sessions"):
            c.executemany(f"DELETE FROM {table} WHERE sid=?", sids)
        return len(sids)

    # --- sessions ---
    def create_session(self, instruction: str | None = None, *, owner: str = "env") -> str:
        """Store a new, empty session and return its id."""
        sid, now = new_sid(), self.clock()
        self._tx(lambda c: c.execute("INSERT INTO sessions VALUES (?,?,?,?,?)", (sid, now, now, owner, instruction)))
        self._bound()
        return sid

    def ensure_session(self, sid: str) -> None:
        """Store browser session ``sid`` if it is not stored (an expired one starts over, empty)."""
        now = self.clock()

        def fn(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT last_seen FROM sessions WHERE sid=?", (sid,)).fetchone()
            if row and row[0] >= now - self.ttl_s:
                return False
            if row:
                self._purge(c, [sid])
            c.execute("INSERT INTO sessions VALUES (?,?,?,?,?)", (sid, now, now, "browser", None))
            return True

        if self._tx(fn):
            self._bound()

    def has_session(self, sid: str) -> bool:
        """Whether ``sid`` names a stored session that has not expired."""
        return bool(self._read("SELECT 1 FROM sessions WHERE sid=? AND last_seen>=?",
                               (sid, self.clock() - self.ttl_s)))

    def owner(self, sid: str) -> str | None:
        """Who created the live session ``sid`` ("env" or "browser"), None if there is none."""
        rows = self._read("SELECT owner FROM sessions WHERE sid=? AND last_seen>=?", (sid, self.clock() - self.ttl_s))
        return rows[0][0] if rows else None

    def touch(self, sid: str) -> bool:
        """Mark a live session as used now; an expired one is deleted at once. Whether it is live."""
        now = self.clock()

        def fn(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT last_seen FROM sessions WHERE sid=?", (sid,)).fetchone()
            if row is None:
                return False
            if row[0] < now - self.ttl_s:
                self._purge(c, [sid])  # expired: nothing of it may be shown again
                return False
            c.execute("UPDATE sessions SET last_seen=? WHERE sid=?", (now, sid))
            return True

        return self._tx(fn)

    def count(self) -> int:
        """How many sessions are stored (expired ones until the next sweep included)."""
        return self._read("SELECT COUNT(*) FROM sessions")[0][0]

    def sweep(self) -> int:
        """Delete every expired session with its cart, orders and join tokens; returns how many."""
        now = self.clock()
        self._last_sweep = now

        def fn(c: sqlite3.Connection) -> int:
            c.execute("DELETE FROM join_tokens WHERE expires<?", (now,))
            old = [r[0] for r in c.execute("SELECT sid FROM sessions WHERE last_seen<?", (now - self.ttl_s,))]
            return self._purge(c, old)

        return self._tx(fn)

    def maybe_sweep(self) -> None:
        """Sweep if the last sweep is ``sweep_every_s`` old (cheap to call on every request)."""
        if self.clock() - self._last_sweep >= self.sweep_every_s:
            self.sweep()

    def _bound(self) -> None:
        self.maybe_sweep()
        if self.count() <= self.max_sessions:
            return
        self.sweep()

        def fn(c: sqlite3.Connection) -> int:
            extra = c.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] - self.max_sessions
            if extra <= 0:
                return 0
            victims = [r[0] for r in c.execute(
                "SELECT sid FROM sessions WHERE owner='browser' ORDER BY last_seen, created LIMIT ?", (extra,))]
            return self._purge(c, victims)

        self._tx(fn)

    def issue_join_token(self, sid: str) -> str:
        """A single-use token that lets a browser join ``sid`` within ``JOIN_TOKEN_TTL_S`` seconds."""
        token, expires = secrets.token_urlsafe(24), self.clock() + JOIN_TOKEN_TTL_S
        self._tx(lambda c: c.execute("INSERT INTO join_tokens VALUES (?,?,?)", (token, sid, expires)))
        return token

    def redeem_join_token(self, token: str) -> str | None:
        """The session a join token names, consuming it; None if unknown, used or expired."""
        now = self.clock()

        def fn(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT sid, expires FROM join_tokens WHERE token=?", (token,)).fetchone()
            if row is None:
                return None
            c.execute("DELETE FROM join_tokens WHERE token=?", (token,))
            return row[0] if row[1] >= now else None

        sid = self._tx(fn)
        return sid if sid is not None and self.has_session(sid) else None

    def instruction(self, sid: str) -> str | None:
        """The instruction attached to the session, if any."""
        rows = self._read("SELECT instruction FROM sessions WHERE sid=? AND last_seen>=?",
                          (sid, self.clock() - self.ttl_s))
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
        self.ensure_session(sid)

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
            # Numbered within the session (R10001, R10002, ...): an episode replays to the same pages, and
            # another session's order of the same number is invisible (every lookup filters on the sid).
            n = c.execute("SELECT COUNT(*) FROM orders WHERE sid=?", (sid,)).fetchone()[0]
            order_id = f"R{10001 + n}"
            total = round(sum(q * p for _, _, q, p in lines), 2)
            cur = c.execute("INSERT INTO orders (order_id, sid, placed_at, shipping, total) VALUES (?,?,?,?,?)",
                            (order_id, sid, self.clock(), json.dumps(shipping), total))
            c.executemany("INSERT INTO order_items VALUES (?,?,?,?,?)", [(cur.lastrowid, *line) for line in lines])
            c.execute("DELETE FROM cart_items WHERE sid=?", (sid,))
            return order_id
        return self._tx(fn)

    def orders(self, sid: str) -> list[StoredOrder]:
        """The session's orders, oldest first."""
        heads = self._read("SELECT oid, order_id, placed_at, shipping, total FROM orders WHERE sid=?"
                           " ORDER BY oid", (sid,))
        return [self._order(*h) for h in heads]

    def order(self, sid: str, order_id: str) -> StoredOrder | None:
        """One order, only if it belongs to ``sid`` (another session's order is None)."""
        heads = self._read("SELECT oid, order_id, placed_at, shipping, total FROM orders WHERE sid=? AND order_id=?",
                           (sid, order_id))
        return self._order(*heads[0]) if heads else None

    def _order(self, oid: int, order_id: str, placed_at: float, shipping: str, total: float) -> StoredOrder:
        rows = self._read("SELECT rowid, product_id, options, quantity, unit_price FROM order_items"
                          " WHERE oid=? ORDER BY rowid", (oid,))
        lines = [StoredLine(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]
        return StoredOrder(order_id, placed_at, json.loads(shipping), total, lines)
