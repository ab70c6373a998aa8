"""A real uvicorn server, started the way an environment starts it, with 8 concurrent sessions."""

import asyncio
import re

import httpx
import pytest

from rowgym.envs.shop.catalog import generate_products
from rowgym.envs.shop.client import ShopClient
from rowgym.envs.shop.errors import GraderAuthError
from rowgym.envs.shop.instructions import all_goals, score
from rowgym.envs.shop.server import ensure_running, is_running, stop_background
from rowgym.launcher import free_port


@pytest.fixture(scope="module")
def server():
    port = free_port()
    url = ensure_running(port, secret="module-secret")
    assert ensure_running(port) == url  # already up: no second server
    yield url, port
    assert stop_background(port)
    assert not is_running(port)


async def shop_once(url: str, i: int, goal) -> tuple[str, str, dict]:
    """One episode: env creates a session, a 'browser' joins it and buys the goal product."""
    async with ShopClient(url, secret="module-secret") as env, httpx.AsyncClient(base_url=url) as browser:
        created = await env.create_session(goal.instruction)
        await browser.get(created.start_path)
        words = " ".join(goal.attributes + [goal.product_type])
        page = await browser.get("/search", params={"q": words, "category": goal.category,
                                                    "max_price": goal.price_upper})
        assert re.search(r'href="/product/P\d+"', page.text)
        await asyncio.sleep(0.01 * (8 - i))  # interleave the sessions' steps
        r = await browser.post("/cart/add", data={"product_id": goal.product_id, "quantity": str(i + 1),
                                                  **goal.options})
        assert r.status_code == 303, r.text
        r = await browser.post("/checkout", data={"full_name": f"Buyer {i}", "address": f"{i} Main St",
                                                  "city": "Oslo", "postcode": str(1000 + i)})
        assert r.status_code == 303
        report = await env.report(created.sid)
        return created.sid, goal.product_id, report


async def test_eight_concurrent_sessions_never_cross(server):
    url, _ = server
    goals = [g for g in all_goals() if g.options][:8]
    results = await asyncio.gather(*(shop_once(url, i, g) for i, g in enumerate(goals)))
    assert len({sid for sid, _, _ in results}) == 8
    for i, ((_sid, pid, report), goal) in enumerate(zip(results, goals, strict=True)):
        [order] = report.orders
        [line] = order.lines
        assert (line.product_id, line.quantity, line.options) == (pid, i + 1, goal.options)
        assert order.shipping.full_name == f"Buyer {i}" and report.cart == []
        assert report.instruction == goal.instruction
        assert score(goal, report) == 1.0


async def test_grader_rejects_wrong_secret(server):
    url, _ = server
    async with ShopClient(url, secret="not-it") as env:
        with pytest.raises(GraderAuthError):
            await env.create_session()
    async with httpx.AsyncClient(base_url=url) as browser:
        await browser.get("/")
        sid = browser.cookies["shop_session"].rsplit(".", 1)[0]
        assert (await browser.get(f"/_grader/session/{sid}")).status_code == 403


def test_catalogue_has_goal_products():
    ids = {p.id for p in generate_products()}
    assert all(g.product_id in ids for g in all_goals()[:100])
