"""The shop as a FastAPI application: server-rendered HTML, one state per session.

>>> from fastapi.testclient import TestClient  # doctest: +SKIP
>>> client = TestClient(create_app(secret="s", state_path=":memory:"))  # doctest: +SKIP
>>> client.get("/search", params={"q": "red cotton t-shirt"}).status_code  # doctest: +SKIP
200

Pages work without JavaScript: plain links and forms (GET for search, POST + 303
redirect for cart and checkout), labelled inputs and named buttons, so Chromium's
accessibility tree reads like the page. A browser gets a signed session cookie
(``shop_session``) on its first request (nothing is stored until it adds to its cart),
or is given the cookie of a session the environment created (Playwright's
``add_cookies``, or the single-use ``/session/join?token=...`` link). ``/_grader/*`` and
the rest of the session plumbing answer only requests carrying the ``X-Grader-Secret``
header, which the environment process has and the browser never sees; see
:mod:`.guard` for how every spelling of those paths is caught.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from rowgym.envs.shop.catalog import GENERATOR_VERSION, Product, build_catalog_db, cache_dir, load_catalog_db
from rowgym.envs.shop.catalog_data import CATEGORIES, OPTION_NAMES
from rowgym.envs.shop.guard import CookieSigner, InternalRouteGuard, secret_matches
from rowgym.envs.shop.models import (
    AddToCartForm,
    CreateSession,
    Health,
    Order,
    OrderLine,
    RemoveFromCartForm,
    SessionCreated,
    SessionReport,
    Shipping,
)
from rowgym.envs.shop.paths import canonical_path, is_internal
from rowgym.envs.shop.search import SearchIndex
from rowgym.envs.shop.secret import HEADER
from rowgym.envs.shop.state import DEFAULT_MAX_SESSIONS, DEFAULT_TTL_S, ShopState, StoredLine, new_sid

COOKIE = "shop_session"
PAGE_SIZE = 10
_HERE = Path(__file__).parent
# Public paths that neither need nor create a browser session (harness-only ones never do either).
_SESSIONLESS = ("/healthz", "/static", "/favicon.ico")


@lru_cache(maxsize=1)
def code_version() -> str:
    """A short hash of the shop package's files (code, templates, static)."""
    import hashlib

    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def _money(value: float) -> str:
    return f"${value:,.2f}"


@lru_cache(maxsize=4)
def _load_catalog(path: str) -> tuple[list[Product], SearchIndex]:
    # Cached: products are immutable, and tests build many apps over one catalogue.
    products = load_catalog_db(Path(path))
    return products, SearchIndex(products)


class Shop:
    """Everything the handlers share: catalogue, search index, state, templates."""

    def __init__(self, *, secret: str, state_path: str | Path | None, catalog_path: str | Path | None,
                 session_ttl_s: float = DEFAULT_TTL_S, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 clock: Callable[[], float] | None = None):
        self.secret = secret
        self.cookies = CookieSigner(secret)
        self.products, self.index = _load_catalog(str(build_catalog_db(Path(catalog_path) if catalog_path else None)))
        self.by_id = {p.id: p for p in self.products}
        self.state = ShopState(state_path if state_path is not None else cache_dir() / "state.sqlite",
                               ttl_s=session_ttl_s, max_sessions=max_sessions,
                               **({"clock": clock} if clock is not None else {}))
        self.categories = [(c, sum(p.category == c.slug for p in self.products)) for c in CATEGORIES]
        self.labels = {c.slug: c.label for c in CATEGORIES}
        self.templates = Jinja2Templates(directory=str(_HERE / "templates"))
        self.templates.env.filters["money"] = _money

    def check_secret(self, given: str | None) -> None:
        # compare_digest: no timing oracle; an empty configured secret never matches.
        if not secret_matches(self.secret, given):
            raise HTTPException(status_code=403, detail=f"missing or wrong {HEADER} header")

    def line(self, stored: StoredLine) -> OrderLine:
        p = self.by_id[stored.product_id]
        return OrderLine(product_id=p.id, title=p.title, category=p.category, department=p.department,
                         attributes=sorted(p.tags()), options=stored.options, unit_price=stored.unit_price,
                         quantity=stored.quantity)

    def report(self, sid: str) -> SessionReport:
        orders = [Order(order_id=o.order_id, placed_at=o.placed_at, total=o.total,
                        shipping=Shipping(**o.shipping), lines=[self.line(ln) for ln in o.lines])
                  for o in self.state.orders(sid)]
        return SessionReport(sid=sid, instruction=self.state.instruction(sid),
                             cart=[self.line(ln) for ln in self.state.cart(sid)], orders=orders)

    def render(self, request: Request, name: str, status_code: int = 200, **ctx) -> HTMLResponse:
        sid = request.state.sid
        cart = self.state.cart(sid)
        ctx.update(instruction=self.state.instruction(sid), cart_count=sum(ln.quantity for ln in cart),
                   categories=self.categories, labels=self.labels)
        ctx.setdefault("q", "")
        return self.templates.TemplateResponse(request, name, ctx, status_code=status_code)


def _page_number(text: str, pages: int) -> int:
    """The page a ``page=`` query asks for, within ``1..pages``; anything but ASCII digits is page 1.

    The agent writes this URL. ``str.isdigit`` alone passes "²" and other digits ``int`` refuses,
    and ``int`` refuses more than 4,300 digits: both were a 500.

    >>> _page_number("3", 5), _page_number("²", 5), _page_number("9" * 5000, 5), _page_number("000", 5)
    (3, 1, 5, 1)
    """
    if not (text.isascii() and text.isdigit()):
        return 1
    digits = text.lstrip("0") or "0"
    return min(max(1, int(digits)) if len(digits) <= 9 else pages, pages)


def _parse_form(model, form) -> tuple[object | None, list[str]]:
    """Validate a submitted form into ``model``; on failure, human-readable messages."""
    data = {k: v for k, v in form.items() if v != ""}
    try:
        return model.model_validate(data), []
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            field = ".".join(map(str, err["loc"])).replace("_", " ") or "form"
            msgs.append(f"{field.capitalize()} is required." if err["type"] == "missing"
                        else f"{field.capitalize()}: {err['msg']}.")
        return None, msgs


def create_app(*, secret: str, state_path: str | Path | None = None, catalog_path: str | Path | None = None,
               session_ttl_s: float = DEFAULT_TTL_S, max_sessions: int = DEFAULT_MAX_SESSIONS,
               clock: Callable[[], float] | None = None) -> FastAPI:
    """Build the shop application.

    Args:
        secret: Value the ``X-Grader-Secret`` header must carry for ``/_grader/*``.
            An empty string disables the grader endpoints (always 403).
        state_path: SQLite file for sessions, carts and orders (``":memory:"`` for
            tests); defaults to ``cache_dir()/state.sqlite``.
        catalog_path: Catalogue SQLite file; built there if missing or stale.
        session_ttl_s: A session idle this long expires (it is deleted with its cart and orders).
        max_sessions: Bound on stored sessions (browser-made ones are evicted first).
        clock: Seconds since the epoch for session expiry (tests inject a fake clock).

    Returns:
        The FastAPI app; ``app.state.shop`` holds the :class:`Shop`.
    """
    shop = Shop(secret=secret, state_path=state_path, catalog_path=catalog_path, session_ttl_s=session_ttl_s,
                max_sessions=max_sessions, clock=clock)
    app = FastAPI(title="rowgym shop", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.shop = shop
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")

    @app.middleware("http")
    async def session_cookie(request: Request, call_next):
        try:
            path = canonical_path(request.url.path)
        except ValueError:
            path = "/"
        if path.startswith(_SESSIONLESS) or is_internal(path):
            return await call_next(request)
        shop.state.maybe_sweep()
        sid = shop.cookies.verify(request.cookies.get(COOKIE))
        fresh = sid is None
        if fresh:  # a new browser: a signed cookie, but no stored row until it writes something
            sid = new_sid()
        else:
            shop.state.touch(sid)
        request.state.sid = sid
        response = await call_next(request)
        if fresh:
            response.set_cookie(COOKIE, shop.cookies.sign(sid), httponly=True, samesite="lax")
        return response

    # The guard wraps everything above (added last = outermost): no route handler or session
    # middleware ever sees a harness-only request that lacks the secret.
    app.add_middleware(InternalRouteGuard, secret=secret)

    # --- sessions ---
    @app.get("/session/join")
    async def session_join(token: str = Query(max_length=64)) -> Response:
        sid = shop.state.redeem_join_token(token)
        if sid is None:
            raise HTTPException(status_code=404, detail="unknown, used or expired join token")
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, shop.cookies.sign(sid), httponly=True, samesite="lax")
        return resp

    @app.get("/healthz")
    async def healthz() -> Health:
        return Health(catalog_version=GENERATOR_VERSION, products=len(shop.products), code=code_version())

    # --- grader (env process only) ---
    @app.post("/_grader/sessions")
    async def grader_create(body: CreateSession,
                            x_grader_secret: str | None = Header(default=None)) -> SessionCreated:
        shop.check_secret(x_grader_secret)
        sid = shop.state.create_session(body.instruction)
        start = ("/session/join?" + urlencode({"token": shop.state.issue_join_token(sid)})) if body.join_link else None
        return SessionCreated(sid=sid, cookie_name=COOKIE, cookie=shop.cookies.sign(sid), start_path=start)

    @app.get("/_grader/session/{sid}")
    async def grader_session(sid: str, x_grader_secret: str | None = Header(default=None)) -> SessionReport:
        shop.check_secret(x_grader_secret)
        if not shop.state.touch(sid):  # the env polling its session keeps it alive
            raise HTTPException(status_code=404, detail="unknown or expired session")
        return shop.report(sid)

    # --- pages ---
    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request):
        return shop.render(request, "home.html", title="Home", home=True)

    @app.get("/search", response_class=HTMLResponse)
    async def search(request: Request, q: str = Query("", max_length=200), category: str = "",
                     max_price: str = "", page: str = "1"):
        errors = []
        cat = category if category in shop.labels else None
        if category and not cat:
            errors.append(f"Unknown category {category!r}; showing all categories.")
        try:
            price = float(max_price) if max_price.strip() else None
        except ValueError:
            price = None
            errors.append(f"Max price {max_price!r} is not a number; ignored.")
        hits = shop.index.search(q, category=cat, max_price=price)
        pages = max(1, math.ceil(len(hits) / PAGE_SIZE))
        n = _page_number(page, pages)
        base = {"q": q, "category": cat or "", "max_price": max_price}

        def url(p: int) -> str:
            return "/search?" + urlencode({**{k: v for k, v in base.items() if v}, "page": p})

        return shop.render(request, "search.html", title=f"Search: {q}" if q else "All products",
                           results=hits[(n - 1) * PAGE_SIZE:n * PAGE_SIZE], total=len(hits), page=n,
                           pages=pages, prev_url=url(n - 1) if n > 1 else None,
                           next_url=url(n + 1) if n < pages else None, errors=errors, **base)

    def product_page(request: Request, p: Product, errors: list[str], chosen: dict[str, str],
                     quantity: int = 1, status_code: int = 200):
        return shop.render(request, "product.html", status_code=status_code, title=p.title, p=p,
                           errors=errors, chosen=chosen, quantity=quantity,
                           label=shop.labels[p.category])

    @app.get("/product/{pid}", response_class=HTMLResponse)
    async def product(request: Request, pid: str):
        p = shop.by_id.get(pid)
        if p is None:
            return shop.render(request, "message.html", status_code=404, title="Product not found",
                               message=f"There is no product {pid}.")
        return product_page(request, p, [], {})

    @app.post("/cart/add", response_class=HTMLResponse)
    async def cart_add(request: Request):
        form, errors = _parse_form(AddToCartForm, await request.form())
        p = shop.by_id.get(form.product_id) if form else None
        if p is None:
            return shop.render(request, "message.html", status_code=400, title="Could not add to cart",
                               message="; ".join(errors) or "Unknown product.")
        chosen = {n: getattr(form, n) for n in OPTION_NAMES if getattr(form, n) is not None}
        for name, values in p.options.items():
            if name not in chosen:
                errors.append(f"Please choose a {name}.")
            elif chosen[name] not in values:
                errors.append(f"{chosen[name]!r} is not an available {name}.")
        errors += [f"This product has no {name} option." for name in chosen if name not in p.options]
        if errors:
            return product_page(request, p, errors, chosen, form.quantity, status_code=422)
        shop.state.add_to_cart(request.state.sid, p.id, chosen, form.quantity, p.price)
        return RedirectResponse("/cart", status_code=303)

    @app.get("/cart", response_class=HTMLResponse)
    async def cart(request: Request):
        lines = shop.state.cart(request.state.sid)
        return shop.render(request, "cart.html", title="Your cart", lines=lines, by_id=shop.by_id,
                           total=sum(ln.quantity * ln.unit_price for ln in lines))

    @app.post("/cart/remove")
    async def cart_remove(request: Request):
        form, _ = _parse_form(RemoveFromCartForm, await request.form())
        if form:
            shop.state.remove_from_cart(request.state.sid, form.item_id)
        return RedirectResponse("/cart", status_code=303)

    def checkout_page(request: Request, errors: list[str], values: dict[str, str], status_code: int = 200):
        lines = shop.state.cart(request.state.sid)
        return shop.render(request, "checkout.html", status_code=status_code, title="Checkout", lines=lines,
                           by_id=shop.by_id, total=sum(ln.quantity * ln.unit_price for ln in lines),
                           errors=errors, values=values)

    @app.get("/checkout", response_class=HTMLResponse)
    async def checkout(request: Request):
        return checkout_page(request, [], {})

    @app.post("/checkout", response_class=HTMLResponse)
    async def checkout_post(request: Request):
        raw = await request.form()
        shipping, errors = _parse_form(Shipping, raw)
        if shipping is None:
            return checkout_page(request, errors, {k: str(v) for k, v in raw.items()}, status_code=422)
        oid = shop.state.place_order(request.state.sid, shipping.model_dump())
        if oid is None:
            return checkout_page(request, ["Your cart is empty: add a product first."],
                                 shipping.model_dump(), status_code=422)
        return RedirectResponse(f"/order/{oid}", status_code=303)

    @app.get("/order/{oid}", response_class=HTMLResponse)
    async def order(request: Request, oid: str):
        o = shop.state.order(request.state.sid, oid)
        if o is None:  # unknown, or another session's order: same answer, no leak
            return shop.render(request, "message.html", status_code=404, title="Order not found",
                               message=f"There is no order {oid} in this session.")
        return shop.render(request, "order.html", title=f"Order {oid}", order=o, by_id=shop.by_id)

    @app.get("/orders", response_class=HTMLResponse)
    async def orders(request: Request):
        return shop.render(request, "orders.html", title="Your orders",
                           orders=shop.state.orders(request.state.sid))

    return app
