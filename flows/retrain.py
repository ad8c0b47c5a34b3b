"""Prefect flow: retrain a source model because its deployed quantized model drifted.

Triggered by the ``quantgate.drift.detected`` event (``prefect.yaml``, deployment ``retrain``):

1. the debounce record decides, atomically, whether this event may retrain
   (:mod:`quantgate.retrain.debounce`: at most one retraining per model per
   ``retrain_cooldown`` of ``monitoring/<model>.yaml``, never two for one drift run);
   a suppressed event is recorded and alerted, and the flow ends there;
2. the model is retrained the way its onboarding says (``retrain:``): the team's own training
   deployment (``run_deployment``), or quantgate's own retraining of a demo model;
3. the new source version is tagged with the drift run that caused it
   (``quantgate.trigger.drift_run``) and ``quantgate.source.registered`` is emitted, which the
   ``govern-new-source`` deployment turns into a governed ``-quantized`` candidate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from quantgate.retrain.events import SOURCE_EVENT
from quantgate.settings import configure_environment

TAG_DRIFT_RUN = "quantgate.trigger.drift_run"
TAG_DRIFT_EVENT = "quantgate.trigger.event"
TAG_RETRAIN_RUN = "quantgate.retrain.flow_run"


def _source_name(model: str) -> str:
    """``adult-income``, ``adult-income-quantized`` or an event resource id -> ``adult-income``."""
    from quantgate.registry import contract as c

    return model.removeprefix("quantgate.model.").removesuffix(c.SUFFIX)


@task(name="claim-retraining", cache_policy=NO_CACHE)
def claim(model: str, drift_run: str | None, drift_event_id: str | None) -> dict[str, Any]:
    from quantgate.monitor.job import load_monitor_spec
    from quantgate.retrain.debounce import open_ledger
    from quantgate.settings import get_settings

    s = get_settings()
    cooldown = load_monitor_spec(model, s).retrain_cooldown
    row, outcome = open_ledger(s.home_abs).claim(
        model,
        cooldown=cooldown,
        drift_run=drift_run,
        event_id=drift_event_id,
        flow_run=str(flow_run.get_id() or "") or None,
    )
    return {"claim": row.id, "decision": outcome.decision, "reason": outcome.reason, "cooldown": cooldown}


@task(name="retrain-source", cache_policy=NO_CACHE)
def retrain(model: str, tags: dict[str, str]) -> dict[str, Any]:
    from quantgate.errors import ConfigError
    from quantgate.onboarding import load_model_config, onboarding_file

    cfg = load_model_config(model)
    if cfg.retrain is None:
        raise ConfigError(
            f"'{model}' does not say how it is retrained",
            f"add a retrain: key to {onboarding_file(model)}"
            " (deployment: <flow>/<deployment>, or builtin for a demo model)",
        )
    spec = cfg.retrain
    if spec.builtin is not None:
        from quantgate.retrain.builtin import retrain_builtin

        if spec.builtin != model:
            raise ConfigError(f"{onboarding_file(model)}: builtin retraining '{spec.builtin}' is for another model")
        res = retrain_builtin(spec, tags)
        return {
            "version": str(res.version.version),
            "how": spec.label,
            "window_rows": res.window_rows,
            "notes": res.notes,
        }
    return _run_team_deployment(model, spec, tags)


def _run_team_deployment(model: str, spec: Any, tags: dict[str, str]) -> dict[str, Any]:
    """Run the team's training deployment, wait for it, and find the version it registered."""
    from prefect.deployments import run_deployment

    from quantgate.errors import RegistryError
    from quantgate.registry.mlflow_registry import client

    cl = client()
    started_ms = int(datetime.now(UTC).timestamp() * 1000)
    before = {v.version for v in cl.search_model_versions(f"name='{model}'")}
    from prefect.exceptions import ObjectNotFound

    from quantgate.errors import ConfigError
    from quantgate.onboarding import onboarding_file

    try:
        run = run_deployment(spec.deployment, parameters=dict(spec.parameters), timeout=spec.timeout.total_seconds())
    except ObjectNotFound:
        raise ConfigError(
            f"training deployment '{spec.deployment}' does not exist on the Prefect server",
            f"check retrain.deployment in {onboarding_file(model)} against `prefect deployment ls`",
        ) from None
    state = run.state
    if state is None or not state.is_completed():
        raise RegistryError(
            f"training deployment {spec.deployment} ended {state.name if state else 'without a state'}"
            f" (flow run {run.id})",
            "see that flow run in the Prefect UI",
        )
    new = [
        v
        for v in cl.search_model_versions(f"name='{model}'")
        if v.version not in before and int(v.creation_timestamp or 0) >= started_ms - 1000
    ]
    if not new:
        raise RegistryError(
            f"training deployment {spec.deployment} completed (flow run {run.id})"
            f" but registered no new version of {model}",
            f"the training flow must register its model as '{model}' in MLflow",
        )
    mv = max(new, key=lambda v: int(v.version))
    for k, v in tags.items():
        cl.set_model_version_tag(model, mv.version, k, v)
    notes = [f"training flow run {run.id}"]
    if len(new) > 1:
        notes.append(f"{len(new)} new versions appeared; governing the newest, v{mv.version}")
    return {"version": str(mv.version), "how": spec.label, "window_rows": None, "notes": notes}


def _alert(
    kind: str, model: str, title: str, summary: str, severity: str, details: dict[str, Any]
) -> list[dict[str, Any]]:
    """Through the notification outbox (routes of ``monitoring/<model>.yaml``, the project's, or
    QUANTGATE_ALERT_WEBHOOK): ``retraining`` or ``retraining_refused``."""
    from quantgate.notify import notify

    version = str(details.get("version") or details.get("drifted_version") or "-")
    out = notify(kind, model, version, summary, details=details, title=title, severity=severity)  # type: ignore[arg-type]
    return out.deliveries


def _emit_registered(model: str, version: str, drift_run: str | None) -> str | None:
    """Emit ``quantgate.source.registered``; returns why it did not go out, or None."""
    from quantgate.retrain.events import emit_source_registered

    try:
        emit_source_registered(model, version, drift_run, via="retrain-flow")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@flow(name="retrain-model", log_prints=True)
def retrain_model(
    model: str,
    drift_run: str | None = None,
    drift_event_id: str | None = None,
    drifted_version: str | None = None,
) -> dict[str, Any]:
    """Retrain ``model`` (source name, or its ``-quantized`` name) after drift, at most once per cool-down."""
    from quantgate.registry.mlflow_registry import client
    from quantgate.retrain.debounce import open_ledger
    from quantgate.retrain.spec import format_duration
    from quantgate.settings import get_settings

    configure_environment()
    log = get_run_logger()
    name = _source_name(model)
    drift_run = drift_run or None
    decision = claim(name, drift_run, drift_event_id or None)
    base = {"model": name, "drift_run": drift_run, "decision": decision["decision"], "reason": decision["reason"]}
    if decision["decision"] != "retrain":
        log.info("%s: drift event recorded, no retraining (%s)", name, decision["reason"])
        deliveries = _alert(
            "retraining_refused",
            name,
            f"Drift on {name}: retraining skipped",
            f"drift run {drift_run or '?'} recorded; {decision['reason']} "
            f"(cool-down {format_duration(decision['cooldown'])})",
            "info",
            {"drift_run": drift_run, "drifted_version": drifted_version, "decision": decision["decision"]},
        )
        return {**base, "retrained": False, "deliveries": deliveries}
    ledger = open_ledger(get_settings().home_abs)
    tags = {TAG_RETRAIN_RUN: str(flow_run.get_id() or "")}
    if drift_run:
        tags[TAG_DRIFT_RUN] = drift_run
    if drift_event_id:
        tags[TAG_DRIFT_EVENT] = drift_event_id
    try:
        out = retrain(name, tags)
    except Exception as exc:
        ledger.finish(decision["claim"], ok=False, detail=f"{type(exc).__name__}: {exc}"[:500])
        _alert("retraining_refused", name, f"Retraining of {name} failed", f"{type(exc).__name__}: {exc}", "critical",
               {"drift_run": drift_run})  # fmt: skip
        raise
    version = out["version"]
    ledger.finish(decision["claim"], ok=True, source_version=version, detail="; ".join(out["notes"]))
    event_error = _emit_registered(name, version, drift_run)
    if event_error:
        log.error("%s v%s registered but %s was not emitted: %s", name, version, SOURCE_EVENT, event_error)
        client().set_model_version_tag(name, version, "quantgate.retrain.event_error", event_error[:500])
    log.info("%s: retrained (%s) -> %s/%s; %s", name, out["how"], name, version, "; ".join(out["notes"]))
    deliveries = _alert(
        "retraining",
        name,
        f"Retrained {name} after drift: v{version}",
        f"{out['how']}: {'; '.join(out['notes'])}. Governing it into a new candidate.",
        "info",
        {"version": version, "drift_run": drift_run, "window_rows": out["window_rows"]},
    )
    return {
        **base,
        "retrained": True,
        "registered": f"{name}/{version}",
        "how": out["how"],
        "window_rows": out["window_rows"],
        "notes": out["notes"],
        "event_emitted": event_error is None,
        "event_error": event_error,
        "deliveries": deliveries,
    }
