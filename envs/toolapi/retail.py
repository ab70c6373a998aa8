"""Retail customer service: users, orders, returns and exchanges over SQLite.

>>> import rowgym
>>> env = rowgym.make("rowgym/ToolAPI-Retail-v0")
>>> obs, info = env.reset(seed=7)
>>> len(env.tools) >= 10
True
>>> env.close()

Every seed builds its own small store (a dozen customers, ten products with
variants, orders in every status) and one task over it, of one of seven kinds:
cancel a pending order, change an order's address, swap a pending item, return or
exchange delivered items, change the user's address, or answer what an order cost.
"""

from __future__ import annotations

import json
import random
from typing import Literal

from pydantic import Field

from rowgym.envs.toolapi import names
from rowgym.envs.toolapi.base import ToolAPIEnv, ToolAPITask, call, dumps, fresh_id
from rowgym.tools import NoArgs, ToolArgs, ToolError, tool

SCHEMA = """
CREATE TABLE users (user_id TEXT PRIMARY KEY, first TEXT, last TEXT, email TEXT, address1 TEXT, city TEXT,
                    state TEXT, zip TEXT);
CREATE TABLE payments (payment_id TEXT PRIMARY KEY, user_id TEXT, kind TEXT, last4 TEXT);
CREATE TABLE products (product_id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE items (item_id TEXT PRIMARY KEY, product_id TEXT, options TEXT, price REAL, available INTEGER);
CREATE TABLE orders (order_id TEXT PRIMARY KEY, user_id TEXT, status TEXT, address1 TEXT, city TEXT, state TEXT,
                     zip TEXT, payment_id TEXT, note TEXT);
CREATE TABLE order_items (order_id TEXT, item_id TEXT, price REAL, status TEXT, new_item_id TEXT);
"""

KINDS = ["cancel", "order_address", "modify_item", "return", "exchange", "user_address", "order_total"]


class EmailArgs(ToolArgs):
    email: str = Field(description="The user's email address.")


class NameZipArgs(ToolArgs):
    first_name: str
    last_name: str
    zip: str = Field(description="The 5-digit zip code of the user's address.")


class UserArgs(ToolArgs):
    user_id: str


class OrderArgs(ToolArgs):
    order_id: str = Field(description="The order id, including the leading '#', e.g. '#W1234567'.")


class ProductArgs(ToolArgs):
    product_id: str


class CancelArgs(OrderArgs):
    reason: Literal["no longer needed", "ordered by mistake"]


class AddressArgs(ToolArgs):
    address1: str
    city: str
    state: str
    zip: str


class OrderAddressArgs(AddressArgs, OrderArgs):
    pass


class UserAddressArgs(AddressArgs, UserArgs):
    pass


class ItemsArgs(OrderArgs):
    item_ids: list[str] = Field(description="Item ids in the order to act on.")


class SwapItemsArgs(ItemsArgs):
    new_item_ids: list[str] = Field(description="Replacement item ids (same product, other options), in order.")


class RetailEnv(ToolAPIEnv):
    """Retail customer-service domain (tau-bench style)."""

    family = "toolapi-retail"
    version = "0"
    schema = SCHEMA
    system_prompt = ("You are a retail customer-service agent. Authenticate the user (by email, or by name "
                     "and zip), look up what you need with the tools, make exactly the change the user asks "
                     "for, then call finish (with the answer, if the user asked a question).")

    # ------------------------------------------------------------ the world
    def build_world(self, rng: random.Random) -> dict[str, list[tuple]]:
        users, payments, products, items, orders, order_items = [], [], [], [], [], []
        by_product: dict[str, list[tuple]] = {}
        product_ids: set[str] = set()  # primary keys drawn at random: fresh_id redraws a repeat within a table
        item_ids: set[str] = set()
        pay_ids: set[str] = set()
        order_ids: set[str] = set()
        for name, opts in names.PRODUCTS.items():
            pid = fresh_id(lambda: str(rng.randrange(10**9, 10**10)), product_ids)
            products.append((pid, name))
            combos = [{}]
            for key, values in opts.items():
                combos = [{**c, key: v} for c in combos for v in values]
            base = rng.uniform(15, 180)
            for combo in rng.sample(combos, min(len(combos), rng.randint(4, 7))):
                row = (fresh_id(lambda: str(rng.randrange(10**9, 10**10)), item_ids), pid, json.dumps(combo, sort_keys=True),
                       round(base * rng.uniform(0.9, 1.1), 2), int(rng.random() < 0.85))
                items.append(row)
                by_product.setdefault(pid, []).append(row)
        used_names: set[tuple[str, str]] = set()
        for _ in range(12):
            first, last = rng.choice(names.FIRST), rng.choice(names.LAST)
            while (first, last) in used_names:
                first, last = rng.choice(names.FIRST), rng.choice(names.LAST)
            used_names.add((first, last))
            uid = f"{first.lower()}_{last.lower()}_{rng.randrange(1000, 9999)}"
            city, state = rng.choice(names.CITIES)
            addr = (f"{rng.randrange(10, 999)} {rng.choice(names.STREETS)}", city, state, str(rng.randrange(10000, 99999)))
            users.append((uid, first, last, f"{first.lower()}.{last.lower()}{rng.randrange(10, 99)}@example.com", *addr))
            pays = []
            for kind in rng.sample(["credit_card", "paypal", "gift_card"], rng.randint(1, 2)):
                pays.append((fresh_id(lambda k=kind: f"{k}_{rng.randrange(10**6, 10**7)}", pay_ids), uid, kind,
                             str(rng.randrange(1000, 9999))))
            payments += pays
            for status in rng.sample(["pending", "pending", "processed", "delivered", "delivered", "cancelled"],
                                     rng.randint(2, 4)):
                oid = fresh_id(lambda: f"#W{rng.randrange(10**6, 10**7)}", order_ids)
                orders.append((oid, uid, status, *addr, rng.choice(pays)[0], ""))
                for row in rng.sample(items, rng.randint(1, 3)):
                    order_items.append((oid, row[0], row[3], "ordered", None))
        return {"users": users, "payments": payments, "products": products, "items": items,
                "orders": orders, "order_items": order_items}

    # ------------------------------------------------------------- the tasks
    def make_task(self, seed: int) -> ToolAPITask:
        rng = random.Random(f"{self.family}:task:{seed}")
        db = self._new_db(seed)
        try:
            return self._task_from_world(seed, rng, db)
        finally:
            db.close()

    def _task_from_world(self, seed: int, rng: random.Random, db) -> ToolAPITask:
        q = lambda sql, *p: db.execute(sql, p).fetchall()  # noqa: E731
        kind = rng.choice(KINDS)
        want_status = {"cancel": "pending", "order_address": "pending", "modify_item": "pending",
                       "return": "delivered", "exchange": "delivered"}.get(kind)
        if want_status:
            order = rng.choice(q("SELECT order_id, user_id FROM orders WHERE status=? ORDER BY order_id", want_status))
        else:
            order = rng.choice(q("SELECT order_id, user_id FROM orders ORDER BY order_id"))
        oid, uid = order
        first, last, email, zip_ = q("SELECT first, last, email, zip FROM users WHERE user_id=?", uid)[0]
        if rng.random() < 0.5:
            who, gold = f"My email is {email}.", [call("find_user_id_by_email", email=email)]
        else:
            who = f"My name is {first} {last} and my zip code is {zip_}."
            gold = [call("find_user_id_by_name_zip", first_name=first, last_name=last, zip=zip_)]
        gold.append(call("get_user_details", user_id=uid))
        lines = q("SELECT oi.item_id, p.name, i.options, oi.price, p.product_id FROM order_items oi "
                  "JOIN items i ON i.item_id = oi.item_id JOIN products p ON p.product_id = i.product_id "
                  "WHERE oi.order_id=? ORDER BY oi.item_id", oid)
        answer = None
        facts: dict = {"user_id": uid, "order_id": oid}
        if kind != "user_address":
            gold.append(call("get_order_details", order_id=oid))
        if kind == "cancel":
            reason = rng.choice(["no longer needed", "ordered by mistake"])
            ask = f"Please cancel my pending order {oid}; it was {reason}." if reason == "ordered by mistake" \
                else f"Please cancel my pending order {oid}, I no longer need it."
            gold.append(call("cancel_pending_order", order_id=oid, reason=reason))
        elif kind in ("order_address", "user_address"):
            city, state = rng.choice(names.CITIES)
            a1, z = f"{rng.randrange(10, 999)} {rng.choice(names.STREETS)}", str(rng.randrange(10000, 99999))
            where = f"{a1}, {city}, {state} {z}"
            if kind == "order_address":
                ask = f"I moved. Please ship my pending order {oid} to {where} instead."
                gold.append(call("modify_pending_order_address", order_id=oid, address1=a1, city=city, state=state, zip=z))
            else:
                ask = f"Please update the default address on my account to {where}."
                gold.append(call("modify_user_address", user_id=uid, address1=a1, city=city, state=state, zip=z))
        elif kind == "return":
            item_id, pname, opts, _, _ = rng.choice(lines)
            ask = f"I want to return the {pname} ({_describe(opts)}) from my delivered order {oid}."
            gold.append(call("return_delivered_order_items", order_id=oid, item_ids=[item_id]))
        elif kind in ("exchange", "modify_item"):
            options = []
            for item_id, pname, opts, _, pid in lines:
                alts = q("SELECT item_id, options FROM items WHERE product_id=? AND available=1 AND item_id<>? "
                         "ORDER BY item_id", pid, item_id)
                options += [(item_id, pname, opts, pid, a) for a in alts]
            if not options:  # nothing to swap to: fall back to a question about the order
                return self._total_task(seed, rng, oid, who, gold, lines, facts)
            item_id, pname, opts, pid, (new_id, new_opts) = rng.choice(options)
            gold.append(call("get_product_details", product_id=pid))
            verb = "exchange" if kind == "exchange" else "change"
            state = "delivered" if kind == "exchange" else "pending"
            ask = (f"In my {state} order {oid}, I'd like to {verb} the {pname} ({_describe(opts)}) "
                   f"for the one with {_describe(new_opts)}.")
            tool_name = "exchange_delivered_order_items" if kind == "exchange" else "modify_pending_order_items"
            gold.append(call(tool_name, order_id=oid, item_ids=[item_id], new_item_ids=[new_id]))
        else:
            return self._total_task(seed, rng, oid, who, gold, lines, facts)
        gold.append(call("finish", answer=""))
        return ToolAPITask(domain="retail", kind=kind, seed=seed, instruction=f"{who} {ask}", gold=gold,
                           answer=answer, facts=facts)

    def _total_task(self, seed, rng, oid, who, gold, lines, facts) -> ToolAPITask:
        prices = [f"{line[3]:.2f}" for line in lines]
        total = f"{round(sum(float(p) for p in prices), 2):.2f}"
        gold.append(call("calculate", expression=" + ".join(prices)))
        gold.append(call("finish", answer=total))
        ask = f"How much did I pay in total for the items in order {oid}? Just tell me the amount."
        return ToolAPITask(domain="retail", kind="order_total", seed=seed, instruction=f"{who} {ask}",
                           gold=gold, answer=total, facts=facts)

    # ------------------------------------------------------------- the tools
    @tool
    async def find_user_id_by_email(self, args: EmailArgs) -> str:
        """Find a user's id from their email address."""
        row = self.one("SELECT user_id FROM users WHERE lower(email)=lower(?)", args.email, missing="user not found")
        self.progress("find_user_id_by_email", args)
        return row["user_id"]

    @tool
    async def find_user_id_by_name_zip(self, args: NameZipArgs) -> str:
        """Find a user's id from their first name, last name and zip code."""
        row = self.one("SELECT user_id FROM users WHERE lower(first)=lower(?) AND lower(last)=lower(?) AND zip=?",
                       args.first_name, args.last_name, args.zip, missing="user not found")
        self.progress("find_user_id_by_name_zip", args)
        return row["user_id"]

    @tool
    async def get_user_details(self, args: UserArgs) -> str:
        """Get a user's name, address, payment methods and order ids."""
        u = self.one("SELECT * FROM users WHERE user_id=?", args.user_id, missing="user not found")
        pays = [dict(r) for r in self.query("SELECT payment_id, kind, last4 FROM payments WHERE user_id=?", args.user_id)]
        orders = [r["order_id"] for r in self.query("SELECT order_id FROM orders WHERE user_id=? ORDER BY order_id",
                                                    args.user_id)]
        self.progress("get_user_details", args)
        return dumps({**dict(u), "payment_methods": pays, "orders": orders})

    @tool
    async def get_order_details(self, args: OrderArgs) -> str:
        """Get an order's status, address, payment method and items (with item ids, options and prices)."""
        o = self.one("SELECT * FROM orders WHERE order_id=?", args.order_id, missing="order not found")
        items = [{**dict(r), "options": json.loads(r["options"])} for r in self.query(
            "SELECT oi.item_id, p.name, p.product_id, i.options, oi.price, oi.status FROM order_items oi "
            "JOIN items i ON i.item_id=oi.item_id JOIN products p ON p.product_id=i.product_id "
            "WHERE oi.order_id=? ORDER BY oi.item_id", args.order_id)]
        self.progress("get_order_details", args)
        return dumps({**dict(o), "items": items})

    @tool
    async def get_product_details(self, args: ProductArgs) -> str:
        """Get a product's variants: item id, options, price and availability."""
        p = self.one("SELECT * FROM products WHERE product_id=?", args.product_id, missing="product not found")
        variants = [{**dict(r), "options": json.loads(r["options"]), "available": bool(r["available"])}
                    for r in self.query("SELECT item_id, options, price, available FROM items WHERE product_id=? "
                                        "ORDER BY item_id", args.product_id)]
        self.progress("get_product_details", args)
        return dumps({**dict(p), "variants": variants})

    @tool
    async def list_products(self, args: NoArgs) -> str:
        """List every product's name and product id."""
        rows = self.query("SELECT product_id, name FROM products ORDER BY name")
        self.progress("list_products", args)
        return dumps([dict(r) for r in rows])

    def _order(self, order_id: str, status: str):
        o = self.one("SELECT * FROM orders WHERE order_id=?", order_id, missing="order not found")
        if o["status"] != status:
            raise ToolError(f"order {order_id} is {o['status']}, not {status}")
        return o

    def _order_items(self, order_id: str, item_ids: list[str]) -> None:
        have = [r["item_id"] for r in self.query("SELECT item_id FROM order_items WHERE order_id=? AND status='ordered'",
                                                 order_id)]
        if not item_ids:
            raise ToolError("item_ids is empty")
        for i in item_ids:
            if i not in have:
                raise ToolError(f"item {i} is not an open item of order {order_id}")

    @tool
    async def cancel_pending_order(self, args: CancelArgs) -> str:
        """Cancel a pending order. The reason must be 'no longer needed' or 'ordered by mistake'."""
        self._order(args.order_id, "pending")
        self.write("UPDATE orders SET status='cancelled', note=? WHERE order_id=?", args.reason, args.order_id)
        self.progress("cancel_pending_order", args)
        return f"Order {args.order_id} cancelled."

    @tool
    async def modify_pending_order_address(self, args: OrderAddressArgs) -> str:
        """Change the shipping address of a pending order."""
        self._order(args.order_id, "pending")
        self.write("UPDATE orders SET address1=?, city=?, state=?, zip=? WHERE order_id=?",
                   args.address1, args.city, args.state, args.zip, args.order_id)
        self.progress("modify_pending_order_address", args)
        return f"Shipping address of {args.order_id} updated."

    @tool
    async def modify_user_address(self, args: UserAddressArgs) -> str:
        """Change the default address on a user's account."""
        self.one("SELECT user_id FROM users WHERE user_id=?", args.user_id, missing="user not found")
        self.write("UPDATE users SET address1=?, city=?, state=?, zip=? WHERE user_id=?",
                   args.address1, args.city, args.state, args.zip, args.user_id)
        self.progress("modify_user_address", args)
        return f"Address of {args.user_id} updated."

    def _swap(self, args: SwapItemsArgs, status: str, new_status: str) -> None:
        self._order(args.order_id, status)
        self._order_items(args.order_id, args.item_ids)
        if len(args.new_item_ids) != len(args.item_ids):
            raise ToolError("new_item_ids must have one entry per item in item_ids")
        for old, new in zip(args.item_ids, args.new_item_ids, strict=True):
            a = self.one("SELECT product_id FROM items WHERE item_id=?", old, missing=f"item {old} not found")
            b = self.one("SELECT product_id, available, price FROM items WHERE item_id=?", new,
                         missing=f"item {new} not found")
            if a["product_id"] != b["product_id"] or old == new:
                raise ToolError(f"item {new} is not another variant of the same product as {old}")
            if not b["available"]:
                raise ToolError(f"item {new} is not available")
            if new_status == "ordered":
                self.write("UPDATE order_items SET item_id=?, price=? WHERE order_id=? AND item_id=?",
                           new, b["price"], args.order_id, old)
            else:
                self.write("UPDATE order_items SET status=?, new_item_id=? WHERE order_id=? AND item_id=?",
                           new_status, new, args.order_id, old)

    @tool
    async def modify_pending_order_items(self, args: SwapItemsArgs) -> str:
        """Swap items of a pending order for other available variants of the same products."""
        self._swap(args, "pending", "ordered")
        self.progress("modify_pending_order_items", args)
        return f"Items of {args.order_id} modified."

    @tool
    async def exchange_delivered_order_items(self, args: SwapItemsArgs) -> str:
        """Request an exchange of delivered items for other available variants of the same products."""
        self._swap(args, "delivered", "exchange_requested")
        self.progress("exchange_delivered_order_items", args)
        return f"Exchange requested for {len(args.item_ids)} item(s) of {args.order_id}."

    @tool
    async def return_delivered_order_items(self, args: ItemsArgs) -> str:
        """Request a return of delivered items; the refund goes to the order's payment method."""
        self._order(args.order_id, "delivered")
        self._order_items(args.order_id, args.item_ids)
        for i in args.item_ids:
            self.write("UPDATE order_items SET status='return_requested' WHERE order_id=? AND item_id=?",
                       args.order_id, i)
        self.progress("return_delivered_order_items", args)
        return f"Return requested for {len(args.item_ids)} item(s) of {args.order_id}."


def _describe(options_json: str) -> str:
    opts = json.loads(options_json)
    return ", ".join(f"{k} {v}" for k, v in sorted(opts.items())) or "no options"
