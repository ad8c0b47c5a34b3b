"""Data: the onboarding's data files, the stored reference profile, the signature's columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate.errors import DataError, first_rows
from quantgate.onboarding import ModelConfig
from quantgate.settings import Settings
from quantgate.steps.context import PROFILE_ARTIFACT, Datasets, Source

if TYPE_CHECKING:
    from quantgate.validate import DataProfile


def load_datasets(cfg: ModelConfig, settings: Settings | None = None) -> Datasets:
    from quantgate.data.datasets import file_digest, read_table

    paths = {
        "calibration": cfg.calibration_data,
        "evaluation": cfg.evaluation_data,
        "reference": cfg.reference_data or cfg.calibration_data,
    }
    frames, resolved, digests = {}, {}, {}
    for role, rel in paths.items():
        p = cfg.resolve(rel, settings)
        if not p.exists():
            raise DataError(
                f"{role} data for '{cfg.name}' not found: {p}",
                f"fix {role}_data in registry/models/{cfg.name}.yaml (or run quantgate demo)",
            )
        frames[role] = read_table(p)
        resolved[role], digests[role] = str(p), file_digest(p)
    for role in ("evaluation",):
        if cfg.label not in frames[role].columns:
            raise DataError(
                f"{role} data {resolved[role]} has no label column '{cfg.label}'", "set label: in the onboarding file"
            )
        unlabelled = frames[role][cfg.label].isna()
        if unlabelled.any():
            raise DataError(
                f"{role} data {resolved[role]} has {int(unlabelled.sum())} of {len(unlabelled)} rows with no label in "
                f"column '{cfg.label}' (rows {first_rows(frames[role].index[unlabelled])})",
                "drop those rows or fill their labels: every evaluation row is scored against its label",
            )
    return Datasets(
        frames["calibration"],
        frames["evaluation"],
        frames["reference"],
        resolved,
        digests,
        reference_is_calibration=not cfg.reference_data,
    )


def stored_profile(source: Source) -> DataProfile | None:
    """The reference-data profile stored with the source model at registration, if any."""
    import mlflow

    from quantgate.validate import read_profile

    if not source.version.run_id:
        return None
    folder, _, leaf = PROFILE_ARTIFACT.rpartition("/")
    stored = mlflow.artifacts.list_artifacts(run_id=source.version.run_id, artifact_path=folder)
    if not any(a.path.rsplit("/", 1)[-1] == leaf for a in stored):
        return None  # none stored: the suite is derived from the reference data file (the card says which)
    where = f"runs:/{source.version.run_id}/{PROFILE_ARTIFACT}"
    try:  # stored but unreadable is an error, never a quiet switch to another suite
        text = mlflow.artifacts.load_text(where)
    except OSError as exc:
        raise DataError(
            f"the reference profile stored with {source.ref} ({where}) cannot be read: {str(exc).splitlines()[0]}",
            "re-log the profile with the source model, or delete the artifact to derive the suite from reference_data",
        ) from exc
    return read_profile(text, source=f"{where} (of {source.ref})")


def signature_columns(source: Source) -> list[str]:
    """Input column names of the source version's MLflow signature ([] when it has none, or when it
    is a tensor signature, whose inputs have no column names)."""
    from mlflow.models import get_model_info

    sig = get_model_info(f"models:/{source.version.name}/{source.version.version}").signature
    if sig is None or sig.inputs is None or sig.inputs.is_tensor_spec() or not sig.inputs.has_input_names():
        return []
    return [str(n) for n in sig.inputs.input_names()]
