"""Record: the only writer. The rows of a window scored now into the inference log, the MLflow
monitoring run (tags, metrics, the drift report, ``drift.json``, ``production.json``), the served
version's tags, and the Evidently workspace.

It runs after every check, so a run that stops earlier leaves the registry and the log as they were.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantgate.monitoring.checks import ProductionCheck, ProductionChecks
from quantgate.monitoring.drift import DriftCheck
from quantgate.monitoring.resolve import Served
from quantgate.monitoring.score import Scored
from quantgate.monitoring.spec import EXPERIMENT
from quantgate.monitoring.window import Window
from quantgate.registry.contract import TAG_DRIFT, TAG_LAST_MONITOR_AT, TAG_LAST_MONITOR_RUN
from quantgate.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    run_id: str
    experiment_id: str
    #: the served version, tagged with this run, the drift verdict and the window's end
    version_ref: str
    #: rows of a window scored now, appended to the inference log
    logged_rows: int
    #: the Evidently workspace run(s) of this window, or why none was added
    workspace: Mapping[str, Any]

    @property
    def line(self) -> str:
        logged = f"; {self.logged_rows} scored rows appended to the inference log" if self.logged_rows else ""
        return f"recorded: monitoring run {self.run_id} (tags on {self.version_ref}){logged}; {self.workspace_line}"

    @property
    def workspace_line(self) -> str:
        ws = self.workspace
        if ws.get("status") == "ok":
            return f"Evidently workspace: {ws['path']} (quantgate monitor-ui)"
        return f"Evidently workspace: not run ({ws.get('reason')})"


def drift_tag(drift: DriftCheck) -> str:
    """``true`` / ``false``, or ``not run`` when no column was compared."""
    verdict = drift.result.dataset_drift
    return "not run" if verdict is None else str(verdict).lower()


def record_monitoring(
    served: Served,
    window: Window,
    scored: Scored,
    drift: DriftCheck,
    checks: ProductionChecks,
    settings: Settings | None = None,
) -> Recorded:
    import mlflow

    from quantgate.registry.mlflow_registry import client, ensure_experiment

    s = settings or get_settings()
    logged = _append_scored_rows(window, s)
    result = drift.result
    ensure_experiment(EXPERIMENT, s)
    name = f"monitor-{served.name}-v{served.version}"
    with mlflow.start_run(run_name=name) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(
            {
                "quantgate.monitored": served.ref,
                "quantgate.alias": served.alias,
                TAG_DRIFT: drift_tag(drift),
                "quantgate.window": window.source,
                **({"quantgate.drift_not_compared": result.not_compared_text[:4000]} if result.not_compared else {}),
            }
        )
        metrics: dict[str, float] = {"rows": float(window.n)}
        if drift.status != "not run":  # no verdict: no drifted share to plot as if it were 0
            metrics |= {"drifted_share": result.drifted_share, "n_drifted": float(result.n_drifted)}
        if scored.positive_rate is not None:
            metrics["positive_rate"] = scored.positive_rate
        mlflow.log_metrics(metrics)
        if result.html:
            html = Path(tmp) / "drift_report.html"
            result.write_html(html)
            mlflow.log_artifact(str(html))
        mlflow.log_dict(result.to_dict(), "drift.json")
        _log_checks(checks, Path(tmp))
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
    cl = client(s)
    cl.set_model_version_tag(served.name, served.version, TAG_LAST_MONITOR_RUN, run_id)
    cl.set_model_version_tag(served.name, served.version, TAG_DRIFT, drift_tag(drift))
    cl.set_model_version_tag(served.name, served.version, TAG_LAST_MONITOR_AT, window.end.isoformat())
    snapshots = {"drift": result.snapshot, **checks.snapshots}
    workspace = _add_to_workspace(served, run_id, snapshots, s)
    return Recorded(run_id, experiment_id, served.ref, logged, workspace)


def _append_scored_rows(window: Window, settings: Settings) -> int:
    """A window scored now goes into the log the server writes: the next log window sees these rows."""
    from quantgate.monitor.inference_log import open_sink

    if window.scored_now is None:
        return 0
    sink = open_sink(settings=settings)
    try:
        sink.write([window.scored_now])
    finally:
        sink.close()
    return window.n


def _check_tag(check: ProductionCheck) -> str:
    f = check.figures
    if check.status != "ok":
        return "not run"
    if check.name == "disagreement":
        return "above_gate" if f.get("above_gate") else "ok"
    if check.name == "labels":
        return f"{f['labelled_rows']} labelled rows"
    return str(f.get("estimator", "not run"))


def _log_checks(checks: ProductionChecks, tmp: Path) -> None:
    """The production checks into the open MLflow run: production.json, metrics, tags, the labelled report."""
    import mlflow

    mlflow.log_dict(checks.to_dict(), "production.json")
    mlflow.set_tags(
        {
            "quantgate.disagreement": _check_tag(checks.disagreement),
            "quantgate.labels": _check_tag(checks.labels),
            "quantgate.estimator": _check_tag(checks.estimate),
        }
    )
    d, lab, est = checks.disagreement.figures, checks.labels.figures, checks.estimate.figures
    metrics = {
        "disagreement_rate": d.get("rate"),
        "disagreement_p_value": d.get("p_value"),
        "labelled_accuracy": lab.get("accuracy"),
        "labelled_rows": lab.get("labelled_rows"),
        "estimated_accuracy": est.get("estimated_accuracy"),
    }
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
    if "classification" in checks.snapshots:
        html = tmp / "classification_report.html"
        checks.snapshots["classification"].save_html(str(html))
        mlflow.log_artifact(str(html))


def _add_to_workspace(served: Served, run_id: str, snapshots: dict[str, Any], s: Settings) -> dict[str, Any]:
    """Each Evidently snapshot of this window into the local workspace; a failure is reported, not raised."""
    from quantgate.monitor.production import error_line
    from quantgate.monitor.workspace import add_runs

    named = {
        f"v{served.version} {kind} (run {run_id[:8]})": snap for kind, snap in snapshots.items() if snap is not None
    }
    try:
        return {"status": "ok", **add_runs(served.name, named, s)}
    except Exception as exc:
        log.error("adding the monitoring run to the Evidently workspace failed: %s", error_line(exc))
        return {"status": "not run", "reason": error_line(exc)}
