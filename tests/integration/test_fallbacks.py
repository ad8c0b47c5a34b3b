"""Silent fallbacks that became clear errors (issue #12), on a real MLflow store."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _version_with_profile(settings: Any, name: str, text: str) -> Any:
    import mlflow

    from quantgate.pipeline import PROFILE_ARTIFACT
    from quantgate.registry.mlflow_registry import client, ensure_experiment

    cl = client(settings)
    ensure_experiment("fallback-tests", settings)
    with mlflow.start_run() as run:
        mlflow.log_text(text, PROFILE_ARTIFACT)
    cl.create_registered_model(name)
    return cl.create_model_version(name, f"runs:/{run.info.run_id}/quantgate", run_id=run.info.run_id)


def test_unreadable_stored_profile_is_an_error_not_a_fallback(settings: Any) -> None:
    from quantgate.errors import DataError
    from quantgate.onboarding import ModelConfig
    from quantgate.pipeline import Source, stored_profile

    mv = _version_with_profile(settings, "fallback-profile", "{ this is not a profile")
    cfg = ModelConfig(name="fallback-profile", label="y", calibration_data="c.csv", evaluation_data="e.csv")
    with pytest.raises(DataError, match="fallback-profile"):
        stored_profile(Source(mv, cfg))


def test_no_stored_profile_is_reported_as_none(settings: Any) -> None:
    import mlflow

    from quantgate.onboarding import ModelConfig
    from quantgate.pipeline import Source, stored_profile
    from quantgate.registry.mlflow_registry import client, ensure_experiment

    cl = client(settings)
    ensure_experiment("fallback-tests", settings)
    with mlflow.start_run() as run:
        mlflow.log_text("x", "other.txt")
    cl.create_registered_model("fallback-noprofile")
    mv = cl.create_model_version("fallback-noprofile", f"runs:/{run.info.run_id}/other.txt", run_id=run.info.run_id)
    cfg = ModelConfig(name="fallback-noprofile", label="y", calibration_data="c.csv", evaluation_data="e.csv")
    assert stored_profile(Source(mv, cfg)) is None


def test_sweep_names_a_model_whose_registry_search_fails(settings: Any) -> None:
    from quantgate.errors import RegistryError
    from quantgate.pipeline import ungoverned_versions

    with pytest.raises(RegistryError, match="registry search for onboarded model"):
        ungoverned_versions(["it's-broken"], settings)
