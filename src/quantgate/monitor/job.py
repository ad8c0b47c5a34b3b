"""One monitoring run: score a window with the deployed quantized model, log the inferences,
compare the window with the reference through Evidently, and alert when it drifted.

``monitoring/<model>.yaml`` says what is watched (validated strictly).
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from quantgate.errors import ConfigError, DataError, RegistryError
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

EXPERIMENT = "quantgate-monitoring"
DRIFT_EVENT = "quantgate.drift.detected"
#: end of the last monitored window (UTC ISO time): the next inference-log window starts there
TAG_LAST_MONITOR_AT = "quantgate.last_monitor_at"


class AlertRoute(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook", "slack"]
    url: str | None = None
    url_env: str | None = None

    @model_validator(mode="after")
    def _one_url(self) -> AlertRoute:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url / url_env")
        return self

    def resolved_url(self) -> str | None:
        return self.url or (os.environ.get(self.url_env or "") or None)


class MonitorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    alias: str = c.ALIAS_CHAMPION
    reference: str
    #: a file to score; without one the window is read from the inference log of what was served
    window: str | None = None
    #: inference-log window when there was no earlier run: the last N hours
    log_hours: float = Field(default=24.0, gt=0)
    columns: list[str] | None = None
    drift_share: float = Field(default=0.3, gt=0, le=1)
    alerts: list[AlertRoute] = Field(default_factory=list)
    #: at most one drift-triggered retraining per this long (quantgate.flows.retrain): 24h, 30m, 2d
    retrain_cooldown: timedelta = Field(default=timedelta(hours=24))

    @field_validator("retrain_cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: Any) -> timedelta:
        from quantgate.retrain.spec import parse_duration

        return parse_duration(v)


def load_monitor_spec(model: str, settings: Settings | None = None) -> MonitorSpec:
    s = settings or get_settings()
    path = s.path(Path("monitoring") / f"{model}.yaml")
    if not path.exists():
        raise ConfigError(f"no monitoring spec for '{model}'", f"create {path} (see monitoring/adult-income.yaml)")
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


def _served_window(
    qname: str, version: str, last_run_at: str | None, hours: float | None, settings: Settings
) -> tuple[pd.DataFrame, datetime]:
    """What the served model saw: the inference log since the last run (or the last ``hours``)."""
    from quantgate.monitor.inference_log import inference_root, model_log_dir, read_inferences

    now = datetime.now(UTC)
    if hours is not None or last_run_at is None:
        since = now - timedelta(hours=hours or 24.0)
    else:
        since = datetime.fromisoformat(last_run_at)
    logged = read_inferences(model_log_dir(qname, inference_root(settings)), since=since, until=now)
    logged = logged[logged["version"] == version] if len(logged) else logged
    if logged.empty:
        raise DataError(
            f"the inference log of {qname} v{version} has no rows since {since.isoformat(timespec='seconds')}",
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
    from quantgate.monitor.inference_log import InferenceRecord, ParquetSink, inference_root
    from quantgate.notify import Alert, send_webhook, write_alert_log
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
        ParquetSink(inference_root(s)).write(
            [
                InferenceRecord(
                    f"monitor-{uuid.uuid4().hex}",
                    qname,
                    str(mv.version),
                    datetime.now(UTC),
                    0.0,
                    current[wrapped.input_columns],
                    preds,
                )
            ]
        )
        source = f"file {file}"
        window_end = datetime.now(UTC)
    else:
        last = (mv.tags or {}).get(TAG_LAST_MONITOR_AT)
        hours = log_hours if log_hours is not None else (None if last else spec.log_hours)
        current, window_end = _served_window(qname, str(mv.version), last, hours, s)
        preds = current[["label"]]
        source = f"inference log, {len(current)} rows"
    cols = spec.columns or [col for col in wrapped.input_columns if col in reference.columns]
    ref_preds = wrapped.predict(reference[wrapped.input_columns])
    ref = reference[cols].assign(prediction=ref_preds["label"].to_numpy())
    cur = current[cols].assign(prediction=preds["label"].to_numpy())
    result = detect_drift(ref, cur, drift_share=spec.drift_share, categorical=["prediction"])
    ensure_experiment(EXPERIMENT, s)
    with mlflow.start_run(run_name=f"monitor-{qname}-v{mv.version}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(
            {
                "quantgate.monitored": f"{qname}/{mv.version}",
                "quantgate.alias": alias,
                "quantgate.drift": str(result.dataset_drift).lower(),
                "quantgate.window": source,
            }
        )
        mlflow.log_metrics(
            {
                "drifted_share": result.drifted_share,
                "n_drifted": result.n_drifted,
                "rows": len(current),
                "positive_rate": float(preds["label"].mean()),
            }
        )
        html = Path(tmp) / "drift_report.html"
        result.write_html(html)
        mlflow.log_artifact(str(html))
        mlflow.log_dict(result.to_dict(), "drift.json")
        run_id = run.info.run_id
    cl.set_model_version_tag(qname, mv.version, "quantgate.last_monitor_run", run_id)
    cl.set_model_version_tag(qname, mv.version, "quantgate.drift", str(result.dataset_drift).lower())
    cl.set_model_version_tag(qname, mv.version, TAG_LAST_MONITOR_AT, window_end.isoformat())
    outcome = MonitorOutcome(spec.model, str(mv.version), alias, len(current), result.to_dict(), run_id)
    if result.dataset_drift:
        alert = Alert(
            title=f"Data drift on {qname} v{mv.version}",
            severity="warning",
            model=qname,
            version=str(mv.version),
            summary=(
                f"{result.n_drifted}/{result.n_columns} columns drifted (share {result.drifted_share:.2f} >= "
                f"{spec.drift_share}): {', '.join(result.drifted_columns[:8])}"
            ),
            details={"drifted_columns": result.drifted_columns, "rows": len(current), "mlflow_run": run_id},
            links={"mlflow_run": f"{s.tracking_uri} run {run_id}"},
            created_at=datetime.now(UTC),
        )
        urls = [(r.type, r.resolved_url()) for r in spec.alerts]
        if s.alert_webhook:
            urls = [("webhook", s.alert_webhook)]
        for kind, url in urls:
            if url is None:
                outcome.deliveries.append({"route": kind, "ok": False, "error": "no URL configured"})
                continue
            res = send_webhook(url, alert, format="slack" if kind == "slack" else "auto")
            write_alert_log(s.home_abs / "alerts.jsonl", alert, res)
            outcome.deliveries.append({"route": kind, **res.model_dump(mode="json")})
        outcome.event_error = _emit_drift_event(qname, str(mv.version), result.drifted_share, run_id, spec.model)
        outcome.event_emitted = outcome.event_error is None
    return outcome


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
