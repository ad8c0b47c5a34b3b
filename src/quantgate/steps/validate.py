"""Validate: calibration-data governance, the flow's gate before anything is quantized."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from quantgate.errors import DataError, ValidationFailed
from quantgate.onboarding import ModelConfig
from quantgate.settings import Settings, get_settings
from quantgate.steps.context import Datasets

if TYPE_CHECKING:
    from quantgate.models.wrapped import WrappedModel
    from quantgate.policy import Policy
    from quantgate.validate import CalibrationReport, DataProfile


def govern_calibration_data(
    cfg: ModelConfig,
    model: WrappedModel,
    data: Datasets,
    policy: Policy,
    settings: Settings | None = None,
    profile: DataProfile | None = None,
    signature: list[str] | None = None,
) -> CalibrationReport:
    """Calibration-data governance: the GX suite derived from the reference profile (plus the
    team's overrides in policies/expectations/), the policy's checks (rows, group coverage,
    leakage into the evaluation split, duplicates, label balance) and representativeness
    (Evidently drift vs the reference). The profile is the one stored with the model when given,
    else it is built from the reference data; every column of the model's MLflow ``signature``
    must be in it. Returns the report; never raises on bad data."""
    from quantgate.validate import expectations_file_for, govern_calibration

    s = settings or get_settings()
    profiled = profile.column_names if profile is not None else list(data.reference.columns)
    missing = [col for col in signature or [] if col not in profiled]
    if missing:
        raise DataError(
            f"the reference profile of '{cfg.name}' lacks the model's input column(s) {', '.join(missing)} "
            "(from its MLflow signature)",
            "the reference data must hold every column the model takes",
        )
    return govern_calibration(
        data.calibration,
        data.reference,
        evaluation=data.evaluation,
        label=cfg.label if cfg.label in data.reference.columns else None,
        sensitive_attributes=list(cfg.sensitive_attributes),
        text_columns=model.input_columns if model.task == "text-classification" else [],
        policy=policy.calibration,
        model_name=cfg.name,
        expectations_file=expectations_file_for(cfg.name, s.project_dir),
        profile=profile,
        reference_is_calibration=data.reference_is_calibration and profile is None,
    )


def validate_calibration(
    cfg: ModelConfig,
    model: WrappedModel,
    data: Datasets,
    policy: Policy,
    settings: Settings | None = None,
    profile: DataProfile | None = None,
    signature: list[str] | None = None,
) -> CalibrationReport:
    """The flow's gate on calibration data: raises ValidationFailed, with the reports written
    under ``$QUANTGATE_HOME/validation/<model>/``, before anything is quantized or registered."""
    s = settings or get_settings()
    report = govern_calibration_data(cfg, model, data, policy, s, profile=profile, signature=signature)
    if not report.passed:
        out = report.write_artifacts(s.home_abs / "validation" / cfg.name)
        raise ValidationFailed(report.summary(), f"nothing was quantized or registered; reports: {written_dir(out)}")
    return report


def written_dir(files: dict[str, Path]) -> Path:
    """The folder ``write_artifacts`` wrote its files into."""
    return next(iter(files.values())).parent
