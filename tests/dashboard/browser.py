"""Headless Debian chromium driven by Playwright (no Playwright browser download).

Without chromium the browser tests fail when ``CI`` is set (the CI machine installs it in
`.ci/run`) and are skipped otherwise, with the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("PILOTAGE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS_ENV = "PILOTAGE_SCREENSHOTS"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def require_chromium() -> str:
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if found:
        return found
    message = (
        f"no chromium at {CHROMIUM}: install it with `apt-get install -y chromium` "
        "(or set PILOTAGE_CHROMIUM)"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def screenshot_dir() -> Path:
    given = os.environ.get(SCREENSHOTS_ENV)
    where = Path(given) if given else Path(tempfile.gettempdir()) / "pilotage-dashboard-screenshots"
    where.mkdir(parents=True, exist_ok=True)
    return where


@contextmanager
def browser_page(tmp: Path) -> Iterator[Any]:
    """A fresh headless chromium (own profile directory) and one page, closed afterwards."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    profile = tmp / "chromium-profile"
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            context.close()
