"""A registry client changes no process-wide state; configure_mlflow sets MLflow's fluent URIs
once, and leaves MLFLOW_* in the environment as the user set them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_client_changes_no_global_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from quantgate.registry.mlflow_registry import client
    from quantgate.settings import Settings, configure_mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    # mlflow's own globals, put back as they were (set_*_uri would also export MLFLOW_*_URI)
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    try:
        environ = dict(os.environ)
        a, b = Settings(home=tmp_path / "a"), Settings(home=tmp_path / "b")
        configure_mlflow(a)
        assert mlflow.get_tracking_uri() == a.tracking_uri and mlflow.get_registry_uri() == a.registry_uri
        cl = client(b)
        assert cl._tracking_client.tracking_uri == b.tracking_uri
        # the fluent API still points at a; the environment is as it was
        assert mlflow.get_tracking_uri() == a.tracking_uri and dict(os.environ) == environ
        configure_mlflow(a)  # already there: a no-op
        assert dict(os.environ) == environ
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
