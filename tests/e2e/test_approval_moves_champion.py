"""Issue #14, the whole approval loop with identity and no command line after the click:

a real ``mlflow server --app-name quantgate`` (SQLite, loopback; its webhook model_version_tag.set
registered to ``quantgate receiver``), a real ``prefect server`` with ``prefect deploy --name
promote-on-approval`` and a process worker running as the promotion identity
``quantgate-promoter``. In headless chromium the approver alice logs in to the MLflow UI and sets
``quantgate.approval=approved`` on rita's candidate; the server stamps it, the webhook reaches the
receiver, the Prefect event triggers the deployment, and ``@champion`` moves: the ledger reads the
approval, then the promotion by the deployment.

The screenshot of the version page with @champion (``approval-loop-champion.png``) goes where
tests/browser.py says (``QUANTGATE_SCREENSHOTS=docs/img`` for the README).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import TIMEOUT_MS, chromium, edit_approval, needs_chromium, new_page, screenshots_dir
from helpers import ROOT, free_port, run_cli, settled_ledger, start_logged, stop_group, wait_http
from quantgate_server import PASSWORDS, Server, bootstrapped_server, client_env, register_governed, version_tags

from quantgate.registry import contract as c

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.e2e, needs_chromium]
BIN = Path(sys.executable).parent
PROMOTER = "quantgate-promoter"
CHAMPION_WAIT_S = 180


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The quantgate server app, prefect server, receiver, deployment and worker, all on loopback."""
    tmp = tmp_path_factory.mktemp("approval-loop")
    webhook_env = {
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    procs = []
    with bootstrapped_server(tmp / "mlflow", extra_env=webhook_env) as server:
        prefect_port, receiver_port = free_port(), free_port()
        base = {k: v for k, v in server.env.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
        prefect_env = base | {
            "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "COLUMNS": "200",
        }
        # the services (receiver: ledger entry "approval"; worker: the promotion) act as the promoter
        service_env = prefect_env | {
            "QUANTGATE_HOME": str(server.home),
            "QUANTGATE_PROJECT_DIR": str(server.project),
            "QUANTGATE_WEBHOOK_SECRET": "loop-secret-" + uuid.uuid4().hex,
            "MLFLOW_TRACKING_URI": server.url,
            "MLFLOW_TRACKING_USERNAME": PROMOTER,
            "MLFLOW_TRACKING_PASSWORD": PASSWORDS[PROMOTER],
        }
        try:
            procs.append(
                start_logged(
                    [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
                    prefect_env, tmp / "prefect.log",
                )
            )  # fmt: skip
            procs.append(
                start_logged(
                    [sys.executable, "-m", "quantgate.cli", "receiver", "--port", str(receiver_port)],
                    service_env, tmp / "receiver.log",
                )
            )  # fmt: skip
            wait_http(f"http://127.0.0.1:{prefect_port}/api/health", procs[0], tmp / "prefect.log")
            wait_http(f"http://127.0.0.1:{receiver_port}/health", procs[1], tmp / "receiver.log")
            admin = service_env | {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORDS["admin"]}
            reg = run_cli(admin, "webhook", "register", "--url", f"http://127.0.0.1:{receiver_port}/mlflow")
            assert reg.returncode == 0, reg.stdout + reg.stderr
            prefect = str(BIN / "prefect")
            for args in (
                ("work-pool", "create", "quantgate", "--type", "process"),
                ("deploy", "--name", "promote-on-approval"),
            ):
                done = _run(service_env, prefect, "--no-prompt", *args)
                assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            procs.append(
                start_logged(
                    [prefect, "worker", "start", "--pool", "quantgate", "--type", "process"],
                    service_env, tmp / "worker.log",
                )
            )  # fmt: skip
            yield {"server": server, "tmp": tmp}
        finally:
            for p in reversed(procs):
                stop_group(p)


def _run(env: dict[str, str], *args: str) -> Any:
    import subprocess

    return subprocess.run(list(args), env=env, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)


def _champion(server: Server, name: str) -> str | None:
    import requests

    r = requests.get(
        f"{server.url}/api/2.0/mlflow/registered-models/alias",
        params={"name": name, "alias": c.ALIAS_CHAMPION},
        auth=server.auth("alice"),
        timeout=60,
    )
    return str(r.json()["model_version"]["version"]) if r.status_code == 200 else None


def test_ui_approval_moves_champion_through_the_deployment(
    loop: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    server, tmp = loop["server"], loop["tmp"]
    with client_env(server) as settings:
        name, version = register_governed(server, settings, "loop", registrant="rita")
    assert _champion(server, name) is None

    with chromium() as browser:
        page = new_page(browser, height=1100, credentials=("alice", PASSWORDS["alice"]))
        row = edit_approval(page, server.url, name, version, "approved")
        expect(row.get_by_test_id("editable-table-edited-input")).to_have_count(0)  # the save came back

        deadline, champion = time.monotonic() + CHAMPION_WAIT_S, None
        while champion != version and time.monotonic() < deadline:
            time.sleep(2)
            champion = _champion(server, name)
        logs = {f: (tmp / f).read_text()[-1500:] for f in ("receiver.log", "worker.log")}
        assert champion == version, f"@champion is {champion}, not {version}, after {CHAMPION_WAIT_S} s: {logs}"

        page.reload()
        expect(page.get_by_role("status", name="champion")).to_be_visible()  # the "@ champion" alias tag
        by = page.get_by_test_id("editable-table").locator(f'tr[data-row-key="{c.TAG_APPROVED_BY}"]')
        expect(by.locator("td").nth(1)).to_have_text("alice")
        page.screenshot(path=str(screenshots_dir(tmp_path_factory) / "approval-loop-champion.png"))
        page.context.close()

    tags = version_tags(server, name, version)
    assert tags[c.TAG_APPROVAL] == "approved" and tags[c.TAG_APPROVED_BY] == "alice"
    assert tags[c.TAG_APPROVED_AT] and tags[c.TAG_APPROVED_DIGEST].startswith("sha256:")

    from quantgate_server import as_user

    from quantgate.promotion.ledger import MlflowLedger
    from quantgate.registry.mlflow_registry import client

    with client_env(server) as settings, as_user("alice"):
        book = MlflowLedger(client(settings))
        entries = settled_ledger(book, name, champion, 2)
        assert [e["action"] for e in entries] == ["approval", "promotion"], entries
        assert entries[0]["actor"] == "alice" and entries[1]["approved_by"] == "alice"
        assert entries[1]["actor"] == "prefect:promote-on-approval"
        assert book.verify(name, champion=champion).ok
