"""quantgate's own retraining of the two demo models, and the labelled recent window.

adult-income is retrained on its training data plus the **labelled** rows of what the deployed
model served recently: the inference log (inputs, by request id and row) joined with labels that
arrived later (the label store of :mod:`quantgate.monitor.labels`, filled by ``quantgate
monitor-labels``: ``request_id``, ``request_row``, ``label``). Without labels the retraining uses the training data
only and says so (in the result, on the version's tags and in its description).
rt-sentiment is retrained on its training data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from quantgate.errors import ConfigError, DataError
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from quantgate.retrain.spec import RetrainSpec


@dataclass
class LabelledWindow:
    rows: pd.DataFrame
    served_rows: int
    labelled_rows: int
    since: datetime
    notes: list[str] = field(default_factory=list)


def labelled_window(
    qname: str, label: str, columns: list[str], hours: float, settings: Settings | None = None
) -> LabelledWindow:
    """Served rows of ``qname`` (all versions) in the last ``hours``, with the labels that arrived
    for them (``quantgate monitor-labels``, :mod:`quantgate.monitor.labels`) as column ``label``."""
    from quantgate.monitor.inference_log import inference_root, model_log_dir, read_inferences
    from quantgate.monitor.labels import join_labels, read_labels

    s = settings or get_settings()
    since = datetime.now(UTC) - timedelta(hours=hours)
    served = read_inferences(model_log_dir(qname, inference_root(s)), since=since)
    empty = pd.DataFrame(columns=[*columns, label])
    if served.empty:
        return LabelledWindow(empty, 0, 0, since, [f"no served rows of {qname} in the last {hours:g} h"])
    labels = read_labels(qname, s)
    if labels.empty:
        return LabelledWindow(
            empty, len(served), 0, since, [f"{len(served)} served rows, but no labels have arrived for them"]
        )
    missing = [col for col in columns if col not in served.columns]
    if missing:
        raise DataError(f"the inference log of {qname} has no column(s) {', '.join(missing)}")
    joined = join_labels(served, labels).rename(columns={"true_label": label})
    notes = [f"{len(joined)} of {len(served)} served rows have labels"]
    return LabelledWindow(joined[[*columns, label]].reset_index(drop=True), len(served), len(joined), since, notes)


@dataclass
class BuiltinResult:
    version: ModelVersion
    window_rows: int
    notes: list[str]


def retrain_builtin(spec: RetrainSpec, tags: dict[str, str], settings: Settings | None = None) -> BuiltinResult:
    """Retrain a demo model and register it as a new source version (always a new version)."""
    from quantgate.data import demo_models as dm
    from quantgate.data.datasets import ADULT_CATEGORICAL, ADULT_LABEL, ADULT_NUMERIC

    s = settings or get_settings()
    assert spec.builtin is not None
    d = s.data_dir / spec.builtin
    files = {role: d / f"{role}.parquet" for role in ("train", "evaluation", "reference")}
    if spec.training_data:
        files["train"] = s.path(spec.training_data)
    absent = [str(p) for p in files.values() if not p.exists()]
    if absent:
        raise ConfigError(
            f"builtin retraining of {spec.builtin} needs {', '.join(absent)}",
            "run `quantgate demo` once (it writes the demo data), or set retrain.training_data",
        )
    if spec.builtin == "rt-sentiment":
        note = " Retrained on its training data (builtin retraining of the text demo)."
        mv = dm.train_rt(files, s, tags={**tags, "quantgate.retrain.window_rows": "0"}, note=note, reuse=False)
        return BuiltinResult(mv, 0, ["rt-sentiment is retrained on its training data only"])
    window = labelled_window(
        c.quantized_name(spec.builtin), ADULT_LABEL, [*ADULT_NUMERIC, *ADULT_CATEGORICAL], spec.window_hours, s
    )
    notes = list(window.notes)
    if window.labelled_rows:
        note = f" Retrained on its training data plus {window.labelled_rows} labelled served rows."
    else:
        note = " Retrained on its training data only: no labelled served rows were available."
        notes.append("training data only (no labelled recent window)")
    mv = dm.train_adult(
        files,
        s,
        extra=window.rows if window.labelled_rows else None,
        tags={**tags, "quantgate.retrain.window_rows": str(window.labelled_rows)},
        note=note,
        reuse=False,
    )
    return BuiltinResult(mv, window.labelled_rows, notes)
