"""Helpers shared by the shop tests (a uniquely named module: test dirs have no __init__.py)."""

import httpx

SECRET = "test-secret"


def new_browser(app) -> httpx.AsyncClient:
    """A cookie-keeping client bound to the ASGI app, like one browser context."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop")
