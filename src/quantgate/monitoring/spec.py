"""What is watched: ``monitoring/<model>.yaml``, validated strictly, and the names monitoring writes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from quantgate.errors import ConfigError, read_config_text
from quantgate.notify.routes import Route as AlertRoute  # an alerts: item (webhook URL or Prefect block)
from quantgate.notify.routes import monitoring_example
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings

#: the MLflow experiment of the monitoring runs
EXPERIMENT = "quantgate-monitoring"
#: the Prefect event a drifted window emits (the ``retrain`` deployment's trigger)
DRIFT_EVENT = "quantgate.drift.detected"


class MonitorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    alias: str = c.ALIAS_CHAMPION
    reference: str
    #: a file to score; without one the window is read from the inference log of what was served
    window: str | None = None
    #: inference-log window when there was no earlier run: the last N hours
    log_hours: float = Field(default=24.0, gt=0)
    #: where this model's server logs (``quantgate serve --inference-log``): a directory or a
    #: ``postgresql://`` URL, ``${VARS}`` expanded; default QUANTGATE_INFERENCE_LOG, else
    #: ``$QUANTGATE_HOME/inference``
    inference_log: str | None = None
    columns: list[str] | None = None
    drift_share: float = Field(default=0.3, gt=0, le=1)
    #: logged rows re-scored with the fp32 source per run (production disagreement)
    disagreement_sample: int = Field(default=2000, gt=0)
    #: significance of the one-sided tests against the gate's figures (disagreement, accuracy)
    alpha: float = Field(default=0.01, gt=0, lt=1)
    #: drift compares at most this many rows per window (a uniform sample beyond; see detect_drift)
    drift_max_rows: int | None = Field(default=100_000, gt=0)
    #: logged rows re-scored with the served version for a multi-class label-free estimate (the log
    #: keeps only the top score; CBPE needs every class's probability)
    estimate_sample: int = Field(default=20_000, gt=0)
    alerts: list[AlertRoute] = Field(default_factory=list)
    #: at most one drift-triggered retraining per this long (quantgate.flows.retrain): 24h, 30m, 2d
    retrain_cooldown: timedelta = Field(default=timedelta(hours=24))

    @field_validator("retrain_cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: Any) -> timedelta:
        from quantgate.retrain.spec import parse_duration

        return parse_duration(v)


def load_monitor_spec(model: str, settings: Settings | None = None) -> MonitorSpec:
    """``monitoring/<model>.yaml`` of the source model ``model``; a ConfigError naming the key otherwise."""
    s = settings or get_settings()
    path = s.path(Path("monitoring") / f"{model}.yaml")
    if not path.exists():
        raise ConfigError(f"no monitoring spec for '{model}'", f"create {path} ({monitoring_example(path.parent)})")
    try:
        return MonitorSpec.model_validate(yaml.safe_load(read_config_text(path, "monitoring spec")) or {})
    except yaml.YAMLError as exc:
        raise ConfigError(f"monitoring spec {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except ValidationError as exc:
        parts = [
            f"{'.'.join(map(str, e['loc']))}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        ]
        raise ConfigError(f"invalid monitoring spec {path}: " + "; ".join(parts)) from None


def spec_log_target(spec: MonitorSpec, settings: Settings) -> str | Path | None:
    """The spec's ``inference_log`` (a ``postgresql://`` URL as written, ``${VARS}`` expanded; a
    directory resolved like the spec's other paths), or None for the default."""
    from quantgate.pg import is_pg_url

    if spec.inference_log is None:
        return None
    text = settings.expand(spec.inference_log)
    return text if is_pg_url(text) else settings.path(text)
