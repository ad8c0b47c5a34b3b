"""Faithful measurement: prove quantgate's reading of a model equals the model itself.

Before anything is judged, a sample of evaluation rows is scored twice: through
``mlflow.pyfunc.load_model(uri).predict`` (the registered model as MLflow serves it) and through
quantgate's own wrapper. The predicted classes must agree row for row, and the probabilities too
(within :data:`PROBA_TOLERANCE`) where the model's answer carries them. The same check runs on a
candidate's logged artifact before it is registered, so what is served is what was gated.

The reference side reads the model's answer from its values alone, never from the onboarding: a
column of values outside [0, 1] is a logit, one inside [0, 1] a probability, a matrix is argmaxed,
a ``label`` column is labels. A mis-declared ``output:`` (say ``logits`` for a model that ends in a
sigmoid) therefore shows up as differing rows, and the flow stops (exit 2) before anything is judged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from quantgate.errors import UnfaithfulReading
from quantgate.models.outputs import class_index, detect_output, to_array, to_proba
from quantgate.models.wrapped import WrappedModel

#: largest absolute difference in any class probability that still counts as the same reading
PROBA_TOLERANCE = 1e-3
SAMPLE_ROWS = 128


@dataclass
class FaithfulReport:
    uri: str
    rows: int
    classes_agree: int
    max_proba_diff: float | None  # None when the model's answer carries no probabilities
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_input(model: WrappedModel, rows: pd.DataFrame, schema: Any) -> Any:
    """What the registered model takes: raw rows (integer columns cast to a float column's type,
    as a client would send them), or the array its tensor signature describes."""
    tensor = schema is not None and schema.is_tensor_spec()
    if not tensor:
        frame = rows[model.input_columns].copy()
        for spec in getattr(schema, "inputs", None) or []:
            name = getattr(spec, "name", None)
            if name in frame.columns and pd.api.types.is_integer_dtype(frame[name]):
                target = np.dtype(spec.type.to_numpy())
                if np.issubdtype(target, np.floating):
                    frame[name] = frame[name].astype(target)
        return frame
    x = rows[model.input_columns].to_numpy(dtype=np.float32)
    shape = model.spec.get("input_shape")
    return x.reshape(len(x), *[int(d) for d in shape[1:]]) if shape else x


def reference_reading(answer: Any, model: WrappedModel) -> tuple[np.ndarray, np.ndarray | None]:
    """(class index per row, probabilities or None) from the registered model's own answer."""
    arr = to_array(answer)
    classes = model.classes
    reading = detect_output(arr, "auto")  # from the values alone: one column inside [0, 1] is a probability
    if reading.kind == "labels":
        # a transformers pipeline answers its own label names; a candidate quantgate logged, the classes
        names = model.spec.get("label_names") or []
        answered = {str(v) for v in arr[:, 0]}
        lookup = names if names and answered <= {str(n) for n in names} else classes
        return class_index(arr[:, 0], lookup, what="the registered model predicted"), None
    proba = to_proba(arr, reading, classes)
    return proba.argmax(axis=1), proba


def check_faithful(uri: str, model: WrappedModel, rows: pd.DataFrame, *, what: str) -> FaithfulReport:
    """Raise UnfaithfulReading when quantgate's reading of ``uri`` differs from the model's own."""
    import mlflow.pyfunc

    sample = rows.head(SAMPLE_ROWS)
    ref = mlflow.pyfunc.load_model(uri)
    answer = ref.predict(reference_input(model, sample, ref.metadata.get_input_schema()))
    n = len(sample)
    if "onnx" in ref.metadata.flavors and isinstance(answer, pd.DataFrame) and len(answer) != n and n:
        # MLflow's onnx pyfunc answers a DataFrame input with each output flattened row-major
        # (``reshape(-1)``) into one column: undo exactly that for the first output (class scores)
        answer = answer.iloc[:, 0].to_numpy().reshape(n, -1)
    if model.is_regression:
        return _check_values(uri, model, sample, answer, what=what)
    ref_cls, ref_proba = reference_reading(answer, model)
    if len(ref_cls) != len(sample):
        raise UnfaithfulReading(
            f"{what} ({uri}) answered {len(ref_cls)} predictions for {len(sample)} rows",
            "quantgate governs models that answer one prediction per input row",
        )
    ours = model.predict_proba(sample)
    our_cls = ours.argmax(axis=1)
    differ = np.nonzero(ref_cls != our_cls)[0]
    if len(differ):
        i = int(differ[0])
        classes = model.classes
        raise UnfaithfulReading(
            f"quantgate's reading of {what} ({uri}) differs from the model's own predictions on "
            f"{len(differ)} of {len(sample)} rows; first: evaluation row {sample.index[i]!r}, the model predicts "
            f"{classes[ref_cls[i]]!r}, quantgate read {classes[our_cls[i]]!r} "
            f"(output read as: {model.spec.get('output_note', model.spec.get('output', 'logits'))})",
            "check output:, classes: and input_columns: in the onboarding; nothing was judged or registered",
        )
    diff = None
    if ref_proba is not None:
        diff = float(np.abs(ref_proba - ours).max()) if len(ours) else 0.0
        if diff > PROBA_TOLERANCE:
            raise UnfaithfulReading(
                f"quantgate's probabilities for {what} ({uri}) differ from the model's own by up to {diff:.3g} "
                f"(tolerance {PROBA_TOLERANCE:g}) although the classes agree",
                "check output: (logits or probabilities) in the onboarding; nothing was judged or registered",
            )
    return FaithfulReport(uri, len(sample), len(sample), diff, PROBA_TOLERANCE)


#: a regressor's prediction matches the model's own within this relative tolerance (of the largest
#: absolute prediction on the sample, at least 1): float noise of a rebuilt graph, never a different model
VALUE_TOLERANCE = 1e-4


def _check_values(uri: str, model: WrappedModel, sample: pd.DataFrame, answer: Any, *, what: str) -> FaithfulReport:
    """A regressor: the registered model's own value per row equals quantgate's within float tolerance."""
    ref = to_array(answer)
    n = len(sample)
    if ref.shape != (n, 1) or not np.issubdtype(ref.dtype, np.number):
        raise UnfaithfulReading(
            f"{what} ({uri}) answered {ref.shape[0]} row(s) of {ref.shape[1]} {ref.dtype} value(s) for {n} rows",
            "a regressor must answer one number per input row; nothing was judged or registered",
        )
    ref_v = ref[:, 0].astype(np.float64)
    ours = model.predict_values(sample)
    scale = max(1.0, float(np.abs(ref_v).max())) if n else 1.0
    diff = np.abs(ref_v - ours)
    tol = VALUE_TOLERANCE * scale
    if n and not (diff <= tol).all():
        i = int(np.argmax(~(diff <= tol)))
        raise UnfaithfulReading(
            f"quantgate's reading of {what} ({uri}) differs from the model's own predictions on "
            f"{int((~(diff <= tol)).sum())} of {n} rows; first: evaluation row {sample.index[i]!r}, the model "
            f"predicts {ref_v[i]:.6g}, quantgate read {ours[i]:.6g} (tolerance {tol:.3g})",
            "check input_columns: in the onboarding; nothing was judged or registered",
        )
    return FaithfulReport(uri, n, n, float(diff.max()) if n else 0.0, tol)


#: a measured baseline further than this from the accuracy the source's run logged is a card warning
LOGGED_ACCURACY_TOLERANCE = 0.05


def logged_accuracy_warning(logged: tuple[str, float] | None, measured: float) -> str | None:
    """The card's warning when the baseline quantgate measured is far from what the run logged."""
    if logged is None or not abs(measured - logged[1]) > LOGGED_ACCURACY_TOLERANCE:
        return None
    return (
        f"baseline accuracy measured here {measured:.4f} is far from the {logged[1]:.4f} the source's run "
        f"logged as '{logged[0]}' (different data, or a reading to check)"
    )


def logged_accuracy(run_metrics: dict[str, float]) -> tuple[str, float] | None:
    """An accuracy-like metric the source's training run logged (``accuracy``, ``test_accuracy``...)."""
    for key in sorted(run_metrics, key=lambda k: (not k.endswith("accuracy"), len(k))):
        if "accuracy" in key.lower() or key.lower() in ("acc", "test_acc", "val_acc"):
            v = float(run_metrics[key])
            if 0.0 <= v <= 1.0:
                return key, v
    return None
