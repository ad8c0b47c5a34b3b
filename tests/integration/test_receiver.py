"""Promotion on approval, its first half for real: an `mlflow server` on loopback with a webhook
registered by `quantgate webhook register`, delivering over HTTP to `quantgate receiver`, which
records the approval in the ledger and emits `quantgate.approval.granted` to a real Prefect server
(the session's test harness), read back from its events API. Forged, stale and replayed
deliveries are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import ROOT, free_port

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
SECRET = "test-secret-" + uuid.uuid4().hex
MODEL = "approvals-test-quantized"


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} did not answer {url} in {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def stack(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """mlflow server (plain app, SQLite) + quantgate receiver, both on loopback, with the webhook
    registered through the CLI; the receiver emits to the session's Prefect harness."""
    import prefect.settings

    tmp = tmp_path_factory.mktemp("receiver")
    mlflow_port, receiver_port = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
    base |= {"QUANTGATE_PROJECT_DIR": str(ROOT), "QUANTGATE_HOME": str(tmp / "home"), "COLUMNS": "200"}
    server_env = base | {
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",  # loopback http receiver: test/dev only
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    mlflow_proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
         "--artifacts-destination", (tmp / "artifacts").as_uri(),
         "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
        env=server_env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=open(tmp / "mlflow.log", "wb"),
        start_new_session=True,
    )  # fmt: skip
    client_env = base | {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value()),
        "QUANTGATE_WEBHOOK_SECRET": SECRET,
    }
    receiver_proc = subprocess.Popen(
        [sys.executable, "-m", "quantgate.cli", "receiver", "--port", str(receiver_port), "--max-age", "60"],
        env=client_env, cwd=ROOT, stdout=open(tmp / "receiver.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{mlflow_port}/health", mlflow_proc, "mlflow server")
        _wait_http(f"http://127.0.0.1:{receiver_port}/health", receiver_proc, "quantgate receiver")
        url = f"http://127.0.0.1:{receiver_port}/mlflow"
        reg = subprocess.run(
            [sys.executable, "-m", "quantgate.cli", "webhook", "register", "--url", url],
            env=client_env, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert reg.returncode == 0, reg.stdout + reg.stderr
        assert "model_version_tag.set" in reg.stdout and "model_version.created" in reg.stdout
        yield {"env": client_env, "url": url, "mlflow": client_env["MLFLOW_TRACKING_URI"], "tmp": tmp}
    finally:
        _stop(receiver_proc)
        _stop(mlflow_proc)


def _mlflow(stack: dict[str, Any]) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=stack["mlflow"], registry_uri=stack["mlflow"])


def _events(resource: str, name: str = "quantgate.approval.granted") -> list[Any]:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    async def read() -> list[Any]:
        async with get_client() as pc:
            page = await pc.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=[name]),
                    resource=EventResourceFilter(id=[resource]),
                ),
                limit=50,  # the server's maximum page
            )
            return list(page.events)

    return asyncio.run(read())


def _signed(body: bytes, *, ts: int | None = None, delivery: str | None = None, secret: str = SECRET) -> dict[str, str]:
    from quantgate.promotion.receiver import expected_signature

    delivery = delivery or str(uuid.uuid4())
    stamp = str(int(time.time()) if ts is None else ts)
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": expected_signature(secret, delivery, stamp, body),
    }


def _approval_body(version: str) -> bytes:
    return json.dumps(
        {
            "entity": "model_version_tag",
            "action": "set",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "data": {"name": MODEL, "version": version, "key": "quantgate.approval", "value": "approved"},
        }
    ).encode()


def test_approval_in_mlflow_becomes_a_prefect_event(stack: dict[str, Any]) -> None:
    cl = _mlflow(stack)
    run = cl.create_run(cl.create_experiment("approvals-test"))
    cl.create_registered_model(MODEL)
    v1 = cl.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version
    cl.set_model_version_tag(MODEL, v1, "quantgate.approval", "pending")  # ignored by the receiver
    cl.set_model_version_tag(MODEL, v1, "quantgate.approval", "approved")  # what a reviewer does in the UI

    resource = f"mlflow.model-version.{MODEL}.{v1}"
    deadline, events = time.time() + 90, []
    while time.time() < deadline and not events:
        time.sleep(1)
        events = _events(resource)
    log = (stack["tmp"] / "receiver.log").read_text()
    assert events, f"no quantgate.approval.granted event for {resource}; receiver log:\n{log[-2000:]}"
    ev = events[0]
    assert ev.payload["name"] == MODEL and ev.payload["version"] == str(v1)
    assert len(events) == 1  # the "pending" tag set emitted nothing

    # the approval is a ledger entry in the MLflow server's own store
    from quantgate.promotion.ledger import MlflowLedger

    entries = [s.entry for s in MlflowLedger(cl).entries(MODEL)]
    assert [(e["action"], e["version"]) for e in entries] == [("approval", str(v1))]
    assert MlflowLedger(cl).verify(MODEL).ok


def test_forged_stale_and_replayed_deliveries_refused(stack: dict[str, Any]) -> None:
    from quantgate.promotion.ledger import MlflowLedger

    cl = _mlflow(stack)
    url = stack["url"]
    body = _approval_body("2")
    before = len(MlflowLedger(cl).entries(MODEL))

    forged = httpx.post(url, content=body, headers=_signed(body, secret="not-the-secret-at-all"), timeout=30)
    assert forged.status_code == 401 and "signature" in forged.json()["detail"]
    tampered_headers = _signed(body)
    tampered = httpx.post(url, content=body.replace(b'"2"', b'"3"'), headers=tampered_headers, timeout=30)
    assert tampered.status_code == 401
    stale = httpx.post(url, content=body, headers=_signed(body, ts=int(time.time()) - 3600), timeout=30)
    assert stale.status_code == 401 and "stale" in stale.json()["detail"]
    unsigned = httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert unsigned.status_code == 400

    # a correctly signed delivery of another tag is accepted once; the same delivery again is a replay
    other = json.dumps(
        {
            "entity": "model_version_tag",
            "action": "set",
            "data": {"name": MODEL, "version": "1", "key": "x", "value": "y"},
        }
    ).encode()
    headers = _signed(other)
    first = httpx.post(url, content=other, headers=headers, timeout=30)
    assert first.status_code == 200 and "ignored" in first.json()["detail"]
    again = httpx.post(url, content=other, headers=headers, timeout=30)
    assert again.status_code == 409 and "replay" in again.json()["detail"]
    db = stack["tmp"] / "home" / "webhook_deliveries.sqlite"
    import sqlite3

    with sqlite3.connect(db) as con:  # remembered on disk: a restarted receiver refuses it too
        ids = {row[0] for row in con.execute("SELECT id FROM deliveries")}
    assert headers["X-MLflow-Delivery-Id"] in ids

    assert len(MlflowLedger(cl).entries(MODEL)) == before  # nothing refused was recorded as a review
    assert not _events(f"mlflow.model-version.{MODEL}.2") and not _events(f"mlflow.model-version.{MODEL}.3")


def test_new_source_version_becomes_a_source_registered_event(stack: dict[str, Any]) -> None:
    """A version of an onboarded source model created in the MLflow server (however it was
    registered) is reported by the webhook and becomes quantgate.source.registered, with the id the
    retrain flow would give the same version; other models' versions emit nothing."""
    from quantgate.retrain.events import SOURCE_EVENT, source_event_id

    cl = _mlflow(stack)
    run = cl.create_run(cl.create_experiment("sources-test"))
    source = "adult-income"  # onboarded: registry/models/adult-income.yaml in the project
    other = "not-onboarded-" + uuid.uuid4().hex[:6]
    for name in (source, other):
        cl.create_registered_model(name)
    v = cl.create_model_version(source, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version
    cl.create_model_version(other, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)

    deadline, events = time.time() + 90, []
    while time.time() < deadline and not events:
        time.sleep(1)
        events = _events(f"quantgate.source.{source}", SOURCE_EVENT)
    log = (stack["tmp"] / "receiver.log").read_text()
    assert events, f"no {SOURCE_EVENT} event for {source}; receiver log:\n{log[-2000:]}"
    [ev] = events
    assert ev.payload["version"] == str(v) and ev.payload["via"] == "mlflow-webhook"
    assert ev.resource["quantgate.model"] == source and ev.resource["quantgate.version"] == str(v)
    assert ev.id == source_event_id(source, str(v))  # the retrain flow's report of it is the same event
    # the receiver's answer for the other kinds of model (a signed delivery like MLflow's)
    for name in (other, "adult-income-quantized"):
        body = json.dumps(
            {"entity": "model_version", "action": "created", "data": {"name": name, "version": "1", "tags": {}}}
        ).encode()
        r = httpx.post(stack["url"], content=body, headers=_signed(body), timeout=30)
        assert r.status_code == 200 and "not an onboarded source model" in r.json()["detail"], r.text
    assert not _events(f"quantgate.source.{other}", SOURCE_EVENT)
