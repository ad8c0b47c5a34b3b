"""``quantgate.source.registered``: a new source version to govern (the ``govern-new-source``
deployment's trigger in prefect.yaml).

Two emitters, one event: the retrain flow after it registers a version, and ``quantgate receiver``
when MLflow's model-registry webhook reports ``model_version.created`` for an onboarded source
model (server mode: any new version, however it was registered). The event id is derived from
``name/version``, so when both report the same version Prefect's trigger service, which skips an
event id it has already seen, governs it once.
"""

from __future__ import annotations

import uuid

SOURCE_EVENT = "quantgate.source.registered"


def source_event_id(model: str, version: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{SOURCE_EVENT}:{model}/{version}")


def emit_source_registered(model: str, version: str, drift_run: str | None, *, via: str) -> str:
    """Emit the event for ``model`` v``version``; returns its id, raises when it cannot go out.
    ``via`` says who noticed the version (``retrain-flow`` or ``mlflow-webhook``)."""
    from prefect.events import emit_event

    event = emit_event(
        event=SOURCE_EVENT,
        resource={
            "prefect.resource.id": f"quantgate.source.{model}",
            "quantgate.model": model,
            "quantgate.version": str(version),
            "quantgate.drift_run": drift_run or "",
        },
        payload={"model": model, "version": str(version), "drift_run": drift_run, "via": via},
        id=source_event_id(model, str(version)),
    )
    if event is None:
        raise RuntimeError("Prefect events are disabled here (no API and no event worker)")
    return str(event.id)
