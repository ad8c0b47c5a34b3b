"""One monitoring run without an orchestrator: the steps in sequence (``quantgate.flows.monitor``
runs the same sequence as Prefect tasks), and the outcome both return."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from quantgate.monitoring.alert import Alerted, send_alerts
from quantgate.monitoring.checks import ProductionChecks, above_gate, below_gate, run_checks
from quantgate.monitoring.drift import DriftCheck, check_drift
from quantgate.monitoring.record import Recorded, record_monitoring
from quantgate.monitoring.resolve import Served, resolve_served
from quantgate.monitoring.score import score_window
from quantgate.monitoring.window import Window, read_window
from quantgate.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorOutcome:
    """What one run found and did, JSON-ready (the flow returns :meth:`summary`)."""

    #: the source model (``adult-income``); the served model is ``<model>-quantized``
    model: str
    version: str
    alias: str
    rows: int
    #: ``drift.json``: ``status`` (ok | partial | not run), ``dataset_drift`` (None when not run), ...
    drift: dict[str, Any]
    run_id: str
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    #: whether the Prefect drift event went out (None: no drift, so none was due)
    event_emitted: bool | None = None
    event_error: str | None = None
    #: production checks beside drift: each has status "ok" or "not run" (with ``error`` when it crashed)
    disagreement: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)
    #: the Evidently workspace run(s) of this window, or why none was added
    workspace: dict[str, Any] = field(default_factory=dict)
    #: one line per check, "not run" with its reason (drift when it was not fully compared, the
    #: production checks, the Evidently workspace)
    check_lines: list[str] = field(default_factory=list)

    @property
    def disagreement_alert(self) -> bool:
        return above_gate(self.disagreement)

    @property
    def performance_alert(self) -> bool:
        """Labelled accuracy (overall or a group's) or the label-free estimate below the gate's figure."""
        return below_gate(self.labels, self.estimate)

    @property
    def drifted(self) -> bool:
        """True only on a verdict of drift: not for "no drift", not for "not run"."""
        return self.drift.get("dataset_drift") is True

    @classmethod
    def from_steps(
        cls,
        served: Served,
        window: Window,
        drift: DriftCheck,
        checks: ProductionChecks,
        recorded: Recorded,
        alerted: Alerted,
    ) -> MonitorOutcome:
        lines = [drift.line] if drift.status != "ok" else []
        return cls(
            model=served.source,
            version=served.version,
            alias=served.alias,
            rows=window.n,
            drift=drift.result.to_dict(),
            run_id=recorded.run_id,
            deliveries=[dict(d) for d in alerted.deliveries],
            event_emitted=alerted.event_emitted,
            event_error=alerted.event_error,
            disagreement=checks.disagreement.as_dict(),
            labels=checks.labels.as_dict(),
            estimate=checks.estimate.as_dict(),
            workspace=dict(recorded.workspace),
            check_lines=[*lines, *checks.lines, recorded.workspace_line],
        )

    def summary(self) -> dict[str, Any]:
        """What the ``monitor-model`` flow returns (the CLI and the demo read it)."""
        return {
            "model": self.model,
            "version": self.version,
            "alias": self.alias,
            "rows": self.rows,
            "drift": self.drift.get("dataset_drift"),  # None: not run (no column compared), never "no drift"
            "drift_status": self.drift.get("status"),
            "drifted_share": self.drift["drifted_share"],
            "drifted_columns": self.drift.get("drifted_columns", []),
            "not_compared": self.drift.get("not_compared", {}),
            "run_id": self.run_id,
            "deliveries": self.deliveries,
            "disagreement": self.disagreement,
            "disagreement_alert": self.disagreement_alert,
            "labels": self.labels,
            "estimate": self.estimate,
            "workspace": self.workspace,
            "event_emitted": self.event_emitted,
            "checks": self.check_lines,
        }


def run_monitor(
    model: str,
    *,
    window: str | None = None,
    log_hours: float | None = None,
    settings: Settings | None = None,
) -> MonitorOutcome:
    """One monitoring run on the spec's alias (``@champion``): resolve -> window -> score -> drift
    -> checks -> record -> alert.

    The window is, in order: ``window`` (a file, scored now and logged), the spec's ``window``
    file, or the inference log of what was served since the last run (or the last
    ``log_hours``/spec ``log_hours`` hours), whose logged predictions are used as they are.
    """
    s = settings or get_settings()
    served = resolve_served(model, s)
    log.info(served.line)
    win = read_window(served, window=window, log_hours=log_hours, settings=s)
    log.info(win.line)
    scored = score_window(served, win, s)
    log.info(scored.line)
    drift = check_drift(served, scored)
    log.info(drift.line)
    checks = run_checks(served, win, scored, s)
    log.info(checks.line)
    recorded = record_monitoring(served, win, scored, drift, checks, s)
    log.info(recorded.line)
    alerted = send_alerts(served, recorded, drift, [*drift.notices, *checks.notices], s)
    log.info(alerted.line)
    return MonitorOutcome.from_steps(served, win, drift, checks, recorded, alerted)
