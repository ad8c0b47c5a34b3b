"""Alert: every notice the steps asked for, sent once the run they link to is recorded, and the
Prefect drift event that triggers retraining (only on a verdict of drift).

A notice's alert goes to the routes of its kind (``drift``, ``disagreement``, ``performance``); a
check that did not run alerts with ``details.kind = "not_run"`` and the error's line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quantgate.monitoring.context import Notice
from quantgate.monitoring.drift import DriftCheck
from quantgate.monitoring.record import Recorded
from quantgate.monitoring.resolve import Served
from quantgate.monitoring.spec import DRIFT_EVENT
from quantgate.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alerted:
    #: one per route and alert: ``alert`` (the kind), ``route``, ``ok``, ``status``, ...
    deliveries: tuple[Mapping[str, Any], ...]
    #: the notices sent, in order
    notices: tuple[Notice, ...]
    #: whether the Prefect drift event went out (None: no drift, so none was due)
    event_emitted: bool | None = None
    event_error: str | None = None

    @property
    def line(self) -> str:
        if not self.notices:
            return "alerts: none due"
        kinds = ", ".join(f"{n.kind}{' (not run)' if n.not_run else ''}" for n in self.notices)
        delivered = sum(1 for d in self.deliveries if d.get("ok"))
        event = ""
        if self.event_emitted is not None:
            event = f"; drift event {'emitted' if self.event_emitted else 'NOT emitted: ' + str(self.event_error)}"
        return f"alerts: {kinds}; {delivered}/{len(self.deliveries)} deliveries ok{event}"


def send_alerts(
    served: Served,
    recorded: Recorded,
    drift: DriftCheck,
    notices: Sequence[Notice],
    settings: Settings | None = None,
) -> Alerted:
    """Send ``notices`` (the drift step's, then the checks'), linked to the recorded run; emit the
    drift event when the window drifted."""
    from quantgate.notify import notify

    s = settings or get_settings()
    deliveries: list[Mapping[str, Any]] = []
    for n in notices:
        sent = notify(
            n.kind,
            served.name,
            served.version,
            n.summary,
            title=n.title.format(model=served.name, version=served.version) if n.title else None,
            details={**n.details, "mlflow_run": recorded.run_id},
            run_id=recorded.run_id,
            experiment_id=recorded.experiment_id,
            report=n.report,
            settings=s,
        )
        deliveries.extend(sent.deliveries)
    if not drift.drifted:
        return Alerted(tuple(deliveries), tuple(notices))
    error = emit_drift_event(served.name, served.version, drift.result.drifted_share, recorded.run_id, served.source)
    return Alerted(tuple(deliveries), tuple(notices), error is None, error)


def emit_drift_event(name: str, version: str, share: float, run_id: str, source: str) -> str | None:
    """Emit the Prefect event that triggers retraining; returns why it did not go out, or None.

    A failure is logged as an error and returned (not raised): the drift was found, recorded and
    alerted, and the caller shows that the retraining trigger is missing instead of losing it.
    """
    try:
        from prefect.events import emit_event

        event = emit_event(
            event=DRIFT_EVENT,
            resource={
                "prefect.resource.id": f"quantgate.model.{name}",
                "quantgate.version": version,
                "quantgate.source_model": source,  # what the retrain deployment retrains
                "quantgate.drift_run": run_id,  # the MLflow monitoring run: carried to the new card
            },
            payload={"drifted_share": share, "mlflow_run": run_id},
        )
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    else:
        if event is not None:
            return None
        error = "Prefect events are disabled here (no API and no event worker)"
    log.error("drift event %s for %s v%s was not emitted: %s", DRIFT_EVENT, name, version, error)
    return error
