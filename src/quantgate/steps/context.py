"""The small context objects the steps share (values in, values out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from quantgate.onboarding import ModelConfig

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from quantgate.evaluate.audit import FlipAudit
    from quantgate.evaluate.batching import ServedBatching
    from quantgate.evaluate.metrics import Comparison
    from quantgate.models.wrapped import WrappedModel
    from quantgate.policy.schema import Policy
    from quantgate.quantize.recipes import QuantizationResult, Recipe


#: where a source model's reference-data profile is stored (in its training run)
PROFILE_ARTIFACT = "quantgate/data_profile.json"
#: the candidate's gate-time evaluation scores (labels, class probabilities, groups), logged with
#: its run so monitoring can fit a label-free accuracy estimator on the rows the gate judged
EVAL_SCORES_ARTIFACT = "quantgate/eval_scores.parquet"


def declared_group_columns(cfg: ModelConfig, policy: Policy) -> list[str]:
    """The group columns named for this model: the onboarding's sensitive attributes and slices,
    then the policy's slices, each once, in that order."""
    return list(dict.fromkeys([*cfg.group_columns, *policy.slices]))


def per_class_groups(cfg: ModelConfig, policy: Policy) -> bool:
    """True when this model's groups are its classes by default: a classifier whose onboarding
    (and policy) names no sensitive attribute or slice is judged per class, the label column as
    the group, rather than refused by the group rules. Per-class groups are not demographic: the
    demographic rules (parity, equalized odds) stay ``n/a`` without sensitive attributes."""
    return cfg.task.endswith("-classification") and not declared_group_columns(cfg, policy)


def group_columns(cfg: ModelConfig, policy: Policy) -> list[str]:
    """The columns whose groups are judged for this model under this policy: the declared ones
    (:func:`declared_group_columns`), or, for a classifier that declares none, its label column
    (:func:`per_class_groups`)."""
    return [cfg.label] if per_class_groups(cfg, policy) else declared_group_columns(cfg, policy)


def per_class_note(cfg: ModelConfig) -> str:
    """What the verdict says of default per-class groups."""
    return (
        f"groups are the classes of '{cfg.label}' (the default: the onboarding names no sensitive attribute or slice)"
    )


@dataclass
class Source:
    version: ModelVersion
    config: ModelConfig

    @property
    def ref(self) -> str:
        return f"{self.version.name}/{self.version.version}"


@dataclass
class Datasets:
    calibration: pd.DataFrame
    evaluation: pd.DataFrame
    reference: pd.DataFrame
    paths: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    #: no ``reference_data`` in the onboarding: ``reference`` is the calibration data itself
    reference_is_calibration: bool = False


@dataclass
class Evaluation:
    comparison: Comparison
    runtime: dict[str, float]
    sizes: dict[str, int]
    audit: FlipAudit | None = None
    #: per evaluation row: ``label`` (class index), ``fp32_pred``, ``proba_<i>`` of the candidate, group columns
    scores: pd.DataFrame | None = None
    served: ServedBatching | None = None


@dataclass
class Faithfulness:
    """The proof that quantgate's reading of the source is the model itself, and what to warn about."""

    report: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    logged_accuracy: tuple[str, float] | None = None  # (metric, value) from the source's run


@dataclass
class Search:
    recipe: Recipe
    candidate: WrappedModel
    result: QuantizationResult
    trace: list[dict[str, Any]]
    sensitivity: dict[str, float]
    #: every passing trial in the pick's order: (recipe, candidate, result, its index in ``trace``)
    ranked: list[tuple[Recipe, WrappedModel, QuantizationResult, int]] = field(default_factory=list)
    #: the search record that goes into the candidate's spec and the card
    search: dict[str, Any] = field(default_factory=dict)
