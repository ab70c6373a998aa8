"""Screenshots of the shop's search, product and checkout pages, taken by real Chromium.

Run it as ``python -m rowgym.envs.shop.screenshots --out docs/img``.

Starts (or reuses) a shop server, opens a session through the grader API (the browser
joins with the single-use ``/session/join`` link; the environment sets the cookie instead), shops for one
goal, and saves ``shop-search.png``, ``shop-product.png`` and ``shop-checkout.png``.
Needs Playwright and Debian's ``chromium`` (``make setup`` installs both).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rowgym.envs.shop.client import ShopClient
from rowgym.envs.shop.instructions import goal_for_seed
from rowgym.envs.shop.server import DEFAULT_PORT, ensure_running

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


async def take(out: Path, *, port: int = DEFAULT_PORT, seed: int = 41, executable: str = CHROMIUM) -> list[Path]:
    """Shop for goal ``seed`` in Chromium and save three PNGs under ``out``.

    Returns:
        The paths written.
    """
    from playwright.async_api import async_playwright

    out.mkdir(parents=True, exist_ok=True)
    url = ensure_running(port)
    goal = goal_for_seed(seed)
    async with ShopClient(url) as shop, async_playwright() as pw:
        created = await shop.create_session(goal.instruction)
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context(viewport={"width": 1100, "height": 760})).new_page()
            await page.goto(shop.start_url(created))
            await page.get_by_label("Search products").fill(f"{' '.join(goal.attributes)} {goal.product_type}")
            await page.get_by_role("button", name="Search", exact=True).click()
            await page.get_by_label("Category").select_option(goal.category)
            await page.get_by_label("Max price ($)").fill(f"{goal.price_upper:.2f}")
            await page.get_by_role("button", name="Apply filters").click()
            paths = [out / "shop-search.png", out / "shop-product.png", out / "shop-checkout.png"]
            await page.screenshot(path=paths[0])
            await page.goto(f"{url}/product/{goal.product_id}")
            for name, value in goal.options.items():
                await page.get_by_role("group", name=name.capitalize()).get_by_label(value, exact=True).check()
            await page.screenshot(path=paths[1])
            await page.get_by_role("button", name="Add to cart").click()
            await page.get_by_role("link", name="Proceed to checkout").click()
            await page.get_by_label("Full name").fill("Ada Lovelace")
            await page.get_by_label("Street address").fill("12 St James's Square")
            await page.get_by_label("City").fill("London")
            await page.get_by_label("Postcode").fill("SW1Y 4JH")
            await page.screenshot(path=paths[2])
        finally:
            await browser.close()
    return paths


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m rowgym.envs.shop.screenshots [--out docs/img] [--port 8765]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--seed", type=int, default=41)
    args = ap.parse_args(argv)
    for path in asyncio.run(take(args.out, port=args.port, seed=args.seed)):
        print(f"{path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
