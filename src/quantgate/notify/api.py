"""The one entry point every emitter calls: :func:`notify` (see :mod:`quantgate.notify` for the contract)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Unpack

from quantgate.notify.events import AlertFields, build_alert
from quantgate.notify.links import run_url, version_url
from quantgate.notify.outbox import Attempt, Outbox
from quantgate.notify.routes import Route, routes_for
from quantgate.notify.webhook import Alert
from quantgate.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class NotifyOutcome:
    """What happened to one event: its alert, the routes it was written for, the first delivery of each."""

    alert: Alert | None
    routes: list[Route] = field(default_factory=list)
    entry_ids: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    #: why the alert could not even be written to the outbox (bad route config, outbox unreachable)
    error: str | None = None

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """One dict per route: ``route``, ``alert`` (the event kind), ``ok``, ``status`` (delivered |
        pending | dead), the delivery result."""
        kind = self.alert.kind if self.alert is not None else None
        return [{"alert": kind, **d} for d in self._deliveries()]

    def _deliveries(self) -> list[dict[str, Any]]:
        if self.error is not None:
            return [{"route": "outbox", "ok": False, "status": "not enqueued", "error": self.error}]
        tried = {a.entry_id: a for a in self.attempts}
        out: list[dict[str, Any]] = []
        for entry_id, route in zip(self.entry_ids, self.routes, strict=True):
            a = tried.get(entry_id)
            if a is None:  # another flusher holds it, or it was not drained here
                out.append({"route": route.label, "ok": False, "status": "pending", "entry": entry_id})
            else:
                out.append(
                    {"route": route.label, "status": a.status, "entry": entry_id, **a.result.model_dump(mode="json")}
                )
        return out


def notify(
    kind: str,
    model: str,
    version: str | int,
    summary: str,
    *,
    run_id: str | None = None,
    experiment_id: str | None = None,
    report: str | None = None,
    drain: bool = True,
    strict: bool = False,
    settings: Settings | None = None,
    **fields: Unpack[AlertFields],
) -> NotifyOutcome:
    """Write one alert to the outbox for every route that wants ``kind``, then try to deliver it now.

    The alert is :func:`~quantgate.notify.events.build_alert`'s, from ``kind``, ``model``,
    ``version``, ``summary`` and ``fields`` (``links``, ``details``, ``title``, ``severity``).
    Adds the links every message carries: ``mlflow_version`` (``model``/``version`` in the MLflow
    UI), and with ``run_id`` the ``mlflow_run`` and, with ``report`` (an artifact path of that run),
    ``report``. Delivery failures never raise: the rows stay in the outbox for ``quantgate notify
    flush`` / the ``notify-outbox`` deployment. A failure to write the alert at all (invalid route
    configuration, outbox database down) is logged as an error and returned in ``error``, or raised
    with ``strict=True``.
    """
    s = settings or get_settings()
    full = {"mlflow_version": version_url(model, version, s)}
    try:
        if run_id:
            full["mlflow_run"] = run_url(run_id, experiment_id=experiment_id, settings=s)
            if report:
                full["report"] = run_url(run_id, experiment_id=experiment_id, artifact=report, settings=s)
    except Exception as exc:  # a link is worth less than the alert: say so in the alert
        log.warning("no MLflow run link for %s: %s", run_id, exc)
        full["mlflow_run"] = f"run {run_id} (link unavailable: {type(exc).__name__})"
    full.update(fields.pop("links", None) or {})
    alert = build_alert(kind, model, version, summary, full, **fields)
    outcome = NotifyOutcome(alert)
    try:
        outcome.routes = routes_for(model, kind, s)
        box = Outbox.open(s)
        outcome.entry_ids = box.enqueue(alert, outcome.routes)
    except Exception as exc:
        if strict:
            raise
        outcome.error = f"{type(exc).__name__}: {exc}"
        log.error("%s alert for %s v%s was not written to the outbox: %s", kind, model, version, outcome.error)
        return outcome
    if not outcome.routes:
        log.info("no notification route wants '%s' alerts for %s", kind, model)
    if drain and outcome.entry_ids:
        outcome.attempts = box.flush(ids=outcome.entry_ids)
    return outcome


def flush(settings: Settings | None = None, limit: int = 100) -> list[Attempt]:
    """Deliver every due alert of the configured outbox (``quantgate notify flush``, ``notify-outbox``)."""
    s = settings or get_settings()
    return Outbox.open(s).flush(limit=limit)
