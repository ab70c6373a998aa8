"""A WebShop-style web shop: catalogue, FastAPI app, instructions and grading.

>>> from rowgym.envs.shop.instructions import goal_for_seed  # doctest: +SKIP
>>> goal_for_seed(0).instruction  # doctest: +SKIP
'i need a red cotton t-shirt in size l, and price lower than 30.00 dollars'

This ``__init__`` imports nothing: FastAPI, uvicorn and httpx are optional extras
(``rowgym[shop]``), pulled in only by :mod:`.app`, :mod:`.server` and :mod:`.client`.
Modules:

* :mod:`.catalog` — deterministic product generator, written to SQLite.
* :mod:`.app` — the FastAPI application (server-rendered HTML, per-session state).
* :mod:`.instructions` — goals per seed, train/dev/heldout splits, WebShop scoring.
* :mod:`.server` — uvicorn launcher: foreground, background (pidfile), ``ensure_running``.
* :mod:`.client` — what an environment uses: create a session, read the grader report.
* :mod:`.paths` — the canonical form of a request path (one blocklist rule for env and server).
* :mod:`.guard` — the server's harness-only route guard and signed session cookies.
"""
