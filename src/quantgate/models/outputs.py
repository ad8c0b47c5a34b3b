"""What a classifier's output means, turned into class probabilities (pure numpy/torch).

Models answer in many shapes: one logit or one probability for a binary task, a logit or
probability matrix for k classes, class labels, a pandas DataFrame. quantgate reads every one of
them into an ``(n, k)`` probability matrix (k >= 2, columns in the order of ``classes``), so that
every metric, group rule and audit works the same for binary and multi-class models.

``output`` says how to read scores: ``logits`` (sigmoid for one column, softmax for k), ``probabilities``
(taken as they are) or ``labels`` (one-hot). ``auto`` decides from the values themselves, and says
when the values cannot tell (see :func:`detect_output`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from quantgate.errors import DataError, UnsupportedModel

#: ``values``: a regressor's one continuous value per row (taken as it is; see quantgate.sources.regression)
OutputKind = Literal["logits", "probabilities", "labels", "values"]
OUTPUT_CHOICES = ("auto", "logits", "probabilities", "labels")


@dataclass(frozen=True)
class OutputReading:
    """How the raw output was read: the kind, and whether the values alone could tell."""

    kind: OutputKind
    width: int  # 1 for a single score or label column, k for a matrix
    ambiguous: bool  # True when the values fit more than one kind (e.g. one column inside [0, 1])

    def describe(self) -> str:
        what = {1: "one score per row"}.get(self.width, f"{self.width} scores per row")
        if self.kind == "labels":
            what = "class labels"
        return f"{what}, read as {self.kind}" + (" (declared; the values alone cannot tell)" if self.ambiguous else "")


def first_tensor(out: Any) -> Any:
    """The scores of a module's output: a tensor, a HF ``ModelOutput``'s logits, or the first item."""
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, dict):
        return out.get("logits", next(iter(out.values())))
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


def to_array(out: Any) -> np.ndarray:
    """A model's answer as a 2-D numpy array (``(n, 1)`` for one column), strings kept as objects."""
    out = first_tensor(out)
    if hasattr(out, "detach"):
        out = out.detach().cpu()
        out = (out.float() if out.is_floating_point() else out).numpy()
    if isinstance(out, pd.DataFrame):
        if "label" in out.columns:  # quantgate's pyfunc, HF pipelines: label (+ score) columns
            out = out["label"]
        else:
            out = out.to_numpy()
    if isinstance(out, pd.Series):
        out = out.to_numpy()
    arr = np.asarray(out)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim > 2:
        raise DataError(
            f"the model returned an output of shape {arr.shape}; quantgate reads class scores of shape (n, k)",
            "wrap the model so that it returns one row of class scores (or a label) per input row",
        )
    return arr


def detect_output(arr: np.ndarray, declared: str = "auto") -> OutputReading:
    """Decide how to read ``arr`` (2-D). A declaration that the values contradict is an error."""
    width = arr.shape[1]
    numeric = np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    if not numeric or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        if width != 1:
            raise DataError(f"the model returned {width} non-float columns", "return class scores or one label column")
        if declared not in ("auto", "labels"):
            raise DataError(
                f"output: {declared} was declared, but the model returns class labels ({arr.dtype})",
                "set output: labels (or auto) in the onboarding",
            )
        return OutputReading("labels", 1, False)
    finite = arr[np.isfinite(arr)]
    inside01 = bool(len(finite)) and float(finite.min()) >= 0.0 and float(finite.max()) <= 1.0
    sums_to_one = width > 1 and inside01 and bool(np.allclose(arr.sum(axis=1), 1.0, atol=1e-3))
    if declared == "labels":
        raise DataError("output: labels was declared, but the model returns float scores", "set output: auto")
    if declared == "probabilities":
        if not inside01 or (width > 1 and not sums_to_one):
            raise DataError(
                "output: probabilities was declared, but the model's scores are not probabilities "
                f"(range {float(finite.min()):.3g}..{float(finite.max()):.3g}"
                + (", rows do not sum to 1)" if width > 1 else ")"),
                "set output: logits (or auto) in the onboarding",
            )
        return OutputReading("probabilities", width, False)
    if declared == "logits":
        # softmax of a probability matrix still ranks classes the same, but one column inside
        # [0, 1] read as a logit would call every row positive: the values can't settle it
        return OutputReading("logits", width, inside01 and (width == 1 or sums_to_one))
    if width == 1:
        return OutputReading("probabilities" if inside01 else "logits", 1, inside01)
    return OutputReading("probabilities" if sums_to_one else "logits", width, False)


def to_proba(arr: np.ndarray, reading: OutputReading, classes: Sequence[Any]) -> np.ndarray:
    """Scores or labels -> ``(n, k)`` float32 probabilities, columns in the order of ``classes``."""
    k = len(classes)
    n = arr.shape[0]
    if reading.kind == "values":  # a regressor: the value itself, one column
        return arr.astype(np.float32).reshape(n, -1)
    if reading.kind == "labels":
        index = class_index(arr[:, 0], classes, what="the model predicted")
        out = np.zeros((n, k), np.float32)
        out[np.arange(n), index] = 1.0
        return out
    x = arr.astype(np.float64)
    if x.shape[1] == 1:
        if k != 2:
            raise DataError(
                f"the model returns one score per row, but {k} classes were named {list(classes)}",
                "one score means a binary model: name two classes (classes: in the onboarding)",
            )
        p = 1.0 / (1.0 + np.exp(-x[:, 0])) if reading.kind == "logits" else np.clip(x[:, 0], 0.0, 1.0)
        return np.stack([1.0 - p, p], axis=1).astype(np.float32)
    if x.shape[1] != k:
        raise DataError(
            f"the model returns {x.shape[1]} scores per row, but {k} classes were named {list(classes)}",
            "set classes: in the onboarding to the model's classes, in output order",
        )
    if reading.kind == "logits":
        x = np.exp(x - x.max(axis=1, keepdims=True))
        x /= x.sum(axis=1, keepdims=True)
    return x.astype(np.float32)


def class_index(values: Any, classes: Sequence[Any], *, what: str = "labels") -> np.ndarray:
    """Map label values to positions in ``classes`` (compared as text, so 1 == "1")."""
    lookup = {str(c): i for i, c in enumerate(classes)}
    vals = pd.Series(np.asarray(values).ravel()).astype(str)
    idx = vals.map(lookup)
    if idx.isna().any():
        bad = sorted(set(vals[idx.isna()]))[:5]
        raise DataError(
            f"{what} {bad}, which are not among the model's classes {list(classes)}",
            "set classes: in the onboarding (in the model's output order)",
        )
    return idx.to_numpy(dtype=np.int64)


def infer_classes(width: int, kind: OutputKind, labels: Sequence[Any], declared: Sequence[Any] | None) -> list[Any]:
    """The model's classes, from the onboarding, else the output's width and the data's labels.

    Never a constant: a one-score model is binary (the two label values, sorted); a k-column
    model has k classes (the label values when there are exactly k, else 0..k-1)."""
    if declared:
        return [_native(c) for c in declared]
    seen = [_native(v) for v in sorted(pd.unique(pd.Series(list(labels)).dropna()), key=_sort_key)]
    if kind == "labels":
        if not seen:
            raise DataError("cannot tell the classes of a label-returning model without labelled data")
        return list(seen)
    k = 2 if width == 1 else width
    if len(seen) == k:
        return list(seen)
    if width == 1 and len(seen) < 2:
        return [0, 1]
    if set(map(str, seen)) <= {str(i) for i in range(k)}:
        return list(range(k))
    if width == 1 or _continuous(seen):
        shown = ", ".join(map(str, seen[:5])) + (", ..." if len(seen) > 5 else "")
        raise UnsupportedModel(
            f"the label column has {len(seen)} distinct values ({shown}) for a model that returns "
            f"{'one score' if width == 1 else f'{width} scores'} per row: a regression model, or a label "
            "column that does not hold the classes",
            "for a regression model, set task: tabular-regression (or tensor-regression) in the onboarding "
            "(docs/regression.md); for a classifier, point label: at its class column, or set classes: in the "
            "onboarding (in output order)",
        )
    raise DataError(
        f"the model returns {width} score(s) per row ({k} classes) but the data has labels {list(seen)[:10]}",
        "set classes: in the onboarding (the model's classes in output order)",
    )


def class_columns(raw: Any, labels: Sequence[Any]) -> list[Any] | None:
    """The classes a score DataFrame names by its columns (``pd.DataFrame(proba, columns=classes)``,
    as a PythonModel often answers), in column order, when every label value is one of them."""
    if not isinstance(raw, pd.DataFrame) or "label" in raw.columns or raw.shape[1] < 2:
        return None
    columns = [_native(c) for c in raw.columns]
    seen = {str(v) for v in pd.Series(list(labels)).dropna()}
    names = [str(c) for c in columns]
    if not seen or len(set(names)) != len(names) or not seen <= set(names):
        return None
    return columns


def classes_origin(classes: Sequence[Any], kind: OutputKind, declared: Sequence[Any] | None) -> str:
    """Where the order of ``classes`` came from: ``declared`` (the onboarding), ``model`` (the model
    answers labels), ``positions`` (labels 0..k-1: output i is class i) or ``sorted labels`` (the
    label values sorted: a guess, since the model's output does not name its classes)."""
    if declared:
        return "declared"
    if kind == "labels":
        return "model"
    if all(_as_number(c) == i for i, c in enumerate(classes)):  # 0/1, 0.0/1.0, "0"/"1", False/True
        return "positions"
    return "sorted labels"


def _as_number(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class ClassOrder:
    """The agreement of a reading's class order with the labels, and the best order there is."""

    accuracy: float  # of the reading as it is
    best: list[Any]  # the order of classes that agrees best with the labels
    best_accuracy: float
    rows: int


def best_class_order(y: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> ClassOrder:
    """The order of ``classes`` over the model's outputs that agrees most with the labels ``y``
    (class indices): an assignment problem on the confusion matrix (scipy's linear_sum_assignment)."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import confusion_matrix

    k = len(classes)
    pred = proba.argmax(axis=1)
    cm = confusion_matrix(y, pred, labels=list(range(k)))  # rows: true class, columns: output position
    true_of, position = linear_sum_assignment(cm, maximize=True)
    best: list[Any] = [None] * k
    for t, pos in zip(true_of, position, strict=True):
        best[int(pos)] = classes[int(t)]
    n = max(len(y), 1)
    return ClassOrder(float(np.trace(cm)) / n, best, float(cm[true_of, position].sum()) / n, len(y))


def _continuous(values: Sequence[Any]) -> bool:
    """Numeric label values that cannot all be class ids: one of them has a fractional part."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return bool(arr.size) and not np.all(np.isfinite(arr) & (arr == np.round(arr)))


def _native(v: Any) -> Any:
    """numpy scalars -> Python values (classes go into JSON specs, tags and the card)."""
    return v.item() if isinstance(v, np.generic) else v


def _sort_key(v: Any) -> tuple[int, Any]:
    try:
        return (0, float(v))
    except (TypeError, ValueError):
        return (1, str(v))
