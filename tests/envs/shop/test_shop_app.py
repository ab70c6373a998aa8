import re

import pytest
from shop_helpers import SECRET, new_browser

from rowgym.envs.shop.catalog import generate_products
from rowgym.envs.shop.models import SessionReport

ALERT = re.compile(r'role="alert">([^<]+)')


def product_links(html: str) -> list[str]:
    return re.findall(r'href="/product/(P\d+)"', html)


def with_options(min_groups: int = 2):
    return next(p for p in generate_products() if len(p.options) >= min_groups)


async def test_home_has_search_and_categories(browser):
    r = await browser.get("/")
    assert r.status_code == 200
    assert 'label for="home-q">Search products<' in r.text
    assert r.text.count(">Search</button>") == 1  # one search form: one unambiguous button
    assert 'href="/search?category=t-shirts"' in r.text
    assert "shop_session" in r.cookies


async def test_search_pagination_and_filters(browser):
    r1 = await browser.get("/search", params={"q": "cotton t-shirt"})
    page1 = product_links(r1.text)
    assert len(page1) == 10 and "Next page" in r1.text and "Previous page" not in r1.text
    r2 = await browser.get("/search", params={"q": "cotton t-shirt", "page": 2})
    page2 = product_links(r2.text)
    assert page2 and not set(page1) & set(page2) and "Previous page" in r2.text
    by_id = {p.id: p for p in generate_products()}
    rf = await browser.get("/search", params={"q": "cotton", "category": "t-shirts", "max_price": "20"})
    hits = product_links(rf.text)
    assert hits and all(by_id[h].category == "t-shirts" and by_id[h].price <= 20 for h in hits)
    bad = await browser.get("/search", params={"q": "x", "max_price": "cheap"})
    assert bad.status_code == 200 and "not a number" in bad.text


async def test_product_page_has_labelled_options(browser):
    p = with_options()
    r = await browser.get(f"/product/{p.id}")
    assert r.status_code == 200 and p.title.replace("'", "&#39;") in r.text
    for name, values in p.options.items():
        assert f"<legend>{name.capitalize()}</legend>" in r.text
        assert f'name="{name}" value="{values[0]}"' in r.text
    assert ">Add to cart</button>" in r.text and 'label for="qty"' in r.text
    assert (await browser.get("/product/NOPE")).status_code == 404


async def test_add_requires_every_option(browser):
    p = with_options()
    r = await browser.post("/cart/add", data={"product_id": p.id})
    assert r.status_code == 422
    assert any("Please choose" in m for m in ALERT.findall(r.text))
    wrong = {n: "no-such-value" for n in p.options}
    r = await browser.post("/cart/add", data={"product_id": p.id, **wrong})
    assert r.status_code == 422 and "not an available" in r.text
    r = await browser.post("/cart/add", data={"product_id": p.id, "bogus": "1",
                                              **{n: v[0] for n, v in p.options.items()}})
    assert r.status_code == 400  # extra form field: forbidden by the pydantic model


async def test_full_purchase_flow(browser, app):
    p = with_options()
    chosen = {n: v[-1] for n, v in p.options.items()}
    r = await browser.post("/cart/add", data={"product_id": p.id, "quantity": "2", **chosen})
    assert r.status_code == 303 and r.headers["location"] == "/cart"
    cart = await browser.get("/cart")
    assert p.id in cart.text and "Proceed to checkout" in cart.text and "Cart (2)" in cart.text
    r = await browser.post("/checkout", data={"full_name": "Ada", "address": "1 Loop St", "city": "Oslo",
                                              "postcode": ""})
    assert r.status_code == 422 and "Postcode is required." in ALERT.findall(r.text)
    r = await browser.post("/checkout", data={"full_name": "Ada", "address": "1 Loop St", "city": "Oslo",
                                              "postcode": "0150"})
    assert r.status_code == 303
    conf = await browser.get(r.headers["location"])
    assert "Thank you for your order" in conf.text and p.id in conf.text
    assert "Cart (0)" in conf.text
    sid = browser.cookies["shop_session"].rsplit(".", 1)[0]  # the cookie is <sid>.<MAC>
    rep = await browser.get(f"/_grader/session/{sid}", headers={"X-Grader-Secret": SECRET})
    report = SessionReport.model_validate(rep.json())
    [line] = report.purchased()
    assert (line.product_id, line.options, line.quantity, line.unit_price) == (p.id, chosen, 2, p.price)
    assert report.cart == [] and report.orders[0].shipping.city == "Oslo"
    assert report.orders[0].total == round(2 * p.price, 2)


async def test_cart_remove_and_empty_checkout(browser):
    p = next(p for p in generate_products() if not p.options)
    await browser.post("/cart/add", data={"product_id": p.id})
    cart = await browser.get("/cart")
    item_id = re.search(r'name="item_id" value="(\d+)"', cart.text).group(1)
    await browser.post("/cart/remove", data={"item_id": item_id})
    assert "Your cart is empty" in (await browser.get("/cart")).text
    r = await browser.post("/checkout", data={"full_name": "A", "address": "B", "city": "C", "postcode": "D"})
    assert r.status_code == 422 and "cart is empty" in r.text


async def test_grader_requires_secret(browser, app):
    await browser.get("/")
    sid = browser.cookies["shop_session"].rsplit(".", 1)[0]
    # browsing stores nothing: the session exists for the grader once it has written something
    assert (await browser.get(f"/_grader/session/{sid}", headers={"X-Grader-Secret": SECRET})).status_code == 404
    p = next(p for p in generate_products() if not p.options)
    assert (await browser.post("/cart/add", data={"product_id": p.id})).status_code == 303
    assert (await browser.get(f"/_grader/session/{sid}")).status_code == 403
    assert (await browser.get(f"/_grader/session/{sid}", headers={"X-Grader-Secret": "nope"})).status_code == 403
    assert (await browser.post("/_grader/sessions", json={})).status_code == 403
    ok = await browser.get(f"/_grader/session/{sid}", headers={"X-Grader-Secret": SECRET})
    assert ok.status_code == 200
    assert (await browser.get("/_grader/session/unknown", headers={"X-Grader-Secret": SECRET})).status_code == 404


async def test_empty_secret_disables_grader(tmp_path):
    from rowgym.envs.shop.app import create_app

    app = create_app(secret="", state_path=tmp_path / "s.sqlite")
    async with new_browser(app) as c:
        assert (await c.post("/_grader/sessions", json={}, headers={"X-Grader-Secret": ""})).status_code == 403


async def test_env_created_session_and_instruction_banner(app):
    async with new_browser(app) as env_side, new_browser(app) as browser:
        r = await env_side.post("/_grader/sessions", json={"instruction": "buy red socks"},
                                headers={"X-Grader-Secret": SECRET})
        created = r.json()
        r = await browser.get(created["start_path"])
        assert r.status_code == 303 and browser.cookies["shop_session"] == created["cookie"]
        assert created["cookie"].startswith(created["sid"] + ".")  # <sid>.<MAC>: signed by the server
        home = await browser.get("/")
        assert "buy red socks" in home.text
        async with new_browser(app) as late:  # the join link is single-use
            assert (await late.get(created["start_path"])).status_code == 404
        assert (await browser.get("/session/join", params={"token": "forged"})).status_code == 404
        bad = await env_side.post("/_grader/sessions", json={"instruction": "x", "extra": 1},
                                  headers={"X-Grader-Secret": SECRET})
        assert bad.status_code == 422  # extra="forbid" at the boundary


async def test_orders_of_other_sessions_are_invisible(app):
    p = next(p for p in generate_products() if not p.options)
    async with new_browser(app) as a, new_browser(app) as b:
        await a.post("/cart/add", data={"product_id": p.id})
        r = await a.post("/checkout", data={"full_name": "A", "address": "B", "city": "C", "postcode": "D"})
        order_path = r.headers["location"]
        assert (await a.get(order_path)).status_code == 200
        assert (await b.get(order_path)).status_code == 404
        assert "not placed any orders" in (await b.get("/orders")).text


@pytest.mark.parametrize("path", ["/healthz"])
async def test_health(browser, path):
    body = (await browser.get(path)).json()
    assert body["app"] == "rowgym-shop" and body["products"] >= 2000
