"""Shared fixtures: a private cache dir, the ASGI app, and an httpx client bound to it."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from shop_helpers import SECRET  # noqa: E402 (after the importorskip guards)


@pytest.fixture(scope="session", autouse=True)
def shop_cache(tmp_path_factory):
    """Keep the catalogue, secret file and server state out of ~/.cache."""
    path = tmp_path_factory.mktemp("rowgym-cache")
    old = os.environ.get("ROWGYM_CACHE_DIR")
    os.environ["ROWGYM_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ROWGYM_CACHE_DIR", None)
    else:
        os.environ["ROWGYM_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def shop_port(shop_cache):
    """A private shop server port for one test module (the env starts the server there; we stop it)."""
    from rowgym.envs.shop.server import stop_background
    from rowgym.launcher import free_port

    port = free_port()
    old = os.environ.get("ROWGYM_SHOP_PORT")
    os.environ["ROWGYM_SHOP_PORT"] = str(port)
    yield port
    stop_background(port)
    if old is None:
        os.environ.pop("ROWGYM_SHOP_PORT", None)
    else:
        os.environ["ROWGYM_SHOP_PORT"] = old


@pytest.fixture
def app(tmp_path):
    from rowgym.envs.shop.app import create_app

    return create_app(secret=SECRET, state_path=tmp_path / "state.sqlite")


@pytest.fixture
async def browser(app):
    """A cookie-keeping client, like one browser context."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as c:
        yield c
