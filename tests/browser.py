"""Playwright with Debian's chromium (scripts/install-test-tools.sh) for the e2e UI tests: one set of
launch arguments, the skip when chromium is missing, per-user pages for the quantgate server app,
the approval edit in the version page's Tags table, and where screenshots go.

Screenshots go to a temporary directory, or to $QUANTGATE_SCREENSHOTS when set: the README's
images are regenerated with ``QUANTGATE_SCREENSHOTS=docs/img`` (so a normal run leaves the tree clean).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000  # every locator wait / navigation
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: run scripts/install-test-tools.sh"
)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium browser (skips the test when Playwright is not installed)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(browser: Any, height: int = 1000, credentials: tuple[str, str] | None = None) -> Any:
    """A page in a fresh context (its own cookies; basic-auth ``credentials`` when given)."""
    extra = {"http_credentials": {"username": credentials[0], "password": credentials[1]}} if credentials else {}
    context = browser.new_context(viewport={"width": 1400, "height": height}, **extra)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context.new_page()


def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("QUANTGATE_SCREENSHOTS")
    if where:
        out = Path(where) if Path(where).is_absolute() else ROOT / where
    else:
        out = tmp_path_factory.mktemp("shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def edit_tag(page: Any, url: str, name: str, version: str, key: str, value: str) -> Any:
    """Open the version page, edit the version tag ``key`` in place, Save; returns the tag's row."""
    from playwright.sync_api import expect

    page.goto(f"{url}/#/models/{name}/versions/{version}")
    row = page.get_by_test_id("editable-table").locator(f'tr[data-row-key="{key}"]')
    expect(row).to_be_visible()
    row.get_by_test_id("editable-table-button-edit").click()
    row.get_by_test_id("editable-table-edited-input").fill(value)
    row.get_by_test_id("editable-table-button-save").click()
    return row


def edit_approval(page: Any, url: str, name: str, version: str, value: str) -> Any:
    """Open the version page, edit quantgate.approval in place, Save; returns the tag's row."""
    from quantgate.registry import contract as c

    return edit_tag(page, url, name, version, c.TAG_APPROVAL, value)
