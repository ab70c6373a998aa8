"""Open a bench report in real Chromium (Playwright) and save a full-page screenshot.

    python -m rowgym.evals.screenshot results/demo/report.html docs/img/bench-report.png

The first (env, agent) group, its first task and that task's first attempt are
expanded, so the screenshot shows the episode viewer. The PNG is quantised to a
256-colour palette (Pillow) to keep it small enough for a README.
"""

from __future__ import annotations

import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
OPEN_FIRST = """() => { const g = document.querySelector('.viewer > details');
  if (!g) return; g.open = true; const t = g.querySelector('details'); if (!t) return; t.open = true;
  const e = t.querySelector('details'); if (e) e.open = true; }"""


def screenshot(html: str | Path, png: str | Path, *, width: int = 1280, open_first: bool = True,
               executable_path: str = CHROMIUM) -> Path:
    from playwright.sync_api import sync_playwright

    html, png = Path(html).resolve(), Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable_path, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(html.as_uri())
            if open_first:
                page.evaluate(OPEN_FIRST)
            page.screenshot(path=str(png), full_page=True)
        finally:
            browser.close()
    try:
        from PIL import Image

        with Image.open(png) as im:
            im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
    except ImportError:
        pass
    return png


if __name__ == "__main__":
    print(screenshot(sys.argv[1], sys.argv[2]))
