"""Notifications: every alert goes through a durable outbox to the configured routes.

The API (one call per event)::

    from quantgate.notify import notify

    out = notify(
        kind,            # "drift" | "disagreement" | "performance" | "gate_failed" | "candidate_pending"
                         # | "promoted" | "retraining" | "retraining_refused"
        model,           # the registered model the event is about, e.g. "adult-income-quantized"
        version,         # its version (for "retraining": the version whose drift caused it)
        summary,         # one or two sentences a person reads first
        links={...},     # extra links (name -> URL); the MLflow version link is always added
        details={...},   # JSON-able facts (numpy values are converted)
        run_id=...,      # optional MLflow run: adds the "mlflow_run" link ...
        report=...,      # ... and, with an artifact path of that run, the "report" link
    )
    out.deliveries       # one dict per route: route label, ok, status (delivered | pending | dead), error

``notify`` writes one outbox row per route that wants the kind (committed before anything is
sent), then tries to deliver those rows at once; a receiver that is down gets them later from
``quantgate notify flush`` or the scheduled ``notify-outbox`` deployment, with exponential backoff
between tries (:class:`quantgate.notify.outbox.Backoff`). It never raises because a receiver is
down; an alert that could not be written at all is logged as an error and returned in
``out.error`` (``strict=True`` raises instead).

Retraining (``flows/retrain.py``) calls it as::

    notify("retraining", "adult-income-quantized", "3", "drift run abc123 -> retraining adult-income",
           run_id=drift_run_id, report="drift_report.html", details={"deployment": "..."})
    notify("retraining_refused", "adult-income-quantized", "3", "inside the 24 h cool-down (last: ...)",
           details={"cooldown_h": 24, "last_retrain": "..."})

Routes (:mod:`quantgate.notify.routes`): ``alerts:`` in ``monitoring/<model>.yaml``, else
``notifications.routes`` in the project's ``quantgate.yaml``; a route is a Prefect notification
block (``{block: NAME}``) or quantgate's webhook (``{url: ...}`` / ``{url_env: VAR}``).
"""

from __future__ import annotations

from quantgate.notify.api import NotifyOutcome, flush, notify
from quantgate.notify.events import KINDS, build_alert
from quantgate.notify.outbox import Backoff, Outbox
from quantgate.notify.routes import Route, routes_for
from quantgate.notify.webhook import (
    Alert,
    DeliveryResult,
    send_webhook,
    slack_payload,
    write_alert_log,
)

__all__ = [
    "KINDS",
    "Alert",
    "Backoff",
    "DeliveryResult",
    "NotifyOutcome",
    "Outbox",
    "Route",
    "build_alert",
    "flush",
    "notify",
    "routes_for",
    "send_webhook",
    "slack_payload",
    "write_alert_log",
]
