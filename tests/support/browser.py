"""Headless Chromium pages for browser tests: Debian's /usr/bin/chromium driven by Playwright.

Never a downloaded browser (`playwright install` is not allowed here). Without the binary the
test is skipped with the reason, unless REQUIRE_BROWSER=1 (CI), in which case it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# The flags this machine needs: no sandbox as root, and no background traffic to Google's
# hosts, whose connections the closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail("REQUIRE_BROWSER=1 but /usr/bin/chromium is missing (apt-get install chromium)")
    pytest.skip(
        "/usr/bin/chromium is not installed (apt-get install -y chromium); browser test skipped"
    )


@contextmanager
def chromium_page(timeout_ms: int = 20_000) -> Iterator[Any]:
    """A fresh page (1200x800) in a new headless Chromium, closed afterwards."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.set_default_timeout(timeout_ms)
        try:
            yield page
        finally:
            browser.close()
