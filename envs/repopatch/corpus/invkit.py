"""Corpus repo ``invkit``: an inventory and shopping cart (fixed code, hidden tests, injected bugs)."""

NAME = "invkit"

FILES = {
    "invkit/__init__.py": "",
    "invkit/inventory.py": '''\
class OutOfStock(Exception):
    pass


class Inventory:
    def __init__(self):
        self.stock = {}

    def add(self, sku, qty=1):
        if qty <= 0:
            raise ValueError("qty must be positive")
        self.stock[sku] = self.stock.get(sku, 0) + qty

    def remove(self, sku, qty=1):
        have = self.stock.get(sku, 0)
        if qty > have:
            raise OutOfStock(sku)
        if have == qty:
            del self.stock[sku]
        else:
            self.stock[sku] = have - qty

    def low_stock(self, threshold=2):
        return sorted(s for s, q in self.stock.items() if q <= threshold)
''',
    "invkit/cart.py": '''\
class Cart:
    def __init__(self, prices):
        self.prices = prices
        self.lines = {}

    def add(self, sku, qty=1):
        self.lines[sku] = self.lines.get(sku, 0) + qty

    def subtotal(self):
        return sum(self.prices[s] * q for s, q in self.lines.items())

    def total(self, discount_pct=0, shipping=5.0, free_over=50.0):
        sub = self.subtotal()
        sub = sub - sub * discount_pct / 100
        if sub >= free_over:
            shipping = 0.0
        return round(sub + shipping, 2)


def bulk_price(unit, qty, tiers=((10, 0.9), (50, 0.8))):
    factor = 1.0
    for min_qty, f in tiers:
        if qty >= min_qty:
            factor = f
    return round(unit * qty * factor, 2)
''',
    "tests/test_basic.py": '''\
from invkit.cart import Cart
from invkit.inventory import Inventory


def test_add_stock():
    inv = Inventory()
    inv.add("a", 3)
    assert inv.stock == {"a": 3}


def test_subtotal():
    c = Cart({"a": 2.0})
    c.add("a", 2)
    assert c.subtotal() == 4.0
''',
}

HIDDEN = {
    "tests/test_invkit_hidden.py": '''\
import pytest
from invkit.cart import Cart, bulk_price
from invkit.inventory import Inventory, OutOfStock


def test_add_rejects_zero():
    with pytest.raises(ValueError):
        Inventory().add("a", 0)


def test_add_twice():
    inv = Inventory()
    inv.add("a", 2)
    inv.add("a", 3)
    assert inv.stock["a"] == 5


def test_remove_all_deletes():
    inv = Inventory()
    inv.add("a", 2)
    inv.remove("a", 2)
    assert "a" not in inv.stock


def test_remove_partial():
    inv = Inventory()
    inv.add("a", 5)
    inv.remove("a", 2)
    assert inv.stock["a"] == 3


def test_remove_too_many():
    inv = Inventory()
    inv.add("a", 1)
    with pytest.raises(OutOfStock):
        inv.remove("a", 2)


def test_low_stock():
    inv = Inventory()
    for sku, q in (("b", 2), ("a", 1), ("c", 3)):
        inv.add(sku, q)
    assert inv.low_stock() == ["a", "b"]


def test_total_shipping():
    c = Cart({"a": 10.0})
    c.add("a")
    assert c.total() == 15.0


def test_total_free_shipping_boundary():
    c = Cart({"a": 25.0})
    c.add("a", 2)
    assert c.total() == 50.0


def test_total_discount():
    c = Cart({"a": 200.0})
    c.add("a")
    assert c.total(discount_pct=10) == 180.0


def test_bulk_tiers():
    assert (bulk_price(1.0, 5), bulk_price(1.0, 10), bulk_price(1.0, 60)) == (5.0, 9.0, 48.0)
''',
}

BUGS = [
    ("add-positive", "invkit/inventory.py", "Inventory.add", 'if qty <= 0:', 'if qty < 0:',
     "Inventory.add accepts a quantity of zero instead of raising ValueError."),
    ("add-accumulate", "invkit/inventory.py", "Inventory.add", 'self.stock[sku] = self.stock.get(sku, 0) + qty',
     'self.stock[sku] = qty', "Adding stock for a SKU that is already stocked replaces the quantity instead of adding to it."),
    ("remove-delete", "invkit/inventory.py", "Inventory.remove", 'if have == qty:', 'if have == qty + 1:',
     "After removing all units of a SKU it stays in the inventory with quantity 0."),
    ("remove-check", "invkit/inventory.py", "Inventory.remove", 'if qty > have:', 'if qty > have + 1:',
     "Inventory.remove lets you remove one more unit than is in stock, leaving a negative quantity."),
    ("low-stock-threshold", "invkit/inventory.py", "Inventory.low_stock", 'if q <= threshold', 'if q < threshold',
     "low_stock leaves out SKUs whose quantity equals the threshold."),
    ("free-shipping", "invkit/cart.py", "Cart.total", 'if sub >= free_over:', 'if sub > free_over:',
     "Orders of exactly the free-shipping amount are still charged shipping."),
    ("discount", "invkit/cart.py", "Cart.total", 'sub = sub - sub * discount_pct / 100', 'sub = sub - discount_pct',
     "Cart.total treats the discount percentage as an absolute amount of money."),
    ("bulk-tier", "invkit/cart.py", "bulk_price", 'if qty >= min_qty:', 'if qty > min_qty:',
     "bulk_price does not give the tier discount when the quantity equals the tier's minimum."),
]
