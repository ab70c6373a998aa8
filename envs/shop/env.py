"""The browser shop environment: a real Chromium, driven by Playwright, shopping in the web shop.

>>> import rowgym                                                        # doctest: +SKIP
>>> env = rowgym.make("rowgym/Shop-v0")                                  # doctest: +SKIP
>>> obs, info = env.reset(seed=0)                                        # doctest: +SKIP
>>> print(obs.splitlines()[0])                                           # doctest: +SKIP
URL: /
>>> obs, r, terminated, truncated, info = env.step(                      # doctest: +SKIP
...     {"name": "type", "arguments": {"ref": "e14", "text": "slim fit t-shirt", "submit": True}})
>>> env.close()                                                          # doctest: +SKIP

(Skipped in doctests: it needs Chromium and starts the shop server; see
``tests/envs/shop/test_shop_env.py``.)

One Chromium per event loop, shared by every environment on it (reference-counted, see
:mod:`.browser`), launched lazily by the first ``reset``; a fresh browser context per
episode (prepared in the background while the previous episode runs), given the (signed, httpOnly) cookie of the shop session the environment
created through the grader API, so the page never shows a session id or join link. The observation is the URL path,
title and Playwright's accessibility snapshot (``aria_snapshot(mode="ai")``) with
``[ref=eN]`` element references; tools act on those references. The final reward is
WebShop's match score of what the session actually bought, read from the backend with
the grader secret (which the browser never has), never from page text.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, quote, urlsplit

from playwright.async_api import Error as PlaywrightError
from pydantic import Field, field_validator

from rowgym.env import RowEnv
from rowgym.envs.shop.aria import compact, refs
from rowgym.envs.shop.browser import POOL, SharedBrowser, ShopBrowserError, default_executable
from rowgym.envs.shop.catalog import cache_dir
from rowgym.envs.shop.client import ShopClient, describe
from rowgym.envs.shop.errors import ShopServerError
from rowgym.envs.shop.instructions import (
    N_GOALS,
    SCORE_VERSION,
    Goal,
    goal_for_seed,
    goal_splits,
    score_breakdown,
)
from rowgym.envs.shop.paths import INTERNAL_PREFIXES, Undecidable, canonical_path, is_internal
from rowgym.envs.shop.search import terms
from rowgym.envs.shop.server import DEFAULT_PORT, ensure_running
from rowgym.rewards.base import Rubric
from rowgym.rewards.local import BAD_CALL_PENALTY, SUBGOAL_PROGRESS, VALID_CALL_V2, FirstSuccessCap
from rowgym.rows import Action, Check, Split, ToolCall, Verdict
from rowgym.tools import NoArgs, ToolArgs, ToolError, clean_text, tool

#: Paths the agent may not open (in any spelling, see :mod:`.paths`): the grader API and session plumbing.
BLOCKED_PREFIXES = INTERNAL_PREFIXES
#: Local progress signals (``subgoal``), each paid at most once per episode; they sum to 1.
BROWSER_CALL_S = 30.0
"""Longest wait for one browser-level call (a new context, a close): a call pending on a Chromium that
died may never be answered, and a reset must fail or relaunch instead of hanging."""
SUBGOALS = {"search": 0.2, "product": 0.3, "options": 0.2, "cart": 0.3}
VALID_CALL_CAP = 13
"""The most calls ``valid_call@2`` pays in one episode: the scripted expert's typical purchase takes 13
actions (search, category, price bound, product, options, add to cart, cart, checkout form, place order,
finish; 12-13 on the held-out seeds). A call pays the first time its (tool, arguments, page) succeeds,
so stalling (scrolling, clicking around) earns at most 13 x 0.02 = 0.26, what an efficient purchase earns."""
SHOP_LOCAL = Rubric([(VALID_CALL_V2, 1.0), (BAD_CALL_PENALTY, 1.0), (SUBGOAL_PROGRESS, 0.5)])
"""``valid_call@2`` (first successes, at most ``VALID_CALL_CAP``), ``bad_call_penalty@1``, ``subgoal_progress@1``."""
_PRODUCT_PATH = re.compile(r"^/product/([A-Za-z0-9]+)$")


class _GoalSplits:
    """The shop's :class:`~rowgym.splits.ListSplits`, built on first use (building all goals takes seconds)."""

    _splits = None

    def _get(self):
        if _GoalSplits._splits is None:
            _GoalSplits._splits = goal_splits()
        return _GoalSplits._splits

    def split_of(self, seed: int) -> Split:
        return self._get().split_of(seed)

    def seeds(self, split: str | Split, n: int | None = None, start: int = 0) -> list[int]:
        return self._get().seeds(split, n, start)


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _printable(value: str, *, allow_newlines: bool = False) -> str:
    """Refuse text a browser or a row store cannot carry: lone surrogates, NUL, control characters."""
    if _SURROGATE.search(value):
        raise ValueError("contains a lone UTF-16 surrogate (not valid Unicode text)")
    bad = _CONTROL.findall(value.replace("\n", "").replace("\t", "") if allow_newlines else value)
    if bad:
        raise ValueError(f"contains control character {bad[0]!r}")
    return value


class RefArgs(ToolArgs):
    ref: str = Field(max_length=32, description="An element reference from the latest page snapshot, e.g. 'e14'.")

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        return _printable(v)


class TypeArgs(RefArgs):
    text: str = Field(max_length=500, description="The text to put in the field (replaces what is there).")
    submit: bool = Field(False, description="Press Enter afterwards (submits the field's form).")

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return _printable(v, allow_newlines=True)


class SelectArgs(RefArgs):
    option: str = Field(max_length=200, description="The option's visible label (or value), e.g. 'T-shirts' or 'M'.")

    @field_validator("option")
    @classmethod
    def _option(cls, v: str) -> str:
        return _printable(v)


class ScrollArgs(ToolArgs):
    direction: Literal["up", "down"] = Field(description="Which way to scroll.")


class GotoArgs(ToolArgs):
    path: str = Field(max_length=500, description="A path inside the shop, e.g. '/cart' or '/search?q=red+mug'.")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return _printable(v)


class ShopEnv(RowEnv[Goal]):
    """Shop in a WebShop-style store through a real browser; reward is the match score of the purchase."""

    family = "shop"
    # 1: valid_call@2 (first successes, capped); the search subgoal needs a query mostly of the goal's words
    # and its noun; an option group pays only if the first option checked in it was right (0: any ever checked)
    version = "1"
    local_rubric = SHOP_LOCAL
    verifier = "shop_match"
    verifier_version = SCORE_VERSION
    splits = _GoalSplits()
    default_max_turns = 30
    system_prompt: ClassVar[str] = (
        "You are shopping in a web shop through a browser. Each observation shows the page's URL, title and "
        "accessibility tree; elements carry references like [ref=e14]. Use the tools with those references to "
        "search, open products, choose options, add to the cart and check out (fill in the shipping form and place "
        "the order). Buy exactly what the instruction asks for, then call finish.")

    def __init__(self, *, port: int | None = None, secret: str | None = None, executable_path: str | None = None,
                 headless: bool = True, screenshot_dir: str | Path | None = None, max_obs_chars: int = 12_000,
                 action_timeout_ms: int = 10_000, navigation_timeout_ms: int = 30_000,
                 share_browser: bool = True, spare_context: bool = True, **kw: Any):
        """
        Args:
            port: The shop server's port (default ``$ROWGYM_SHOP_PORT`` or 8765); started if not running.
            secret: The grader secret (default: the shared one, see :mod:`.secret`).
            executable_path: The Chromium binary (Debian's; Playwright's download cannot work here). Default:
                ``chromium-headless-shell`` when headless and installed, else ``chromium``
                (:func:`~.browser.default_executable`).
            headless: Run Chromium headless.
            screenshot_dir: If set, a PNG of the viewport after every step is saved there; its path is
                ``info["screenshot"]`` (never part of the observation text).
            max_obs_chars: Cut the accessibility tree to this many characters.
            action_timeout_ms: How long an action may wait for its element.
            navigation_timeout_ms: How long a page may take to load.
            share_browser: Share one Chromium with the other envs on this event loop (reference-counted;
                closed when the last one closes). False: a Chromium of its own, as before sharing.
            spare_context: While an episode runs, prepare the next episode's fresh context and page in
                the background, so that ``reset`` only creates the session, sets its cookie and loads ``/``.
        """
        super().__init__(**kw)
        self.port = port or int(os.environ.get("ROWGYM_SHOP_PORT", DEFAULT_PORT))
        self.secret = secret
        self.executable_path = executable_path or default_executable(headless)
        self.headless = headless
        self.screenshot_dir = Path(screenshot_dir) if screenshot_dir else None
        self.max_obs_chars = max_obs_chars
        self.action_timeout_ms = action_timeout_ms
        self.navigation_timeout_ms = navigation_timeout_ms
        self.share_browser = share_browser
        self.spare_context = spare_context
        self.base_url: str | None = None
        self.page: Any = None
        self._shared: SharedBrowser | None = None
        self._pw: Any = None
        self._browser: Any = None
        self._spare: asyncio.Task | None = None
        self._spare_on: Any = None  # the browser the spare context belongs to
        self._closing: set[asyncio.Task] = set()
        self._retired: list[Any] = []  # the last episode's context: closed once the next one is observed
        self._context: Any = None
        self._client: ShopClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sid: str | None = None
        self._refs: set[str] = set()
        self._paid: set[str] = set()
        self._goal_terms: set[str] = set()
        self._episodes = 0
        self._frame = 0
        self.finished = False
        self.last_screenshot: str | None = None

    # ------------------------------------------------------------------ tasks
    def make_task(self, seed: int) -> Goal:
        if seed < 0:
            raise ValueError(f"seeds are non-negative integers, got {seed}")
        return goal_for_seed(seed % N_GOALS)  # seed i is goal i mod N, as the ListSplits says

    def task_content(self, task: Goal) -> Any:
        return task.model_dump(mode="json", exclude={"goal_id", "seed", "split"})

    # -------------------------------------------------------- browser lifecycle
    async def _ensure_browser(self) -> None:
        loop = asyncio.get_running_loop()
        if self._shared is not None and self._loop is not loop:
            # Playwright objects live on the loop that made them; one from a finished loop cannot be used here.
            await POOL.release(self._shared)
            self._shared = self._pw = self._browser = self._client = self._spare = None
            self._closing, self._retired = set(), []
        if self._client is None:
            self.base_url = await asyncio.to_thread(ensure_running, self.port, secret=self.secret)
            self._client = ShopClient(self.base_url, secret=self.secret)
        if self._shared is None:
            self._shared = POOL.acquire(executable_path=self.executable_path, headless=self.headless,
                                        private=not self.share_browser)
            self._loop = loop
        self._browser = await self._shared.get()
        self._pw = self._shared.playwright

    async def _new_page(self, browser: Any, *, warm: bool = False) -> tuple[Any, Any]:
        """A fresh context (no cookies, storage or history) and its blank page, with the env's timeouts.

        Args:
            warm: Also take one accessibility snapshot of the blank page (the spare context does, in the
                background). The page's renderer then has Playwright's injected script compiled (V8 caches
                it per process), so the episode's first snapshot costs about a third less. Nothing is loaded: no
                request, cookie, storage or history entry comes of it.
        """
        context = await browser.new_context(viewport={"width": 1100, "height": 760})
        try:
            context.set_default_timeout(self.action_timeout_ms)
            context.set_default_navigation_timeout(self.navigation_timeout_ms)
            page = await context.new_page()
            if warm:
                await page.aria_snapshot(mode="ai")
            return context, page
        except BaseException:
            self._close_later(context)
            raise

    async def _fresh_page(self) -> tuple[Any, Any]:
        """This episode's context and page: the spare one if it is ready on the live browser, else a new one."""
        spare, self._spare = self._spare, None
        spare_on, self._spare_on = self._spare_on, None
        if spare is not None:
            try:  # bounded: a call pending on a browser that died may never be answered
                context, page = await asyncio.wait_for(spare, BROWSER_CALL_S)
            except Exception:  # made on a browser that has died since: make a new one below
                pass
            else:
                if spare_on is self._browser and self._browser.is_connected():
                    return context, page
                self._close_later(context)
        try:
            return await asyncio.wait_for(self._new_page(self._browser), BROWSER_CALL_S)
        except Exception as e:
            from playwright.async_api import Error as PlaywrightError

            if not isinstance(e, PlaywrightError | TimeoutError):
                raise
            # Chromium died before Playwright noticed: relaunch it (once for all its users) and try again.
            self._browser = await self._shared.get(replace=self._browser)
            return await asyncio.wait_for(self._new_page(self._browser), BROWSER_CALL_S)

    def _close_later(self, context: Any) -> None:
        """Close a context in the background (``aclose`` waits for it); a dead browser's context is just dropped."""

        async def close() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(context.close(), BROWSER_CALL_S)

        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for context in retired:
            self._close_later(context)

    async def _create_session(self, instruction: str) -> Any:
        assert self._client is not None
        try:
            return await self._client.create_session(instruction, join_link=False)
        except ShopServerError:  # stopped since the last episode? start it again (as the first reset does), once
            await asyncio.to_thread(ensure_running, self.port, secret=self.secret)
            return await self._client.create_session(instruction, join_link=False)

    async def _close_browser(self) -> None:
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            if self._shared is not None:
                await POOL.release(self._shared)  # only uncounted: see _ensure_browser
            self._shared = self._pw = self._browser = self._client = self._loop = self._spare = None
            self._retired = []
            return
        self._close_retired()
        spare, self._spare = self._spare, None
        if spare is not None:
            with contextlib.suppress(Exception):
                context, _ = await asyncio.wait_for(spare, BROWSER_CALL_S)
                self._close_later(context)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        client, shared = self._client, self._shared
        self._client = self._shared = self._browser = self._pw = self._loop = None
        if client is not None:
            await client.aclose()
        if shared is not None:
            await POOL.release(shared)

    def _browser_dead(self) -> bool:
        return self._browser is not None and not self._browser.is_connected()

    async def setup(self, task: Goal) -> str:
        try:
            return await self._start_episode(task)
        finally:  # the last episode's context, closed only now: its close no longer competes with this reset
            self._close_retired()

    async def _start_episode(self, task: Goal) -> str:
        try:
            await self._ensure_browser()
            assert self._client is not None
            session = asyncio.ensure_future(self._create_session(task.instruction))
            try:
                self._context, self.page = await self._fresh_page()  # teardown closes it whatever follows
            except BaseException:
                session.cancel()
                await asyncio.gather(session, return_exceptions=True)
                raise
            created = await session
            self._sid, context, page = created.sid, self._context, self.page
            # The session joins by cookie: no URL that names the session ever reaches the page or its history.
            await context.add_cookies([self._client.browser_cookie(created)])
            await page.goto(self.base_url + "/")
            self._paid, self.finished = set(), False
            self._goal_terms = set(terms(" ".join([*task.attributes, task.product_type])))
            self._noun_terms = set(terms(task.product_type))
            self._firsts = FirstSuccessCap(VALID_CALL_CAP)
            self._first_checked: dict[str, str] = {}
            self._episodes += 1
            self._frame = 0
            obs = await self._observe()
        except Exception as e:
            if self._browser_dead():
                raise ShopBrowserError(f"Chromium disconnected while starting an episode: {describe(e)}") from e
            raise
        if self.spare_context:  # the next episode's context, made while this one runs
            self._spare_on = self._browser
            self._spare = asyncio.get_running_loop().create_task(self._new_page(self._browser, warm=True))
        return obs

    async def teardown(self) -> None:
        context, self._context, self.page = self._context, None, None
        if context is not None:  # closed by the next setup, after its first observation, or by aclose
            self._retired.append(context)

    async def aclose(self) -> None:
        await super().aclose()
        await self._close_browser()

    def close(self) -> None:
        if self._shared is not None and not self._active:
            self._run(self._close_browser())
        super().close()

    # --------------------------------------------------------------- observing
    def _path(self, url: str) -> str:
        try:
            parts = urlsplit(url)
        except ValueError:
            return "(unreadable URL)"
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _in_shop(self, url: str) -> bool:
        try:
            return urlsplit(url).netloc == urlsplit(self.base_url or "").netloc
        except ValueError:
            return False

    def _host_paths(self) -> list[str]:
        """Directories of this machine that must never show in an observation, longest first."""
        roots = {str(cache_dir()), str(Path(__file__).resolve().parent), sys.prefix, os.getcwd(),
                 str(Path.home()), tempfile.gettempdir()}
        if self.screenshot_dir is not None:
            roots.add(str(self.screenshot_dir.resolve()))
        return sorted((r for r in roots if r not in ("", "/")), key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        """The text with host paths and the server's address replaced, safe to store (see :func:`clean_text`)."""
        text = clean_text(text).replace("\x00", "")
        if self.base_url:
            text = text.replace(self.base_url, "")
        for root in self._host_paths():
            text = text.replace(root, "<host path>")
        return text

    async def _observe(self, note: str = "") -> str:
        # Both in one round trip's time; both awaited to the end, so a failure never leaves the other unread.
        aria, title = await asyncio.gather(self.page.aria_snapshot(mode="ai"), self.page.title(),
                                           return_exceptions=True)
        for result in (aria, title):
            if isinstance(result, BaseException):
                raise result
        snapshot = compact(aria, self.max_obs_chars)
        self._refs = set(refs(snapshot))
        if self.screenshot_dir is not None:
            self.screenshot_dir.mkdir(parents=True, exist_ok=True)
            # <seed>-<episode # of this env>-<observation #>: 00 after reset, 01 after the first step, ...
            path = self.screenshot_dir / f"{self.episode_seed}-{self._episodes}-{self._frame:02d}.png"
            self._frame += 1
            await self.page.screenshot(path=str(path))
            self.last_screenshot = str(path)
        assert self.task is not None
        head = f"{note}\n" if note else ""
        return (f"{head}URL: {self._path(self.page.url)}\nTitle: {title}\n"
                f"Instruction: {self.task.instruction}\n\nPage (accessibility tree; act on elements by ref):\n"
                f"{snapshot}")

    async def error_observation(self, message: str) -> str:
        """Like BrowserGym's ``last_action_error``: the error first, then the page as it is now."""
        try:
            page = await self._observe()
        except Exception as e:  # the page itself is gone: the error alone still tells the agent what happened
            if self._browser_dead():  # ... unless the whole browser is: that ends the episode (kind env)
                raise ShopBrowserError(f"Chromium disconnected: {describe(e)}") from e
            return f"Error: {message}"
        return f"Error: {message}\n\n{page}"

    async def _settle(self) -> None:
        await self.page.wait_for_load_state("load")

    def _locate(self, ref: str) -> Any:
        if ref not in self._refs:
            raise ToolError(f"Unknown element reference {ref!r}: use a [ref=...] shown in the latest page snapshot.")
        return self.page.locator(f"aria-ref={ref}")

    async def _act(self, fn: Any, note: str, tool_name: str, args: ToolArgs) -> str:
        """Run a browser action; Playwright's failures become the agent's error, progress is rewarded."""
        key = (tool_name, args.model_dump_json(), self._path(self.page.url))  # the same action on the same page
        try:
            await fn()
            await self._settle()
        except PlaywrightError as e:
            if self._browser_dead():
                raise ShopBrowserError(f"Chromium disconnected during an action: {describe(e)}") from e
            lines = str(e).strip().splitlines()
            raise ToolError((lines[0] if lines else type(e).__name__)[:300]) from None
        except (ValueError, UnicodeError) as e:  # what the agent's text can provoke in URL or driver code
            raise ToolError(f"The browser could not do that: {type(e).__name__}: {str(e)[:200]}") from None
        await self._progress()
        obs = await self._observe(note)
        self._firsts.report(self, key)
        return obs

    # ------------------------------------------------------------------- tools
    @tool
    async def click(self, args: RefArgs) -> str:
        """Click an element (a link, a button, a radio option) by its reference."""
        loc = self._locate(args.ref)
        return await self._act(loc.click, f"Clicked {args.ref}.", "click", args)

    @tool(name="type")
    async def type_text(self, args: TypeArgs) -> str:
        """Type text into a text box (replacing its content); submit=true then presses Enter."""
        loc = self._locate(args.ref)

        async def do() -> None:
            await loc.fill(args.text)
            if args.submit:
                await loc.press("Enter")

        return await self._act(do, f"Typed into {args.ref}" + (" and pressed Enter." if args.submit else "."),
                               "type", args)

    @tool
    async def select(self, args: SelectArgs) -> str:
        """Choose an option: in a drop-down (combobox) by its label, or in a group of radio buttons by its name."""
        loc = self._locate(args.ref)
        want = args.option.strip().lower()

        async def do() -> None:
            if await loc.evaluate("e => e.tagName.toLowerCase()") == "select":
                options = await loc.evaluate("e => Array.from(e.options).map(o => [o.value, o.label.trim()])")
                match = next((v for v, label in options if want in (v.lower(), label.lower())), None)
                if match is None:
                    raise ToolError(f"{args.ref} has no option {args.option!r}; options: "
                                    + ", ".join(label for _, label in options[:40]))
                await loc.select_option(value=match)
                return
            names = [n.strip() for n in await loc.evaluate(
                "e => Array.from(e.querySelectorAll('input[type=radio]'))"
                ".map(r => (r.labels && r.labels[0] ? r.labels[0].innerText : r.value))")]
            if not names:
                raise ToolError(f"{args.ref} is neither a drop-down nor a group of options; use click instead.")
            idx = next((i for i, n in enumerate(names) if n.lower() == want), None)
            if idx is None:
                raise ToolError(f"{args.ref} has no option {args.option!r}; options: {', '.join(names[:40])}")
            await loc.locator("input[type=radio]").nth(idx).check()

        return await self._act(do, f"Selected {args.option!r} in {args.ref}.", "select", args)

    @tool
    async def scroll(self, args: ScrollArgs) -> str:
        """Scroll the page up or down (the snapshot always shows the whole page; this also re-reads it)."""
        sign = -1 if args.direction == "up" else 1
        return await self._act(lambda: self.page.evaluate(f"window.scrollBy(0, {sign} * window.innerHeight * 0.8)"),
                               f"Scrolled {args.direction}.", "scroll", args)

    @tool
    async def back(self, args: NoArgs) -> str:
        """Go back to the previous page."""

        async def do() -> None:
            await self.page.go_back()
            if not self._in_shop(self.page.url):  # back past the session's first page: stay in the shop
                await self.page.go_forward()
                raise ToolError("There is no earlier page to go back to.")

        return await self._act(do, "Went back.", "back", args)

    def _shop_url(self, raw: str) -> str:
        """The URL ``goto`` opens for ``raw``: on the shop's host, path in canonical form, never internal.

        The path that is checked is the path that is opened: it is percent-decoded until stable,
        normalised (``..``, ``//``, backslashes) and re-encoded once, so the server decodes it to
        exactly what was checked here (the server refuses internal routes on its own as well).
        """
        outside = f"{raw!r} is outside the shop; goto only opens the shop's own pages, e.g. '/cart'."
        if raw.lower().startswith(("http://", "https://")):
            try:
                parts = urlsplit(raw)
            except ValueError:
                raise ToolError(f"{raw!r} is not a valid URL; give a path such as '/cart'.") from None
            if not self._in_shop(raw) or parts.scheme.lower() not in ("http", "https"):
                raise ToolError(outside)
            path, query = parts.path or "/", parts.query
        elif raw.startswith(("//", "/\\", "\\")):  # protocol-relative: another host
            raise ToolError(outside)
        elif raw.startswith("/"):
            path, _, query = raw.split("#", 1)[0].partition("?")
        else:
            raise ToolError(f"{raw!r} is not a path; give a path starting with '/', e.g. '/cart'.")
        try:
            canon = canonical_path(path)
        except Undecidable:
            raise ToolError(f"{raw!r} is not a shop page an agent may open.") from None
        if is_internal(path) or canon.startswith(BLOCKED_PREFIXES):
            raise ToolError(f"{raw!r} is not a shop page an agent may open.")
        opened = quote(canonical_path(path, lower=False), safe="/-._~!$&'()*+,;=:@")
        return (self.base_url or "") + opened + (f"?{query}" if query else "")

    @tool
    async def goto(self, args: GotoArgs) -> str:
        """Open a page of the shop by its path, e.g. '/', '/cart', '/orders' or '/search?q=wool+socks'."""
        url = self._shop_url(args.path.strip())
        return await self._act(lambda: self.page.goto(url), f"Opened {self._path(url)}.", "goto", args)

    @tool(terminal=True)
    async def finish(self, args: NoArgs) -> str:
        """End the episode (call it after placing the order)."""
        self.finished = True
        self._firsts.report(self, ("finish", "{}", self._path(self.page.url)))
        return "Finished."

    # ----------------------------------------------------------------- rewards

    def _relevant_search(self, query: str) -> bool:
        """A search that pays the subgoal: it names the goal's product noun, and at least half of its
        distinct terms are the goal's words (a query stuffed with every noun of the shop matches none)."""
        q = set(terms(query))
        return bool(q & self._noun_terms) and 2 * len(q & self._goal_terms) >= len(q)

    def _pay(self, subgoal: str) -> None:
        if subgoal not in self._paid:
            self._paid.add(subgoal)
            self.signal("subgoal", SUBGOALS[subgoal])

    async def _progress(self) -> None:
        """Pay local progress: a relevant search, a matching product, a right option, the right item in the cart."""
        assert self.task is not None
        goal, parts = self.task, urlsplit(self.page.url)
        if parts.path == "/search":
            query = " ".join(parse_qs(parts.query).get("q", []))
            if self._relevant_search(query):
                self._pay("search")
        m = _PRODUCT_PATH.match(parts.path)
        if m and m.group(1) in goal.target_product_ids:
            self._pay("product")
            if goal.options and "cart" not in self._paid:
                checked = await self.page.evaluate(
                    "() => Array.from(document.querySelectorAll('input[type=radio]:checked'))"
                    ".map(e => [e.name, e.value])")
                for name, value in checked:
                    # only the first option the agent checked in a group counts: clicking through
                    # every radio of a group, or correcting a wrong choice, earns nothing
                    first = self._first_checked.setdefault(name, value)
                    if first == value and goal.options.get(name, "").lower() == value.lower():
                        self._paid_option(name, len(goal.options))
        if parts.path == "/cart" and "cart" not in self._paid:
            assert self._client is not None and self._sid is not None
            report = await self._client.report(self._sid)
            if any(score_breakdown(goal, [line]).score >= 1.0 for line in report.cart):
                self._pay("cart")

    def _paid_option(self, name: str, n: int) -> None:
        key = f"option:{name}"
        if key not in self._paid:
            self._paid.add(key)
            self.signal("subgoal", round(SUBGOALS["options"] / n, 6))

    async def grade(self) -> Verdict:
        assert self.task is not None and self._client is not None and self._sid is not None
        report = await self._client.report(self._sid)
        b = score_breakdown(self.task, report)
        success = b.score >= 1.0 - 1e-9
        checks = [
            Check(name="purchased", passed=b.n_purchased > 0, detail=f"{b.n_purchased} distinct purchase(s)"),
            Check(name="category", passed=b.r_type == 1.0, detail=f"r_type={b.r_type} ({b.product_id})"),
            Check(name="attributes", passed=b.attributes_matched == b.attributes_total,
                  detail=f"{b.attributes_matched}/{b.attributes_total}"),
            Check(name="options", passed=b.options_matched == b.options_total,
                  detail=f"{b.options_matched}/{b.options_total}"),
            Check(name="price", passed=b.price_ok, detail=f"bound ${self.task.price_upper:.2f}"),
            Check(name="single_purchase", passed=b.n_purchased <= 1, detail="several purchases divide the score"),
            Check(name="finished", passed=self.finished, detail="called finish" if self.finished else "step cap"),
        ]
        n_att, n_opt = max(1, b.attributes_total), max(1, b.options_total)
        breakdown = {f"{self.verifier}@{self.verifier_version}": round(b.score, 6), "r_type": b.r_type,
                     "attributes": round(b.attributes_matched / n_att, 6) if b.attributes_total else 1.0,
                     "options": round(b.options_matched / n_opt, 6) if b.options_total else 1.0,
                     "price": float(b.price_ok)}
        return Verdict(reward=round(b.score, 6), success=success, verifier=self.verifier,
                       verifier_version=self.verifier_version, breakdown=breakdown, checks=checks)

    # ------------------------------------------------- screenshots in info
    async def areset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        self.last_screenshot = None
        obs, info = await super().areset(seed=seed, options=options)
        if self.last_screenshot:
            info["screenshot"] = self.last_screenshot
        return self._scrub(obs), info

    async def astep(self, action: Action | ToolCall | dict | str) -> tuple[str, float, bool, bool, dict]:
        self.last_screenshot = None
        obs, reward, terminated, truncated, info = await super().astep(action)
        if self.last_screenshot:
            info["screenshot"] = self.last_screenshot
        obs = self._scrub(obs)
        self._last_obs = obs
        return obs, reward, terminated, truncated, info
