"""Approvals with identity in the real MLflow UI, served by `mlflow server --app-name quantgate`,
driven by Playwright with Debian's chromium: each person logs in with basic auth (the browser
context's HTTP credentials) and edits the tag `quantgate.approval` in the version's Tags table.

- bob (not an approver): the save is refused and the UI shows the server's reason;
- rita (an approver, but she registered the candidate): refused, separation of duties;
- alice (approver): accepted; the server's stamps (approved_by, approved_at, digest) appear;
- alice again, on a failed candidate, rewrites its verdict to pass: refused (result tags are the
  pipeline identity's alone), and the verdict stays fail.

Screenshots: tests/browser.py (`QUANTGATE_SCREENSHOTS=docs/img` regenerates the README's images).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import TIMEOUT_MS, chromium, edit_approval, edit_tag, needs_chromium, new_page, screenshots_dir
from quantgate_server import PASSWORDS, Server, client_env, register_governed, version_tags

from quantgate.registry import contract as c

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.e2e, needs_chromium]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshots_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def candidate(quantgate_server: Server) -> tuple[str, str]:
    with client_env(quantgate_server) as settings:
        return register_governed(quantgate_server, settings, "uitiny", registrant="rita")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _page_as(browser: Any, user: str) -> Any:
    return new_page(browser, height=1100, credentials=(user, PASSWORDS[user]))


def _approval_in_registry(server: Server, name: str, version: str) -> str | None:
    return version_tags(server, name, version).get(c.TAG_APPROVAL)


def test_refused_edits_are_shown_and_change_nothing(
    quantgate_server: Server, candidate: tuple[str, str], browser: Any, shots: Path
) -> None:
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    name, version = candidate
    for user, reason in (("bob", "only members of role 'approvers'"), ("rita", "separation of duties")):
        page = _page_as(browser, user)
        try:
            edit_approval(page, quantgate_server.url, name, version, "approved")
            shown = page.get_by_text(re.compile(re.escape(reason))).first
            expect(shown).to_be_visible()
            png = "approval-refused.png" if user == "bob" else "approval-own-version-refused.png"
            page.screenshot(path=str(shots / png))
        finally:
            page.context.close()
        assert _approval_in_registry(quantgate_server, name, version) == "pending"


def test_approver_approves_and_the_server_stamps(
    quantgate_server: Server, candidate: tuple[str, str], browser: Any, shots: Path
) -> None:
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    name, version = candidate
    page = _page_as(browser, "alice")
    try:
        row = edit_approval(page, quantgate_server.url, name, version, "approved: card and plots reviewed")
        expect(row.get_by_test_id("editable-table-edited-input")).to_have_count(0)  # the save came back
        deadline = time.monotonic() + 30
        while (state := _approval_in_registry(quantgate_server, name, version)) != "approved":
            assert time.monotonic() < deadline, f"registry still says {c.TAG_APPROVAL}={state}"
            time.sleep(0.5)
        page.reload()
        table = page.get_by_test_id("editable-table")
        by = table.locator(f'tr[data-row-key="{c.TAG_APPROVED_BY}"]')
        expect(by.locator("td").nth(1)).to_have_text("alice")
        expect(table.locator(f'tr[data-row-key="{c.TAG_APPROVED_DIGEST}"]')).to_contain_text("sha256:")
        expect(table.locator(f'tr[data-row-key="{c.TAG_APPROVAL}"]').locator("td").nth(1)).to_have_text("approved")
        by.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "approval-approver.png"))
    finally:
        page.context.close()
    tags = version_tags(quantgate_server, name, version)
    assert tags[c.TAG_APPROVED_BY] == "alice" and tags[c.TAG_REGISTERED_BY] == "rita"
    assert tags[c.TAG_APPROVAL_NOTE] == "card and plots reviewed"


def test_champion_alias_editor_is_refused_for_people(
    quantgate_server: Server, candidate: tuple[str, str], browser: Any, shots: Path
) -> None:
    """The version page's alias editor (the pencil beside Aliases) cannot move @champion, not even
    for an approver on an approved version: only the promotion identity can."""
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    name, version = candidate
    page = _page_as(browser, "alice")
    try:
        page.goto(f"{quantgate_server.url}/#/models/{name}/versions/{version}")
        page.get_by_role("button", name="Edit aliases").click()
        dialog = page.get_by_role("dialog")
        box = dialog.get_by_role("combobox")
        box.fill("champion")
        box.press("Enter")
        dialog.get_by_role("button", name="Save aliases").click()
        expect(dialog.get_by_text(re.compile("alias @champion is protected"))).to_be_visible()
        page.screenshot(path=str(shots / "champion-alias-refused.png"))
    finally:
        page.context.close()
    import requests

    r = requests.get(
        f"{quantgate_server.url}/api/2.0/mlflow/registered-models/alias",
        params={"name": name, "alias": c.ALIAS_CHAMPION},
        auth=quantgate_server.auth("alice"),
        timeout=60,
    )
    assert r.status_code != 200 and "alias champion not found" in r.json()["message"], r.text  # none was set


def test_a_result_tag_edited_in_the_ui_is_refused(quantgate_server: Server, browser: Any, shots: Path) -> None:
    """Issue 26: an EDIT user set quantgate.verdict=pass on a failed version (200), and it went on to
    @champion. Even an approver's edit of a result tag in the UI is refused now, with the reason."""
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    with client_env(quantgate_server) as settings:
        name, version = register_governed(quantgate_server, settings, "uifail", verdict="fail")
    page = _page_as(browser, "alice")
    try:
        edit_tag(page, quantgate_server.url, name, version, c.TAG_VERDICT, "pass")
        expect(page.get_by_text(re.compile(re.escape("only quantgate's pipeline identity"))).first).to_be_visible()
        page.screenshot(path=str(shots / "result-tag-refused.png"))
    finally:
        page.context.close()
    assert version_tags(quantgate_server, name, version)[c.TAG_VERDICT] == "fail"
