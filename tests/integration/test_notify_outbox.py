"""The alert outbox with real parts: real HTTP to a loopback receiver that is down at first, real
processes killed mid-way, and a real Prefect notification block saved on a real Prefect server.

Each test has its own project (``quantgate.yaml`` with the routes and a short retry schedule) and
its own QUANTGATE_HOME, so the outbox holds only what the test wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port, pg_database, pg_down

pytestmark = pytest.mark.integration

HOOK_ENV = "QG_TEST_ALERT_HOOK"


def _project(tmp_path: Path, routes: str, backoff_s: float = 0.2, lease_s: float = 1.0) -> Any:
    """A team project whose quantgate.yaml routes every alert as given; Settings pointing at it."""
    from quantgate.settings import Settings

    project = tmp_path / "project"
    (project / "monitoring").mkdir(parents=True)
    (project / "quantgate.yaml").write_text(
        f"notifications:\n  routes:\n{routes}  backoff_s: {backoff_s}\n  max_attempts: 5\n  lease_s: {lease_s}\n"
    )
    return Settings(home=tmp_path / "home", project_dir=project)


def _env(s: Any, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "QUANTGATE_"))}
    return env | {"QUANTGATE_HOME": str(s.home), "QUANTGATE_PROJECT_DIR": str(s.project_dir), HOOK_ENV: url}


def test_receiver_down_then_up_gets_the_alert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quantgate.demo_receiver import LocalReceiver
    from quantgate.notify import Outbox, notify

    port = free_port()
    monkeypatch.setenv(HOOK_ENV, f"http://127.0.0.1:{port}/alerts")
    monkeypatch.delenv("QUANTGATE_ALERT_WEBHOOK", raising=False)
    s = _project(tmp_path, f"    - url_env: {HOOK_ENV}\n")
    out = notify("gate_failed", "m-quantized", "4", "size rule failed", details={"failed_rules": ["size"]}, settings=s)
    [d] = out.deliveries
    assert d["status"] == "pending" and not d["ok"] and "ConnectError" in d["error"] and d["attempts"] == 3
    box = Outbox.open(s)
    assert box.counts()["pending"] == 1
    receiver = LocalReceiver(port=port).start()
    try:
        time.sleep(0.3)  # past the 0.2 s backoff
        [a] = box.flush()
        assert a.status == "delivered" and a.attempts == 2 and a.result.status_code == 200
        assert box.flush() == []
    finally:
        receiver.stop()
    [body] = receiver.received
    assert body["id"] == out.alert.id and body["kind"] == "gate_failed" and body["model"] == "m-quantized"
    assert body["links"]["mlflow_version"].endswith("/#/models/m-quantized/versions/4")
    assert box.counts() == {"pending": 0, "sending": 0, "delivered": 1, "dead": 0}
    # every attempt is in the alert log as well
    log = [json.loads(line) for line in (s.home_abs / "alerts.jsonl").read_text().splitlines()]
    assert [line["delivery"]["ok"] for line in log] == [False, True]


_ENQUEUE_THEN_DIE_MID_SEND = """
import os, signal
from quantgate.notify import Outbox, build_alert, notify, routes_for
# 1. an alert while the receiver is down: written, one failed try, left pending
out = notify("drift", "m-quantized", "1", "drifted while the receiver was down")
assert out.deliveries[0]["status"] == "pending", out.deliveries
# 2. another alert whose sender dies in the middle of sending it (the row stays claimed)
alert = build_alert("promoted", "m-quantized", "2", "promoted; the sender dies mid-send")
box = Outbox.open()
ids = box.enqueue(alert, routes_for("m-quantized", "promoted"))
print(out.alert.id, alert.id, flush=True)
box.flush(lambda route, a: os.kill(os.getpid(), signal.SIGKILL), ids=ids)
"""


def test_nothing_is_lost_across_a_killed_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process enqueues while the receiver is down, then is killed while sending another alert.
    After the receiver starts, `quantgate notify flush` (a new outbox object) delivers both, once."""
    from typer.testing import CliRunner

    from quantgate.cli import app
    from quantgate.demo_receiver import LocalReceiver
    from quantgate.settings import reset_settings

    port = free_port()
    s = _project(tmp_path, f"    - url_env: {HOOK_ENV}\n")
    env = _env(s, f"http://127.0.0.1:{port}/alerts")
    proc = subprocess.run(
        [sys.executable, "-c", _ENQUEUE_THEN_DIE_MID_SEND],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -9, proc.stdout + proc.stderr[-2000:]  # killed, not finished
    ids = proc.stdout.split()
    for key in ("QUANTGATE_HOME", "QUANTGATE_PROJECT_DIR", HOOK_ENV):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("QUANTGATE_ALERT_WEBHOOK", raising=False)
    reset_settings()
    cli = CliRunner()
    receiver = LocalReceiver(port=port).start()
    try:
        time.sleep(1.1)  # the dead sender's 1 s lease runs out
        flushed = cli.invoke(app, ["notify", "flush"])
        assert flushed.exit_code == 0, flushed.output
        assert "2 delivered, 0 not delivered, of 2 due" in flushed.output
        again = cli.invoke(app, ["notify", "flush"])
        assert again.exit_code == 0 and "0 delivered, 0 not delivered, of 0 due" in again.output
        status = cli.invoke(app, ["notify", "status", "--json"])
    finally:
        receiver.stop()
        reset_settings()
    assert sorted(b["id"] for b in receiver.received) == sorted(ids)  # each exactly once
    rows = {r["alert_id"]: r for r in map(json.loads, status.output.splitlines())}
    assert {r["status"] for r in rows.values()} == {"delivered"}
    assert rows[ids[0]]["attempts"] == 2  # the failed try before the kill, then the flush
    assert rows[ids[1]]["attempts"] == 1  # the killed send never finished: it is not counted


def test_prefect_custom_webhook_block_route(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CustomWebhookNotificationBlock saved on the Prefect server, named by its document name in
    monitoring/<model>.yaml; the receiver is down first, then the notify-outbox flow drains it."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from quantgate.demo_receiver import LocalReceiver
    from quantgate.flows.notify import notify_outbox
    from quantgate.notify import notify
    from quantgate.settings import reset_settings

    port = free_port()
    CustomWebhookNotificationBlock(
        name="quantgate-test",
        url=f"http://127.0.0.1:{port}/prefect",
        json_data={"text": "{{subject}}\n{{body}}", "source": "{{name}}"},
        allow_private_urls=True,
    ).save("qg-test-alerts", overwrite=True)
    s = _project(tmp_path, "    - block: no-such-block\n")  # the project default: a block nobody saved
    (s.project_dir / "monitoring" / "m.yaml").write_text("model: m\nalerts:\n  - block: qg-test-alerts\n")
    monkeypatch.delenv("QUANTGATE_ALERT_WEBHOOK", raising=False)
    monkeypatch.setenv("QUANTGATE_HOME", str(s.home))
    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(s.project_dir))
    reset_settings()
    try:
        out = notify("candidate_pending", "m-quantized", "5", "waiting for a reviewer", settings=s)
        [d] = out.deliveries
        assert d["route"] == "block:qg-test-alerts" and d["status"] == "pending" and d["payload_format"] == "block"
        missing = notify("promoted", "other-quantized", "1", "routed to a missing block", settings=s)
        assert "no notification block named 'no-such-block'" in missing.deliveries[0]["error"]
        receiver = LocalReceiver(port=port).start()
        try:
            time.sleep(0.3)
            with pytest.raises(RuntimeError, match="1 of 2 due alert"):  # the missing block still fails
                notify_outbox()
        finally:
            receiver.stop()
    finally:
        reset_settings()
    [body] = receiver.received
    assert body["source"] == "quantgate-test"
    text = body["text"]
    assert text.startswith("[INFO] m-quantized v5 is waiting for approval\nwaiting for a reviewer")
    assert "mlflow version: http" in text and f"alert id: {out.alert.id}" in text


@pytest.fixture
def pg_outbox_url() -> Any:
    """A database of its own on the local PostgreSQL (created, then dropped)."""
    if reason := pg_down():
        pytest.skip(reason)
    with pg_database("qg_notify") as url:
        yield url


def test_postgres_outbox_claims_are_disjoint_and_deliver_once(
    pg_outbox_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server mode: two outbox objects on one PostgreSQL table never claim the same row; a row
    whose claimer vanished is delivered by the next flush after its lease."""
    from quantgate.demo_receiver import LocalReceiver
    from quantgate.notify import Backoff, Outbox, Route, build_alert

    receiver = LocalReceiver().start()
    monkeypatch.setenv(HOOK_ENV, receiver.url)
    try:
        first = Outbox(pg_outbox_url, backoff=Backoff(lease_s=60))
        alerts = [build_alert("drift", "m-quantized", str(v), f"window {v}") for v in range(3)]
        for a in alerts:
            first.enqueue(a, [Route(url_env=HOOK_ENV)], now=100.0)
        second = Outbox(pg_outbox_url, backoff=Backoff(lease_s=60))
        claimed_a = first._store.claim(101.0, 161.0, 2, None)
        claimed_b = second._store.claim(101.0, 161.0, 10, None)
        assert len(claimed_a) == 2 and len(claimed_b) == 1
        assert not {e.id for e in claimed_a} & {e.id for e in claimed_b}
        assert second.counts()["sending"] == 3 and second.flush(now=lambda: 150.0) == []  # all leased
        done = Outbox(pg_outbox_url).flush(now=lambda: 162.0)  # both claimers "died": leases ran out
        assert [a.status for a in done] == ["delivered"] * 3
        assert Outbox(pg_outbox_url).flush(now=lambda: 10_000.0) == []
    finally:
        receiver.stop()
    assert sorted(b["id"] for b in receiver.received) == sorted(a.id for a in alerts)
    assert "PostgreSQL table quantgate_notify_outbox" in first.describe()
