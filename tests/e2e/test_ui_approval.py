"""A reviewer approves the candidate in the real MLflow UI (`quantgate ui`), driven by Playwright
with Debian's chromium (scripts/install-test-tools.sh); then `quantgate promote` accepts it.

Runs after tests/e2e/test_demo_loop.py, which checks that promotion is refused while pending.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import TIMEOUT_MS, chromium, needs_chromium, new_page
from helpers import client as _client
from helpers import free_port
from helpers import run_cli as _run
from quantgate_server import serving

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.e2e, needs_chromium]
MODEL = "adult-income-quantized"
SERVER_START_S = 120  # `quantgate ui` until HTTP answers


@pytest.fixture(scope="module")
def ui_url(demo_home: tuple[Path, dict[str, str], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`quantgate ui` on a free loopback port over the demo's store; stopped (with children) after."""
    _, env, _ = demo_home
    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "quantgate-ui.log"
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "quantgate.cli", "ui", "--port", str(port)]
    with serving(cmd, env, log, f"{url}/health", timeout=SERVER_START_S):
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    pg = new_page(browser)
    try:
        yield pg
    finally:
        pg.context.close()


def test_reviewer_approves_in_mlflow_ui_then_promote(
    demo_home: tuple[Path, dict[str, str], str], ui_url: str, page: Any, tmp_path: Path
) -> None:
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    home, env, _ = demo_home
    cl = _client(home)
    # the demo approved v1 itself (labelled demo reviewer) to monitor it; a new candidate waits for a person
    governed = _run(env, "quantize", "--model", "adult-income/1", timeout=900)
    assert governed.returncode == 0, governed.stdout[-2000:] + governed.stderr[-2000:]
    version = str(cl.get_model_version_by_alias(MODEL, "candidate").version)
    assert version != "1"
    before = cl.get_model_version(MODEL, version)
    assert "candidate" in (before.aliases or []), f"the demo left no candidate: {before.aliases}"
    assert before.tags["quantgate.verdict"] == "pass"
    assert before.tags["quantgate.approval"] == "pending"

    # the version page: the model card (Markdown description) is rendered
    page.goto(f"{ui_url}/#/models/{MODEL}/versions/{version}")
    expect(page.get_by_role("heading", name=re.compile(r"^Model card"))).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"^Verdict"))).to_be_visible()

    # the Tags table: edit quantgate.approval in place, pending -> approved, Save
    row = page.get_by_test_id("editable-table").locator('tr[data-row-key="quantgate.approval"]')
    expect(row).to_contain_text("pending")
    row.get_by_test_id("editable-table-button-edit").click()
    value = row.get_by_test_id("editable-table-edited-input")
    expect(value).to_have_value("pending")
    value.fill("approved")
    row.get_by_test_id("editable-table-button-save").click()
    expect(value).to_have_count(0)  # left edit mode: the save request came back
    expect(row.locator("td").nth(1)).to_have_text("approved")

    # the click wrote the registry
    deadline = time.monotonic() + 30
    while (approval := cl.get_model_version(MODEL, version).tags.get("quantgate.approval")) != "approved":
        assert time.monotonic() < deadline, f"registry still says quantgate.approval={approval}"
        time.sleep(0.5)

    promoted = _run(env, "promote", "adult-income", timeout=300)
    assert promoted.returncode == 0, promoted.stdout[-2000:] + promoted.stderr[-2000:]
    assert str(cl.get_model_version_by_alias(MODEL, "champion").version) == version

    # the UI shows it after a reload: approved tag, champion alias
    page.reload()
    expect(page.get_by_role("heading", name=re.compile(r"^Model card"))).to_be_visible()
    expect(page.get_by_role("status", name="champion")).to_be_visible()  # the "@ champion" alias tag
    page.screenshot(path=str(tmp_path / "approved-version-top.png"))
    row = page.get_by_test_id("editable-table").locator('tr[data-row-key="quantgate.approval"]')
    expect(row.locator("td").nth(1)).to_have_text("approved")
    row.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "approved-version-tags.png"))

    # the monitoring run's artifacts: the Evidently drift report is listed
    exp = cl.get_experiment_by_name("quantgate-monitoring")
    run = cl.search_runs([exp.experiment_id])[0]
    page.goto(f"{ui_url}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}/artifacts")
    expect(page.get_by_text("drift_report.html", exact=True)).to_be_visible()
    page.screenshot(path=str(tmp_path / "monitoring-artifacts.png"))
