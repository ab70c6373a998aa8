"""Red team: the shop server's own boundary, without a browser (marker ``redteam``).

* Every spelling of a harness-only route, sent as raw HTTP to a real uvicorn server
  (raw sockets: an HTTP client would normalise ``..`` and encodings away), is refused
  without the grader secret, and never shows another session's cart or instruction.
* A known or guessed session id gives no access: not as a URL, not as a forged cookie.
* Cookieless requests store nothing; stored sessions are bounded; idle sessions expire
  (an injected clock, no sleeping) and are deleted with their carts and orders.
* Connection failures of the env's client are retried, and never fail with an empty reason.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from shop_fuzz import INTERNAL_PATHS
from shop_helpers import SECRET, new_browser

from rowgym.envs.shop.catalog import generate_products
from rowgym.envs.shop.client import ShopClient
from rowgym.envs.shop.errors import ShopServerError
from rowgym.envs.shop.instructions import all_goals
from rowgym.envs.shop.server import ensure_running, stop_background
from rowgym.errors import EnvError
from rowgym.launcher import free_port

pytestmark = pytest.mark.redteam
INSTRUCTION = "RED-TEAM-INSTRUCTION-A buy the blue kettle"
SIMPLE = next(p for p in generate_products() if not p.options)


async def raw_request(port: int, target: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, str]:
    """Send ``target`` byte for byte (no client-side normalisation); return status and the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
                 f"Content-Length: {len(body)}\r\n{head}\r\n".encode("latin-1") + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return int(data.split(b" ", 2)[1]), data.decode("latin-1")


@pytest.fixture(scope="module")
def server():
    port = free_port()
    url = ensure_running(port, secret=SECRET)
    yield url, port
    stop_background(port)


@pytest.fixture
async def victim(server):
    """Session A: created by the harness with an instruction, joined by a browser that carted a product."""
    url, _ = server
    async with ShopClient(url, secret=SECRET) as env, httpx.AsyncClient(base_url=url) as browser:
        created = await env.create_session(INSTRUCTION)
        assert (await browser.get(created.start_path)).status_code == 303
        assert (await browser.post("/cart/add", data={"product_id": SIMPLE.id})).status_code == 303
        report = await env.report(created.sid)
        assert report.instruction == INSTRUCTION and [ln.product_id for ln in report.cart] == [SIMPLE.id]
        yield created


def variants(sid: str) -> list[str]:
    """Harness-only targets in every spelling, aimed at session ``sid``."""
    out = [p.replace("session/x", f"session/{sid}").replace("sid=abc", f"sid={sid}") for p in INTERNAL_PATHS]
    out = [p.replace("\t", "%09") for p in out]  # a raw tab is not even a valid request line
    return out + [f"/_grader/session/{sid}", f"/%5Fgrader/session/{sid}", f"/%5F%67rader/session/{sid}",
                  f"/_grader/session/{sid}/", f"/_grader//session/{sid}", f"/_grader/./session/{sid}",
                  f"/x/..%2F_grader/session/{sid}", f"/%5C_grader/session/{sid}", f"/static/%2e%2e/_grader/session/{sid}",
                  f"/session/start?sid={sid}", f"/%73ession/start?sid={sid}", f"/%2573ession/start?sid={sid}",
                  f"/SeSsIoN/start?sid={sid}", f"/session/../session/start?sid={sid}",
                  f"http://127.0.0.1/_grader/session/{sid}"]  # absolute-form target


async def test_raw_http_variants_are_refused_without_the_secret(server, victim):
    _, port = server
    for target in variants(victim.sid):
        for method in ("GET", "POST", "HEAD"):
            # the join route is the one harness route open to browsers: it wants a valid single-use token
            allowed = (400, 403, 404, 405) if "join" in target.lower() else (400, 403)
            status, answer = await raw_request(port, target, method=method)
            assert status in allowed, (method, target, status, answer[:300])
            assert INSTRUCTION not in answer and SIMPLE.id not in answer and victim.sid not in answer.split("\r\n\r\n", 1)[-1]
            status, _ = await raw_request(port, target, method=method, headers={"X-Grader-Secret": "wrong"})
            assert status in allowed, (method, target, status)
    # and the secret-holder still gets through the canonical route
    status, answer = await raw_request(port, f"/_grader/session/{victim.sid}", headers={"X-Grader-Secret": SECRET})
    assert status == 200 and INSTRUCTION in answer


async def test_known_sid_gives_no_access_to_another_session(server, victim):
    url, _ = server
    sid = victim.sid
    async with httpx.AsyncClient(base_url=url) as attacker:
        await attacker.get("/")
        own = attacker.cookies["shop_session"]
        own_mac = own.rsplit(".", 1)[1]
        last = "B" if victim.cookie.endswith("A") else "A"  # a MAC one character off (never the real one)
        forged = [sid, f"{sid}.", f"{sid}.AAAA", f"{sid}.{own_mac}", victim.cookie.upper(), victim.cookie[:-1] + last,
                  victim.cookie.replace(".", ".."), " " + victim.cookie[1:]]
        forged = [v for v in forged if v != victim.cookie]  # upper() of a cookie without lowercase letters is itself
        assert len(forged) >= 7
        for value in forged:
            attacker.cookies.clear()
            attacker.cookies.set("shop_session", value)
            for page in ("/", "/cart", "/orders", "/checkout"):
                r = await attacker.get(page)
                assert INSTRUCTION not in r.text and SIMPLE.id not in r.text, (value, page)
        attacker.cookies.clear()
        for path in (f"/session/join?token={sid}", f"/session/join?token={victim.cookie}"):
            assert (await attacker.get(path)).status_code == 404
        assert (await attacker.get(victim.start_path)).status_code == 404  # the join link was single-use
    async with ShopClient(url, secret=SECRET) as env:  # the victim's session is untouched
        report = await env.report(sid)
        assert report.instruction == INSTRUCTION and len(report.cart) == 1 and report.orders == []


async def test_fifty_concurrent_sessions_never_fail_or_cross(server):
    """The env-side client at 50-way concurrency (httpx browsers; the Chromium version is too heavy for CI)."""
    url, _ = server
    goals = [g for g in all_goals() if not g.options][:50]

    async def one(i: int, goal) -> tuple[str, str]:
        async with ShopClient(url, secret=SECRET) as env, httpx.AsyncClient(base_url=url) as browser:
            created = await env.create_session(f"episode {i}: {goal.instruction}", join_link=False)
            browser.cookies.set(created.cookie_name, created.cookie)
            r = await browser.post("/cart/add", data={"product_id": goal.product_id})
            assert r.status_code == 303
            report = await env.report(created.sid)
            assert report.instruction.startswith(f"episode {i}:")
            return created.sid, report.cart[0].product_id

    results = await asyncio.gather(*(one(i, g) for i, g in enumerate(goals)))
    assert len({sid for sid, _ in results}) == 50
    assert [pid for _, pid in results] == [g.product_id for g in goals]


# ---------------------------------------------------------------- in-process app, fake clock
def make_app(tmp_path, now: list[float], **kw):
    from rowgym.envs.shop.app import create_app

    return create_app(secret=SECRET, state_path=tmp_path / "state.sqlite", clock=lambda: now[0], **kw)


def rows(app, table: str) -> int:
    return app.state.shop.state._read(f"SELECT COUNT(*) FROM {table}")[0][0]


async def test_cookieless_requests_store_nothing(tmp_path):
    app = make_app(tmp_path, [1000.0])
    async with new_browser(app) as c:
        for i in range(1000):
            c.cookies.clear()
            path = ("/", "/cart", "/orders", f"/search?q=mug{i}", f"/product/{SIMPLE.id}", "/checkout", "/nope")[i % 7]
            r = await c.get(path)
            assert r.status_code in (200, 404) and "shop_session" in r.cookies
    assert rows(app, "sessions") == 0


async def test_stored_sessions_are_bounded_and_env_sessions_survive(tmp_path):
    now = [1000.0]
    app = make_app(tmp_path, now, max_sessions=50)
    async with new_browser(app) as env, new_browser(app) as c:
        created = (await env.post("/_grader/sessions", json={"instruction": "keep me"},
                                  headers={"X-Grader-Secret": SECRET})).json()
        for _ in range(300):  # each a new cookieless browser that writes (so its session must be stored)
            now[0] += 0.01
            c.cookies.clear()
            assert (await c.post("/cart/add", data={"product_id": SIMPLE.id})).status_code == 303
        assert rows(app, "sessions") <= 50
        assert rows(app, "cart_items") <= 50  # evicted sessions take their carts with them
        r = await env.get(f"/_grader/session/{created['sid']}", headers={"X-Grader-Secret": SECRET})
        assert r.status_code == 200 and r.json()["instruction"] == "keep me"


async def test_idle_sessions_expire_with_their_data(tmp_path):
    now = [1000.0]
    app = make_app(tmp_path, now, session_ttl_s=100)
    grader = {"X-Grader-Secret": SECRET}
    async with new_browser(app) as env, new_browser(app) as browser:
        created = (await env.post("/_grader/sessions", json={"instruction": "expiring"}, headers=grader)).json()
        assert (await browser.get(created["start_path"])).status_code == 303
        assert (await browser.post("/cart/add", data={"product_id": SIMPLE.id})).status_code == 303
        r = await browser.post("/checkout", data={"full_name": "A", "address": "B", "city": "C", "postcode": "D"})
        order_path = r.headers["location"]
        assert (await browser.post("/cart/add", data={"product_id": SIMPLE.id})).status_code == 303
        for _ in range(3):  # activity keeps it alive well past one TTL
            now[0] += 60
            assert "expiring" in (await browser.get("/")).text
        now[0] += 101  # idle longer than the TTL
        assert (await env.get(f"/_grader/session/{created['sid']}", headers=grader)).status_code == 404
        page = await browser.get("/cart")
        assert "expiring" not in page.text and "Your cart is empty" in page.text
        assert (await browser.get(order_path)).status_code == 404
        assert rows(app, "sessions") == rows(app, "cart_items") == rows(app, "orders") == rows(app, "order_items") == 0


async def test_expired_sessions_are_swept_without_being_visited(tmp_path):
    now = [1000.0]
    app = make_app(tmp_path, now, session_ttl_s=100)
    async with new_browser(app) as env, new_browser(app) as other:
        for _ in range(20):
            await env.post("/_grader/sessions", json={}, headers={"X-Grader-Secret": SECRET})
        assert rows(app, "sessions") == 20
        now[0] += 101
        await other.get("/")  # any request runs the periodic sweep (at most once a minute)
        assert rows(app, "sessions") == 0


async def test_join_links_are_single_use_and_expire(tmp_path):
    now = [1000.0]
    app = make_app(tmp_path, now)
    async with new_browser(app) as env, new_browser(app) as browser:
        created = (await env.post("/_grader/sessions", json={}, headers={"X-Grader-Secret": SECRET})).json()
        now[0] += 121
        assert (await browser.get(created["start_path"])).status_code == 404
        quiet = (await env.post("/_grader/sessions", json={"join_link": False},
                                headers={"X-Grader-Secret": SECRET})).json()
        assert quiet["start_path"] is None and rows(app, "join_tokens") == 0


@pytest.mark.parametrize("page,shown", [("²", "1"), ("١", "1"), ("三", "1"), ("9" * 5000, "last"),
                                        ("0" * 5000 + "2", "2"), ("-1", "1"), ("+2", "1"), (" 2", "1"),
                                        ("2.0", "1"), ("", "1"), ("0", "1"), ("2", "2")])
async def test_any_page_number_an_agent_writes_is_a_page(tmp_path, page, shown):
    """``/search?page=`` is agent-written (``goto``): "²" passed ``str.isdigit`` and failed ``int`` (a 500)."""
    app = make_app(tmp_path, [1000.0])
    async with new_browser(app) as c:
        r = await c.get("/search", params={"q": "cotton t-shirt", "page": page})
    assert r.status_code == 200, (page, r.status_code)
    got = re.search(r"Page (\d+) of (\d+)", r.text)
    assert got and got.group(1) == (got.group(2) if shown == "last" else shown), (page[:10], got)


async def test_server_guard_refuses_internal_routes_in_process(tmp_path):
    app = make_app(tmp_path, [1000.0])
    async with new_browser(app) as c:
        for path in ("/_grader/sessions", "/%5Fgrader/sessions", "/_GRADER/sessions", "/new-session",
                     "/session/start?sid=x", "/%73ession/start?sid=x"):
            assert (await c.post(path, json={})).status_code == 403, path
            assert (await c.get(path)).status_code == 403, path
    assert rows(app, "sessions") == 0


# ---------------------------------------------------------------- client robustness
def flaky_transport(fail_times: int, exc: type[httpx.HTTPError]):
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= fail_times:
            raise exc("", request=request)  # httpx's timeouts often carry no message at all
        return httpx.Response(200, json={"sid": "s" * 24, "cookie_name": "shop_session", "cookie": "c",
                                         "start_path": None})

    return httpx.MockTransport(handler), calls


async def test_connect_errors_are_retried():
    transport, calls = flaky_transport(3, httpx.ConnectTimeout)
    async with ShopClient("http://shop", secret=SECRET, transport=transport, backoff_s=0.001) as client:
        created = await client.create_session("x")
    assert created.sid == "s" * 24 and calls["n"] == 4


@pytest.mark.parametrize("exc", [httpx.ConnectTimeout, httpx.ConnectError, httpx.PoolTimeout, httpx.ReadTimeout])
async def test_failures_carry_a_reason(exc):
    transport, calls = flaky_transport(10**6, exc)
    async with ShopClient("http://shop", secret=SECRET, transport=transport, retries=3, backoff_s=0.001) as client:
        with pytest.raises(ShopServerError) as info:
            await client.create_session("x")
    message = str(info.value)
    assert exc.__name__ in message and "creating a session" in message and "http://shop/_grader/sessions" in message
    assert isinstance(info.value, EnvError) and info.value.kind == "env"  # the episode fails as the env's
    assert calls["n"] == (1 if exc is httpx.ReadTimeout else 4)  # a read timeout may have been processed: no resend


async def test_nothing_listening_is_a_clear_env_failure():
    async with ShopClient(f"http://127.0.0.1:{free_port()}", secret=SECRET, retries=2, backoff_s=0.001) as client:
        with pytest.raises(ShopServerError, match=r"reading a session's report failed .*<sid>.*ConnectError"):
            await client.report("some-secret-session-id")
