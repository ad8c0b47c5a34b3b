"""Links into the MLflow UI for alerts (``Settings.ui_url``: ``QUANTGATE_MLFLOW_UI_URL``, an http(s)
tracking server, or ``quantgate ui``'s address)."""

from __future__ import annotations

from urllib.parse import quote

from quantgate.settings import Settings, get_settings


def version_url(name: str, version: str | int, settings: Settings | None = None) -> str:
    """The registered model version's page."""
    ui = (settings or get_settings()).ui_url
    return f"{ui}/#/models/{quote(name, safe='')}/versions/{version}"


def run_url(
    run_id: str,
    *,
    experiment_id: str | None = None,
    artifact: str | None = None,
    settings: Settings | None = None,
) -> str:
    """A run's page, or one of its artifacts (which needs the experiment id: looked up when not given)."""
    s = settings or get_settings()
    if experiment_id is None and artifact is not None:
        from mlflow import MlflowClient  # not quantgate.registry: the registry notifies through this package

        experiment_id = (
            MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.registry_uri).get_run(run_id).info.experiment_id
        )
    if experiment_id is None:
        return f"{s.ui_url}/#/runs/{run_id}"
    base = f"{s.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{base}/artifactPath/{quote(artifact)}" if artifact else base
