"""One monitoring run: score a window with the deployed quantized model, log the inferences,
compare the window with the reference through Evidently, and alert when it drifted.

``monitoring/<model>.yaml`` says what is watched (validated strictly).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from quantgate.errors import ConfigError, DataError, RegistryError
from quantgate.notify.routes import Route as AlertRoute  # an alerts: item (webhook URL or Prefect block)
from quantgate.notify.routes import monitoring_example
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

EXPERIMENT = "quantgate-monitoring"
DRIFT_EVENT = "quantgate.drift.detected"
#: end of the last monitored window (UTC ISO time): the next inference-log window starts there
TAG_LAST_MONITOR_AT = "quantgate.last_monitor_at"


class MonitorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    alias: str = c.ALIAS_CHAMPION
    reference: str
    #: a file to score; without one the window is read from the inference log of what was served
    window: str | None = None
    #: inference-log window when there was no earlier run: the last N hours
    log_hours: float = Field(default=24.0, gt=0)
    #: where this model's server logs (``quantgate serve --inference-log``): a directory or a
    #: ``postgresql://`` URL, ``${VARS}`` expanded; default QUANTGATE_INFERENCE_LOG, else
    #: ``$QUANTGATE_HOME/inference``
    inference_log: str | None = None
    columns: list[str] | None = None
    drift_share: float = Field(default=0.3, gt=0, le=1)
    #: logged rows re-scored with the fp32 source per run (production disagreement)
    disagreement_sample: int = Field(default=2000, gt=0)
    #: significance of the one-sided tests against the gate's figures (disagreement, accuracy)
    alpha: float = Field(default=0.01, gt=0, lt=1)
    #: drift compares at most this many rows per window (a uniform sample beyond; see detect_drift)
    drift_max_rows: int | None = Field(default=100_000, gt=0)
    #: logged rows re-scored with the served version for a multi-class label-free estimate (the log
    #: keeps only the top score; CBPE needs every class's probability)
    estimate_sample: int = Field(default=20_000, gt=0)
    alerts: list[AlertRoute] = Field(default_factory=list)
    #: at most one drift-triggered retraining per this long (quantgate.flows.retrain): 24h, 30m, 2d
    retrain_cooldown: timedelta = Field(default=timedelta(hours=24))

    @field_validator("retrain_cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: Any) -> timedelta:
        from quantgate.retrain.spec import parse_duration

        return parse_duration(v)


def positive_rate(labels: pd.Series, classes: list[Any]) -> float | None:
    """The share of served predictions of a binary model that are its second class (its positive
    one, whatever the labels are called); None for k > 2 classes, where the prediction column's
    drift says more than one rate."""
    from quantgate.models.outputs import class_index

    if len(classes) != 2 or not len(labels):
        return None
    return float((class_index(labels, classes, what="served predictions") == 1).mean())


def load_monitor_spec(model: str, settings: Settings | None = None) -> MonitorSpec:
    s = settings or get_settings()
    path = s.path(Path("monitoring") / f"{model}.yaml")
    if not path.exists():
        raise ConfigError(f"no monitoring spec for '{model}'", f"create {path} ({monitoring_example(path.parent)})")
    try:
        return MonitorSpec.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        parts = [
            f"{'.'.join(map(str, e['loc']))}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        ]
        raise ConfigError(f"invalid monitoring spec {path}: " + "; ".join(parts)) from None


@dataclass
class MonitorOutcome:
    model: str
    version: str
    alias: str
    rows: int
    drift: dict[str, Any]
    run_id: str
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    #: whether the Prefect drift event went out (None: no drift, so none was due)
    event_emitted: bool | None = None
    event_error: str | None = None
    #: production checks beside drift (quantgate.monitor.checks): each has status "ok" or "not run"
    disagreement: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)
    #: the Evidently workspace run(s) of this window, or why none was added
    workspace: dict[str, Any] = field(default_factory=dict)

    @property
    def disagreement_alert(self) -> bool:
        return bool(self.disagreement.get("above_gate"))

    @property
    def performance_alert(self) -> bool:
        """Labelled accuracy (overall or a group's) or the label-free estimate below the gate's figure."""
        return bool(
            self.labels.get("below_gate") or self.labels.get("groups_below_gate") or self.estimate.get("below_gate")
        )

    @property
    def drifted(self) -> bool:
        return bool(self.drift["dataset_drift"])


def _deployed_version(cl: Any, name: str, alias: str) -> tuple[Any, str]:
    """The version behind ``alias`` (``champion`` unless the spec names another), or a clear stop.

    There is deliberately no fallback to ``candidate``: monitoring a version nobody promoted
    would report on a model that serves no traffic.
    """
    from mlflow.exceptions import MlflowException

    try:
        return cl.get_model_version_by_alias(name, alias), alias
    except MlflowException:
        raise RegistryError(
            f"{name} has no '@{alias}' version to monitor",
            f"approve a candidate and run: quantgate promote --model {name.removesuffix(c.SUFFIX)}",
        ) from None


def spec_log_target(spec: MonitorSpec, settings: Settings) -> str | Path | None:
    """The spec's ``inference_log`` (a ``postgresql://`` URL as written, ``${VARS}`` expanded; a
    directory resolved like the spec's other paths), or None for the default."""
    from quantgate.pg import is_pg_url

    if spec.inference_log is None:
        return None
    text = settings.expand(spec.inference_log)
    return text if is_pg_url(text) else settings.path(text)


def _served_window(
    qname: str,
    version: str,
    last_run_at: str | None,
    hours: float | None,
    settings: Settings,
    target: str | Path | None = None,
) -> tuple[pd.DataFrame, datetime]:
    """What the served model saw: the inference log since the last run (or the last ``hours``).

    The log is ``target`` (the spec's ``inference_log``), else where ``quantgate serve`` writes by
    default (:func:`~quantgate.monitor.inference_log.log_target`): ``QUANTGATE_INFERENCE_LOG`` (a
    ``postgresql://`` URL or a directory), else ``$QUANTGATE_HOME/inference``. A database that
    cannot be read raises (ConfigError); an empty window raises (DataError).
    """
    from quantgate.monitor.inference_log import read_served

    now = datetime.now(UTC)
    if hours is not None or last_run_at is None:
        since = now - timedelta(hours=hours or 24.0)
    else:
        since = datetime.fromisoformat(last_run_at)
    logged, where = read_served(qname, since=since, until=now, target=target, settings=settings)
    logged = logged[logged["version"] == version] if len(logged) else logged
    if logged.empty:
        raise DataError(
            f"the inference log of {qname} v{version} ({where}) has no rows since "
            f"{since.isoformat(timespec='seconds')}",
            "serve traffic first (quantgate serve), widen --log-hours, or pass --window FILE",
        )
    return logged.reset_index(drop=True), now


def run_monitor(
    model: str,
    *,
    window: str | None = None,
    log_hours: float | None = None,
    settings: Settings | None = None,
) -> MonitorOutcome:
    """One monitoring run on ``@champion``.

    The current window is, in order: ``window`` (a file, scored now and logged), the spec's
    ``window`` file, or the inference log of what was served since the last run (or the last
    ``log_hours``/spec ``log_hours`` hours), whose logged predictions are used as they are.
    """
    import mlflow

    from quantgate.data.datasets import read_table
    from quantgate.monitor import detect_drift
    from quantgate.monitor.checks import run_window_checks
    from quantgate.monitor.inference_log import InferenceRecord, open_sink
    from quantgate.notify import notify
    from quantgate.registry.mlflow_registry import client, ensure_experiment, load_wrapped

    s = settings or get_settings()
    spec = load_monitor_spec(model, s)
    cl = client(s)
    qname = c.quantized_name(spec.model)
    mv, alias = _deployed_version(cl, qname, spec.alias)
    wrapped = load_wrapped(mv)
    reference = read_table(s.path(spec.reference))
    file = window or (spec.window if log_hours is None else None)
    if file is not None:
        current = read_table(s.path(file))
        preds = wrapped.predict(current[wrapped.input_columns])
        request_id = f"monitor-{uuid.uuid4().hex}"
        sink = open_sink(settings=s)  # the log the server writes: the next log window sees these rows
        try:
            sink.write(
                [
                    InferenceRecord(
                        request_id,
                        qname,
                        str(mv.version),
                        datetime.now(UTC),
                        0.0,
                        current[wrapped.input_columns],
                        preds,
                    )
                ]
            )
        finally:
            sink.close()
        source = f"file {file}"
        window_end = datetime.now(UTC)
        current = current.assign(request_id=request_id, request_row=range(len(current)))
    else:
        last = (mv.tags or {}).get(TAG_LAST_MONITOR_AT)
        hours = log_hours if log_hours is not None else (None if last else spec.log_hours)
        current, window_end = _served_window(qname, str(mv.version), last, hours, s, spec_log_target(spec, s))
        preds = current[[col for col in ("label", "score", "probability") if col in current.columns]]
        source = f"inference log, {len(current)} rows"
    cols = spec.columns or [col for col in wrapped.input_columns if col in reference.columns]
    ref_preds = wrapped.predict(reference[wrapped.input_columns])
    ref = reference[cols].assign(prediction=ref_preds["label"].to_numpy())
    cur = current[cols].assign(prediction=preds["label"].to_numpy())
    result = detect_drift(
        ref, cur, drift_share=spec.drift_share, categorical=["prediction"], max_rows=spec.drift_max_rows
    )
    checks = run_window_checks(
        cl,
        mv,
        current.reset_index(drop=True),
        preds.reset_index(drop=True),
        list(wrapped.classes),
        sample=spec.disagreement_sample,
        alpha=spec.alpha,
        settings=s,
        served_proba=lambda rows: wrapped.predict_proba(rows[wrapped.input_columns]),
        estimate_sample=spec.estimate_sample,
    )
    ensure_experiment(EXPERIMENT, s)
    with mlflow.start_run(run_name=f"monitor-{qname}-v{mv.version}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(
            {
                "quantgate.monitored": f"{qname}/{mv.version}",
                "quantgate.alias": alias,
                "quantgate.drift": _drift_tag(result),
                "quantgate.window": source,
                **({"quantgate.drift_not_compared": result.not_compared_text[:4000]} if result.not_compared else {}),
            }
        )
        rate = positive_rate(preds["label"], list(wrapped.classes))
        mlflow.log_metrics(
            {
                "drifted_share": result.drifted_share,
                "n_drifted": result.n_drifted,
                "rows": len(current),
                **({"positive_rate": rate} if rate is not None else {}),
            }
        )
        if result.html:
            html = Path(tmp) / "drift_report.html"
            result.write_html(html)
            mlflow.log_artifact(str(html))
        mlflow.log_dict(result.to_dict(), "drift.json")
        _log_checks(checks, Path(tmp))
        run_id = run.info.run_id
        experiment_id = run.info.experiment_id
    cl.set_model_version_tag(qname, mv.version, "quantgate.last_monitor_run", run_id)
    cl.set_model_version_tag(qname, mv.version, "quantgate.drift", _drift_tag(result))
    cl.set_model_version_tag(qname, mv.version, TAG_LAST_MONITOR_AT, window_end.isoformat())
    outcome = MonitorOutcome(spec.model, str(mv.version), alias, len(current), result.to_dict(), run_id)
    outcome.disagreement, outcome.labels, outcome.estimate = checks.disagreement, checks.labels, checks.estimate
    outcome.workspace = _add_to_workspace(qname, mv.version, run_id, {"drift": result.snapshot, **checks.snapshots}, s)
    if result.dataset_drift:
        sent = notify(
            "drift",
            qname,
            str(mv.version),
            f"{result.n_drifted}/{result.n_columns} columns drifted (share {result.drifted_share:.2f} >= "
            f"{spec.drift_share}): {', '.join(result.drifted_columns[:8])}"
            + (f"; not compared: {result.not_compared_text}" if result.not_compared else ""),
            details={
                "drifted_columns": result.drifted_columns,
                "not_compared": result.not_compared,
                "rows": len(current),
                "mlflow_run": run_id,
            },
            run_id=run_id,
            experiment_id=experiment_id,
            report="drift_report.html",
            settings=s,
        )
        outcome.deliveries.extend(sent.deliveries)
        outcome.event_error = _emit_drift_event(qname, str(mv.version), result.drifted_share, run_id, spec.model)
        outcome.event_emitted = outcome.event_error is None
    for kind, summary, details, report in not_run_alerts(result, checks.disagreement, checks.labels, checks.estimate):
        sent = notify(
            kind,
            qname,
            str(mv.version),
            summary,
            title=f"Monitoring check not run on {qname} v{mv.version}",
            details={**details, "mlflow_run": run_id},
            run_id=run_id,
            experiment_id=experiment_id,
            report=report,
            settings=s,
        )
        outcome.deliveries.extend(sent.deliveries)
    if outcome.disagreement_alert:
        d = checks.disagreement
        sent = notify(
            "disagreement",
            qname,
            str(mv.version),
            f"{d['k']}/{d['n']} sampled rows ({100 * d['rate']:.1f}%, {100 * d['interval'][0]:.1f}-"
            f"{100 * d['interval'][1]:.1f}%) disagree with the fp32 source {d['source']}; the gate approved a "
            f"flip rate of {100 * d['gate_rate']:.1f}% (p={d['p_value']:.2g} < {d['alpha']})",
            details={"kind": "disagreement", **{k: v for k, v in d.items() if k != "status"}, "mlflow_run": run_id},
            run_id=run_id,
            experiment_id=experiment_id,
            report="production.json",
            settings=s,
        )
        outcome.deliveries.extend(sent.deliveries)
    if outcome.performance_alert:
        summary, details, report = performance_message(checks.labels, checks.estimate)
        sent = notify(
            "performance",
            qname,
            str(mv.version),
            summary,
            details={**details, "mlflow_run": run_id},
            run_id=run_id,
            experiment_id=experiment_id,
            report=report,
            settings=s,
        )
        outcome.deliveries.extend(sent.deliveries)
    return outcome


def _drift_tag(result: Any) -> str:
    return "not run" if result.dataset_drift is None else str(result.dataset_drift).lower()


def not_run_alerts(
    drift: Any, disagreement: dict[str, Any], labels: dict[str, Any], estimate: dict[str, Any]
) -> list[tuple[str, str, dict[str, Any], str]]:
    """(kind, summary, details, report) of each check that did not run and must alert: drift with no
    column compared, and every production check that crashed (``error``). The kind is the check's own
    alert kind, ``details.kind`` is ``not_run``."""
    out = []
    if drift.dataset_drift is None:
        out.append(
            (
                "drift",
                f"drift not run: no column could be compared ({drift.not_compared_text})",
                {"kind": "not_run", "check": "drift", "not_compared": drift.not_compared},
                "drift.json",
            )
        )
    for name, kind, check in (
        ("disagreement", "disagreement", disagreement),
        ("labelled accuracy", "performance", labels),
        ("estimated accuracy", "performance", estimate),
    ):
        if check.get("error"):
            out.append(
                (
                    kind,
                    f"{name} check not run: {check['error']}",
                    {"kind": "not_run", "check": name, "error": check["error"]},
                    "production.json",
                )
            )
    return out


def _pct(value: float, interval: list[float]) -> str:
    return f"{100 * value:.1f}% ({100 * interval[0]:.1f}-{100 * interval[1]:.1f}%)"


def performance_message(labels: dict[str, Any], estimate: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """The ``performance`` alert: which accuracy fell below the gate's (labelled, estimated or both),
    by how much, and the report to open (the labelled classification report when labels said so)."""
    below: dict[str, tuple[dict[str, Any], str]] = {}
    if labels.get("below_gate"):
        below["labelled"] = (
            labels,
            f"labelled accuracy {_pct(labels['accuracy'], labels['interval'])} on {labels['n']} delayed labels "
            f"is below the gate's {100 * labels['gate_accuracy']:.1f}% (p={labels['p_value']:.2g})",
        )
    if estimate.get("below_gate"):
        below["estimated"] = (
            estimate,
            f"estimated accuracy {_pct(estimate['estimated_accuracy'], estimate['interval'])} "
            f"({estimate['estimator']}, {estimate['n']} rows) lies below the gate's "
            f"{_pct(estimate['gate_accuracy'], estimate['gate_interval'])}",
        )
    parts = [text for _, text in below.values()]
    details: dict[str, Any] = {"kind": "performance", "below_gate": list(below)}
    for key, (check, _) in below.items():
        details[key] = {k: v for k, v in check.items() if k not in ("status", "groups")}
    if labels.get("groups_below_gate"):
        details["groups_below_gate"] = labels["groups_below_gate"]
        parts.append(f"group(s) below their gate figure: {', '.join(labels['groups_below_gate'])}")
    report = "classification_report.html" if labels.get("below_gate") else "production.json"
    return "; ".join(parts), details, report


def _log_checks(checks: Any, tmp: Path) -> None:
    """The production checks into the open MLflow run: production.json, metrics, tags, the labelled report."""
    import mlflow

    mlflow.log_dict(checks.to_dict(), "production.json")
    d, lab, est = checks.disagreement, checks.labels, checks.estimate
    mlflow.set_tags(
        {
            "quantgate.disagreement": ("above_gate" if d.get("above_gate") else "ok")
            if d["status"] == "ok"
            else "not run",
            "quantgate.labels": f"{lab['labelled_rows']} labelled rows" if lab["status"] == "ok" else "not run",
            "quantgate.estimator": est.get("estimator", "not run"),
        }
    )
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


def _add_to_workspace(qname: str, version: Any, run_id: str, snapshots: dict[str, Any], s: Settings) -> dict[str, Any]:
    """Each Evidently snapshot of this window into the local workspace; a failure is reported, not raised."""
    from quantgate.monitor.workspace import add_runs

    named = {f"v{version} {kind} (run {run_id[:8]})": snap for kind, snap in snapshots.items() if snap is not None}
    try:
        return {"status": "ok", **add_runs(qname, named, s)}
    except Exception as exc:
        log.error("adding the monitoring run to the Evidently workspace failed: %s: %s", type(exc).__name__, exc)
        return {"status": "not run", "reason": f"{type(exc).__name__}: {exc}"}


def _emit_drift_event(name: str, version: str, share: float, run_id: str, source: str) -> str | None:
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
