"""The README's screenshot of a matrix page, in Debian's chromium through Playwright.

    .venv/bin/python ci/screenshot.py DIR/matrix.html docs/matrix.png [--width 1400] [--height 900] [--open ID]

--open ID unfolds that semantic's row (as a click on its differing cell would) before the shot.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--open", metavar="ID", help="a semantic whose row to unfold")
    options = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": options.width, "height": options.height})
        page.goto(Path(options.page).resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']")
        if options.open:
            page.click(f"#grid tr.sem[data-id='{options.open}'] td.differs")
        page.screenshot(path=options.out)
        browser.close()


if __name__ == "__main__":
    main()
