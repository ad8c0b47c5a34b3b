"""The ``retrain:`` key of an onboarding file, and cool-down durations (pure, no I/O).

Two ways to retrain a source model::

    retrain:                      # the team's own training deployment (prefect.deployments.run_deployment)
      deployment: train-income/nightly
      parameters: {epochs: 10}
      timeout: 2h                 # how long to wait for that run

    retrain:                      # quantgate's own retraining, for the demo models only
      builtin: adult-income       # training data + the labelled recent window of served traffic
      training_data: ${QUANTGATE_HOME}/data/adult-income/train.parquet
      window_hours: 168
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: Any) -> timedelta:
    """``"24h"``, ``"30m"``, ``"90s"``, ``"2d"``, ``"1w"``, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        out = value
    elif isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} (write e.g. 24h, 30m, 2d)")
    elif isinstance(value, (int, float)):
        out = timedelta(seconds=float(value))
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        out = timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    else:
        raise ValueError(f"not a duration: {value!r} (write e.g. 24h, 30m, 2d, or seconds)")
    if out < timedelta(0):
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return out


def format_duration(td: timedelta) -> str:
    secs = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs and secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"


BUILTIN = ("adult-income", "rt-sentiment")


class RetrainSpec(BaseModel):
    """How a source model is retrained: exactly one of ``deployment`` or ``builtin``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment: str | None = Field(default=None, description="'<flow>/<deployment>' that trains and registers")
    parameters: dict[str, Any] = Field(default_factory=dict, description="parameters for that deployment")
    timeout: timedelta = Field(default=timedelta(hours=6), description="how long to wait for the training run")
    builtin: Literal["adult-income", "rt-sentiment"] | None = Field(
        default=None, description="quantgate's own retraining of a demo model"
    )
    training_data: str | None = Field(default=None, description="builtin: the training rows (default: the demo's)")
    window_hours: float = Field(default=168.0, gt=0, description="builtin: how far back served rows are joined")

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> timedelta:
        return parse_duration(v)

    @model_validator(mode="after")
    def _one_way(self) -> RetrainSpec:
        if (self.deployment is None) == (self.builtin is None):
            raise ValueError("give exactly one of deployment (the team's training deployment) or builtin")
        if self.deployment is not None and self.deployment.count("/") != 1:
            raise ValueError(f"deployment must be '<flow>/<deployment>', got {self.deployment!r}")
        if self.deployment is not None and self.training_data is not None:
            raise ValueError("training_data is for builtin retraining; pass it in parameters for a deployment")
        return self

    @property
    def label(self) -> str:
        return f"deployment {self.deployment}" if self.deployment else f"quantgate builtin ({self.builtin})"
