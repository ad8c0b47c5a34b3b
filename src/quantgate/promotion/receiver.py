"""The receiver of MLflow model-registry webhooks: an approval in the MLflow UI becomes a Prefect
event that triggers the ``promote`` deployment, and a new version of an onboarded source model
becomes ``quantgate.source.registered``, which triggers the ``govern-new-source`` deployment.

MLflow (3.17, server mode only) POSTs ``{"entity", "action", "timestamp", "data"}`` with headers
``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (unix seconds) and ``X-MLflow-Signature``:
``"v1," + base64(HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>"))`` (Standard Webhooks
style; MLflow ships the signing side only, ``mlflow.webhooks.delivery._generate_hmac_signature``,
and no verification helper, so :func:`expected_signature` is its mirror and a unit test holds the
two together). A delivery is accepted only when, in this order:

1. the signature matches (compared in constant time) -> else 401;
2. the timestamp is within ``max_age`` seconds of now -> else 401 (stale);
3. its delivery id was never accepted before (SQLite under ``$QUANTGATE_HOME``, so a restart does
   not forget) -> else 409 (replay).

A ``model_version_tag.set`` of ``quantgate.approval`` = ``approved`` / ``rejected`` is recorded in
the ledger; ``approved`` also emits the Prefect event ``quantgate.approval.granted`` on resource
``mlflow.model-version.<name>.<version>`` (payload ``name``, ``version``). If recording or emitting
fails the delivery id is released and the answer is 5xx, so MLflow's retry is not taken for a
replay.

A ``model_version.created`` of an onboarded source model (``registry/models/<name>.yaml`` or
``quantgate.*`` tags on the version; never a ``-quantized`` name) emits
``quantgate.source.registered`` (:mod:`quantgate.retrain.events`: the event id is derived from
name and version, so the retrain flow's own report of a version it registered is the same event).
Other events and tags are acknowledged and ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from quantgate.errors import ConfigError
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    from mlflow.entities.webhook import Webhook
    from starlette.applications import Starlette

log = logging.getLogger(__name__)

APPROVAL_EVENT = "quantgate.approval.granted"
SECRET_ENV = "QUANTGATE_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
MIN_SECRET_LENGTH = 16


def resource_id(name: str, version: str) -> str:
    return f"mlflow.model-version.{name}.{version}"


def webhook_secret() -> str:
    secret = os.environ.get(SECRET_ENV, "")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{SECRET_ENV} is {'not set' if not secret else 'too short'}: the webhook's shared secret "
            f"(at least {MIN_SECRET_LENGTH} characters)",
            f'e.g. export {SECRET_ENV}="$(python -c "import secrets; print(secrets.token_urlsafe(32))")"',
        )
    return secret


def expected_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_ok(secret: str, delivery_id: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Constant-time comparison against every signature in the header (space-separated, as
    Standard Webhooks allows during a secret rotation)."""
    want = expected_signature(secret, delivery_id, timestamp, body).encode()
    return any(hmac.compare_digest(want, sig.strip().encode()) for sig in signature.split() if sig.strip())


class DeliveryLog:
    """Delivery ids already accepted, in SQLite: a replay is refused even after a restart."""

    def __init__(self, path: Path, keep_seconds: int) -> None:
        self.path, self.keep = path, keep_seconds
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS deliveries (id TEXT PRIMARY KEY, timestamp INTEGER, seen REAL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def claim(self, delivery_id: str, timestamp: int) -> bool:
        """True the first time ``delivery_id`` is seen (and remembers it), False after."""
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM deliveries WHERE seen < ?", (time.time() - self.keep,))
            try:
                db.execute("INSERT INTO deliveries VALUES (?, ?, ?)", (delivery_id, timestamp, time.time()))
            except sqlite3.IntegrityError:
                return False
            return True

    def release(self, delivery_id: str) -> None:
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM deliveries WHERE id = ?", (delivery_id,))


@dataclass(frozen=True)
class ReceiverConfig:
    secret: str
    db: Path
    max_age: int = 300
    path: str = "/mlflow"


def receiver_config(max_age: int = 300, settings: Settings | None = None) -> ReceiverConfig:
    s = settings or get_settings()
    return ReceiverConfig(secret=webhook_secret(), db=s.home_abs / "webhook_deliveries.sqlite", max_age=max_age)


@dataclass
class Outcome:
    status: int
    detail: str
    event_id: str | None = None


def emit_approval(name: str, version: str, delivery_id: str) -> str:
    """Emit ``quantgate.approval.granted``; returns the event id or raises when it cannot go out."""
    from prefect.events import emit_event

    event = emit_event(
        event=APPROVAL_EVENT,
        resource={
            "prefect.resource.id": resource_id(name, version),
            "prefect.resource.name": f"{name}/{version}",
            "mlflow.model.name": name,
            "mlflow.model.version": version,
        },
        payload={"name": name, "version": version, "delivery_id": delivery_id},
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"mlflow-webhook-delivery:{delivery_id}"),
    )
    if event is None:
        raise RuntimeError("Prefect events are disabled here: set PREFECT_API_URL to the Prefect server")
    return str(event.id)


def handle(cfg: ReceiverConfig, deliveries: DeliveryLog, headers: dict[str, str], body: bytes) -> Outcome:
    """Check and act on one delivery (see the module doc); pure HTTP-free core of the app."""
    h = {k.lower(): v for k, v in headers.items()}
    delivery_id, ts, sig = (h.get(x.lower(), "") for x in (DELIVERY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not (delivery_id and ts and sig):
        return Outcome(400, f"missing {DELIVERY_HEADER}, {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    if not signature_ok(cfg.secret, delivery_id, ts, body, sig):
        return Outcome(401, "bad signature")
    if not ts.isdigit() or abs(time.time() - int(ts)) > cfg.max_age:
        return Outcome(401, f"stale timestamp (more than {cfg.max_age}s from now)")
    if not deliveries.claim(delivery_id, int(ts)):
        return Outcome(409, f"delivery {delivery_id} was already received (replay)")
    try:
        message = json.loads(body)
        entity, action, data = message.get("entity"), message.get("action"), message.get("data") or {}
    except (ValueError, AttributeError):
        return Outcome(400, "body is not an MLflow webhook JSON object")
    if (entity, action) == ("model_version", "created"):
        return _source_created(deliveries, delivery_id, data)
    if (entity, action) != ("model_version_tag", "set") or data.get("key") != c.TAG_APPROVAL:
        return Outcome(200, f"ignored {entity}.{action}")
    decision, name, version = str(data.get("value")), str(data.get("name")), str(data.get("version"))
    if decision not in ("approved", "rejected"):
        return Outcome(200, f"ignored {c.TAG_APPROVAL}={decision}")
    try:
        from quantgate.promotion.service import record_review

        record_review(name, version, decision, actor="unknown (webhook payload carries no user)")
        event_id = emit_approval(name, version, delivery_id) if decision == "approved" else None
    except Exception as exc:
        return _not_done(deliveries, delivery_id, f"{name}/{version} {decision}", "record or emit", exc)
    detail = f"{name}/{version} {decision}" + (f": emitted {APPROVAL_EVENT} {event_id}" if event_id else "")
    log.info(detail)
    return Outcome(200, detail, event_id)


def _not_done(deliveries: DeliveryLog, delivery_id: str, what: str, action: str, exc: Exception) -> Outcome:
    """A delivery that could not be acted on: its id is released (MLflow retries with the same id;
    let it through) and the answer is 503."""
    deliveries.release(delivery_id)
    log.error("delivery %s (%s) failed: %s", delivery_id, what, exc)
    return Outcome(503, f"could not {action}: {type(exc).__name__}: {exc}")


def onboarded_source(name: str, tags: dict[str, str] | None = None) -> bool:
    """Is ``name`` a source model quantgate governs (not one of its own ``-quantized`` models)?"""
    from quantgate.onboarding import onboarding_file

    if not name or name.endswith(c.SUFFIX):
        return False
    return onboarding_file(name).exists() or any(k.startswith("quantgate.") for k in (tags or {}))


def _source_created(deliveries: DeliveryLog, delivery_id: str, data: dict[str, object]) -> Outcome:
    from quantgate.retrain.events import SOURCE_EVENT, emit_source_registered

    name, version = str(data.get("name") or ""), str(data.get("version") or "")
    raw = data.get("tags")
    tags = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    if not onboarded_source(name, tags):
        return Outcome(200, f"ignored model_version.created of {name or '?'} (not an onboarded source model)")
    drift_run = tags.get("quantgate.trigger.drift_run")
    try:
        event_id = emit_source_registered(name, version, drift_run, via="mlflow-webhook")
    except Exception as exc:
        return _not_done(deliveries, delivery_id, f"{name}/{version} created", f"emit {SOURCE_EVENT}", exc)
    detail = f"{name}/{version} created: emitted {SOURCE_EVENT} {event_id}"
    log.info(detail)
    return Outcome(200, detail, event_id)


def create_app(cfg: ReceiverConfig) -> Starlette:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    deliveries = DeliveryLog(cfg.db, keep_seconds=2 * cfg.max_age + 60)

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        out = await run_in_threadpool(handle, cfg, deliveries, dict(request.headers), body)
        return JSONResponse({"detail": out.detail, "event_id": out.event_id}, status_code=out.status)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route(cfg.path, receive, methods=["POST"]), Route("/health", health)])


def register_webhook(
    url: str, secret: str, *, name: str = "quantgate-approvals", settings: Settings | None = None
) -> Webhook:
    """Create (or point at ``url`` again) the MLflow webhook on ``model_version_tag.set`` (approvals)
    and ``model_version.created`` (new source versions to govern)."""
    from quantgate.registry.mlflow_registry import client

    s = settings or get_settings()
    if s.embedded_mlflow:
        raise ConfigError(
            "MLflow webhooks fire only from an MLflow server, not from the embedded SQLite store",
            "set MLFLOW_TRACKING_URI=http://HOST:PORT of the quantgate server",
        )
    cl = client(s)
    events = ["model_version_tag.set", "model_version.created"]
    for hook in cl.list_webhooks():
        if hook.name == name:
            return cl.update_webhook(hook.webhook_id, url=url, events=events, secret=secret, status="ACTIVE")
    return cl.create_webhook(
        name, url, events, description="quantgate: approvals -> Prefect event -> promote", secret=secret
    )
