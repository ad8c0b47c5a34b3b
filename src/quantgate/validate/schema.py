"""The ``calibration:`` section of a gate policy: what calibration data must satisfy.

A pure pydantic model with no other quantgate import beyond the package: the gate policy
(:mod:`quantgate.policy.schema`) embeds it, and ``quantgate policy validate`` must not load
pandas, Great Expectations, Evidently or the governance engine to check a YAML file.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CalibrationPolicy(BaseModel):
    """What calibration data must satisfy; the ``calibration:`` section of a gate policy.

    Strict like the rest of the policy (a typo or a string where a number belongs is an error
    naming the key); ``label_share_bounds`` accepts a YAML list.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    min_rows: int = Field(default=200, ge=1, description="fewest calibration rows")
    min_group_rows: int = Field(
        default=30,
        ge=0,
        description="fewest rows for every group (seen in the reference) of every sensitive attribute; 0 = off",
    )
    max_duplicate_share: float = Field(
        default=0.05, ge=0.0, le=1.0, allow_inf_nan=False, description="largest share of repeated rows"
    )
    label_share_bounds: tuple[float, float] | None = Field(
        default=(0.05, 0.95),
        strict=False,
        description="[low, high] share of each label class in the calibration data; null = off",
    )
    max_drifted_share: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="largest share of columns that Evidently finds drifted vs the reference",
    )
    range_tolerance: float = Field(
        default=0.1,
        ge=0.0,
        le=10.0,
        allow_inf_nan=False,
        description="numeric ranges are the reference min/max widened by this share of the span",
    )
    max_unseen_share: float = Field(
        default=0.01,
        ge=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="largest share of categorical values not seen in the reference",
    )

    @model_validator(mode="after")
    def _bounds(self) -> CalibrationPolicy:
        if self.label_share_bounds is not None:
            lo, hi = self.label_share_bounds
            if not (0.0 <= lo < hi <= 1.0) or not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"label_share_bounds must satisfy 0 <= low < high <= 1, got [{lo}, {hi}]")
        return self
