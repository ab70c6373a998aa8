"""Pydantic models at the shop's HTTP boundaries (forms in, grader JSON out).

>>> from rowgym.envs.shop.models import OrderLine
>>> line = OrderLine(product_id="P00001", title="T", category="t-shirts", department="clothing",
...                  attributes=["cotton"], options={"size": "L"}, unit_price=9.99, quantity=1)
>>> OrderLine.model_validate_json(line.model_dump_json()) == line
True

Every model forbids unknown fields: a misspelt form field or grader key is an error
(HTTP 422), never silently dropped.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddToCartForm(_Model):
    """The product page's form. One optional field per option group in ``OPTION_NAMES``."""

    product_id: str = Field(max_length=16)
    quantity: int = Field(default=1, ge=1, le=99)
    size: str | None = None
    colour: str | None = None
    capacity: str | None = None
    length: str | None = None
    scent: str | None = None
    model: str | None = None


class RemoveFromCartForm(_Model):
    """The cart page's per-line "Remove" button."""

    item_id: int


class Shipping(_Model):
    """The checkout form: where the order goes."""

    full_name: str = Field(min_length=1, max_length=120)
    address: str = Field(min_length=1, max_length=200)
    city: str = Field(min_length=1, max_length=80)
    postcode: str = Field(min_length=1, max_length=20)


class OrderLine(_Model):
    """One purchased (or carted) product as the backend recorded it.

    ``attributes`` are the product's attribute values and features, copied from the
    catalogue, so a grader can score a purchase from this JSON alone.
    """

    product_id: str
    title: str
    category: str
    department: str
    attributes: list[str]
    options: dict[str, str]
    unit_price: float
    quantity: int


class Order(_Model):
    """A placed order."""

    order_id: str
    placed_at: float
    lines: list[OrderLine]
    total: float
    shipping: Shipping


class SessionReport(_Model):
    """What ``GET /_grader/session/{sid}`` returns: the session's cart and orders."""

    sid: str
    instruction: str | None = None
    cart: list[OrderLine]
    orders: list[Order]

    def purchased(self) -> list[OrderLine]:
        """Every line of every placed order (the cart does not count as bought)."""
        return [line for order in self.orders for line in order.lines]


class CreateSession(_Model):
    """Body of ``POST /_grader/sessions``: an optional instruction shown on every page."""

    instruction: str | None = Field(default=None, max_length=1000)
    join_link: bool = Field(default=True, description="Also issue a single-use /session/join link.")


class SessionCreated(_Model):
    """Answer to ``POST /_grader/sessions``.

    A browser joins the session either by getting ``cookie_name=cookie`` set (Playwright's
    ``add_cookies``; the agent's browser never sees a join URL) or by opening ``start_path``
    once (a single-use token, valid for two minutes; None unless ``join_link`` was asked).
    """

    sid: str
    cookie_name: str
    cookie: str
    start_path: str | None = None


class Health(_Model):
    """Answer to ``GET /healthz``; ``app`` lets a caller tell our shop from another server on the port."""

    app: str = "rowgym-shop"
    ok: bool = True
    catalog_version: int
    products: int
    code: str = ""
    """Hash of the shop's source files: ``make env-up`` restarts a server that runs older code."""
