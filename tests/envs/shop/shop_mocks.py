"""A mock browser (page, context, browser) and grader client for ShopEnv without Chromium.

The mock keeps Playwright's surface as ShopEnv uses it and Playwright's failure style:
an action on the wrong kind of element raises ``playwright.async_api.Error``. It lets the
fuzz test drive ShopEnv's real tool dispatch, validation, URL guard and observation code
10,000 times in seconds; the browser-backed fuzz covers the real thing with fewer calls.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError

from rowgym.envs.shop.env import ShopEnv
from rowgym.envs.shop.models import SessionCreated, SessionReport

BASE = "http://127.0.0.1:1"
SNAPSHOT = """- generic [active] [ref=e1]:
  - banner [ref=e2]:
    - link "Rowgym Shop" [ref=e3] [cursor=pointer]:
      - /url: /
    - link "Cart (0)" [ref=e4] [cursor=pointer]:
      - /url: /cart
    - link "Orders" [ref=e5] [cursor=pointer]:
      - /url: /orders
  - main [ref=e9]:
    - searchbox "Search products" [ref=e14]
    - button "Search" [ref=e15] [cursor=pointer]
    - combobox "Category" [ref=e16]:
      - option "All categories" [selected]
      - option "T-shirts"
    - group "Size" [ref=e20]:
      - radio "S" [ref=e21]
      - radio "M" [ref=e22]
    - link "Cotton T-shirt" [ref=e26] [cursor=pointer]:
      - /url: /product/P00001
"""
ROLES = {"e14": "input", "e15": "button", "e16": "select", "e20": "group", "e21": "radio", "e22": "radio"}


class MockLocator:
    def __init__(self, page: MockPage, ref: str):
        self.page, self.ref = page, ref
        self.kind = ROLES.get(ref.removeprefix("aria-ref="), "a")

    async def click(self) -> None:
        self.page.calls += 1
        if self.kind == "a":
            self.page.url = BASE + "/search?q=x"

    async def fill(self, text: str) -> None:
        if self.kind != "input":
            raise PlaywrightError("Locator.fill: Error: Element is not an <input>, <textarea> or <select> element")
        text.encode("utf-8")  # the driver's pipe is UTF-8: a lone surrogate would fail here

    async def press(self, key: str) -> None:
        self.page.url = BASE + "/search?q=typed"

    async def evaluate(self, script: str) -> Any:
        if "tagName" in script:
            return self.kind
        if "e.options" in script:
            return [["", "All categories"], ["t-shirts", "T-shirts"]]
        if "radio" in script:
            return ["S", "M"] if self.kind == "group" else []
        return None

    async def select_option(self, value: str) -> None:
        self.page.url = BASE + f"/search?category={value}"

    def locator(self, selector: str) -> MockLocator:
        return self

    def nth(self, i: int) -> MockLocator:
        return self

    async def check(self) -> None:
        return None


class MockPage:
    def __init__(self) -> None:
        self.url = "about:blank"
        self.history: list[str] = []
        self.calls = 0

    async def goto(self, url: str) -> None:
        parts = urlsplit(url)  # raises ValueError on a malformed URL, as Playwright's own parsing would refuse
        if parts.scheme not in ("http", "https"):
            raise PlaywrightError("Page.goto: Protocol error (Page.navigate): Cannot navigate to invalid URL")
        url.encode("utf-8")
        self.history.append(self.url)
        self.url = url

    async def go_back(self) -> None:
        self.url = self.history.pop() if self.history else "about:blank"

    async def go_forward(self) -> None:
        self.url = BASE + "/"

    async def wait_for_load_state(self, state: str) -> None:
        return None

    async def evaluate(self, script: str) -> Any:
        return []

    async def aria_snapshot(self, mode: str = "ai") -> str:
        return SNAPSHOT

    async def title(self) -> str:
        return "Home · Rowgym Shop"

    def locator(self, selector: str) -> MockLocator:
        return MockLocator(self, selector)

    async def screenshot(self, path: str) -> None:
        return None


class MockContext:
    def __init__(self) -> None:
        self.cookies: list[dict] = []

    def set_default_timeout(self, ms: int) -> None:
        return None

    def set_default_navigation_timeout(self, ms: int) -> None:
        return None

    async def add_cookies(self, cookies: list[dict]) -> None:
        self.cookies += cookies

    async def new_page(self) -> MockPage:
        return MockPage()

    async def close(self) -> None:
        return None


class MockBrowser:
    def is_connected(self) -> bool:
        return True

    async def new_context(self, **kw: Any) -> MockContext:
        return MockContext()

    async def close(self) -> None:
        return None


class MockClient:
    base_url = BASE

    async def create_session(self, instruction: str | None = None, *, join_link: bool = True) -> SessionCreated:
        return SessionCreated(sid="s" * 24, cookie_name="shop_session", cookie="s" * 24 + ".mac")

    def browser_cookie(self, created: SessionCreated) -> dict:
        return {"name": created.cookie_name, "value": created.cookie, "url": BASE + "/"}

    async def report(self, sid: str) -> SessionReport:
        return SessionReport(sid=sid, cart=[], orders=[])

    async def aclose(self) -> None:
        return None


class MockShopEnv(ShopEnv):
    """ShopEnv with the browser and the grader client mocked (everything else is the real code)."""

    async def _ensure_browser(self) -> None:
        self.base_url = BASE
        if self._browser is None:
            self._browser, self._client = MockBrowser(), MockClient()

    async def _close_browser(self) -> None:
        self._browser = self._client = None
