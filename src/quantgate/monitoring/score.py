"""Score: the frames the later steps compare, and the joins they need.

The reference rows scored by the served version beside the window's served predictions (what drift
compares, the predicted class as one more column), the share of positive predictions, and the
window's rows joined to the delayed labels that arrived for them (by request id and row).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quantgate.errors import QuantgateError
from quantgate.monitoring.resolve import Served
from quantgate.monitoring.window import Window
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LabelJoin:
    """The window's rows whose delayed label arrived (``true_label``), or why none could be read."""

    #: the joined rows; None when the label store could not be read
    rows: pd.DataFrame | None
    #: labels stored for the served model (all windows)
    stored: int
    #: why the store could not be read (the labels check reports it as not run)
    reason: str | None = None
    #: the error's line when the read failed unexpectedly (not a known stop): the labels check alerts
    error: str | None = None

    @property
    def line(self) -> str:
        if self.rows is None:
            return f"delayed labels: not read ({self.reason})"
        return f"delayed labels: {len(self.rows)} window rows labelled ({self.stored} stored)"


@dataclass(frozen=True, eq=False)
class Scored:
    #: the compared columns and ``prediction``: reference rows scored by the served version
    reference: pd.DataFrame
    #: the compared columns and ``prediction``: the window as served
    current: pd.DataFrame
    columns: tuple[str, ...]
    #: a binary model's share of positive predictions in the window (None for k > 2 classes)
    positive_rate: float | None
    labels: LabelJoin

    @property
    def line(self) -> str:
        rate = f"; positive rate {self.positive_rate:.3f}" if self.positive_rate is not None else ""
        return (
            f"scored: {len(self.reference)} reference rows by the served version; {len(self.columns)} columns "
            f"and the prediction to compare{rate}; {self.labels.line}"
        )


def positive_rate(labels: pd.Series, classes: list[Any]) -> float | None:
    """The share of served predictions of a binary model that are its second class (its positive
    one, whatever the labels are called); None for k > 2 classes, where the prediction column's
    drift says more than one rate."""
    from quantgate.models.outputs import class_index

    if len(classes) != 2 or not len(labels):
        return None
    return float((class_index(labels, classes, what="served predictions") == 1).mean())


def score_window(served: Served, window: Window, settings: Settings | None = None) -> Scored:
    from quantgate.data.datasets import read_table

    s = settings or get_settings()
    spec, wrapped = served.spec, served.model
    reference = read_table(s.path(spec.reference))
    cols = spec.columns or [col for col in wrapped.input_columns if col in reference.columns]
    ref_preds = wrapped.predict(reference[wrapped.input_columns])
    return Scored(
        reference=reference[cols].assign(prediction=ref_preds["label"].to_numpy()),
        current=window.rows[cols].assign(prediction=window.outputs["label"].to_numpy()),
        columns=tuple(cols),
        positive_rate=positive_rate(window.outputs["label"], served.classes),
        labels=join_window_labels(served.name, window.rows, window.outputs["label"], s),
    )


def join_window_labels(
    name: str, rows: pd.DataFrame, served_labels: pd.Series, settings: Settings | None = None
) -> LabelJoin:
    """The window's ``rows`` (their ``served_labels`` as ``label``) that have a delayed label. A
    store that cannot be read is not an empty one: the join says why (and whether it was a known
    stop), and the labels check reports it."""
    from quantgate.monitor.labels import join_labels, read_labels
    from quantgate.monitor.production import error_line

    try:
        stored = read_labels(name, settings)
        joined = join_labels(rows.assign(label=served_labels.to_numpy()), stored)
    except QuantgateError as exc:
        return LabelJoin(None, 0, str(exc))
    except Exception as exc:
        log.error("reading the delayed labels of %s failed: %s", name, error_line(exc), exc_info=True)
        why = f"reading the delayed labels of {name} failed: {error_line(exc)}"
        return LabelJoin(None, 0, why, error=why)
    return LabelJoin(joined, len(stored))
