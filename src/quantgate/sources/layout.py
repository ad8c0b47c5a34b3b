"""Inputs and outputs of a tensor model, read from its MLflow signature, the onboarding and the data.

- **Inputs.** A column-based signature names the features. A tensor signature (what MLflow records
  for an ndarray input example) names none: the features are then ``input_columns:`` from the
  onboarding, or else the data's numeric columns in file order (label excluded), and a shape such
  as ``[-1, 1, 28, 28]`` is filled from flat columns in row-major order.
- **Outputs.** A probe on a few rows shows the output's width and values; with ``output:`` and
  ``classes:`` from the onboarding that settles how scores become class probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from quantgate.errors import ConfigError, DataError, UnsupportedModel
from quantgate.models.outputs import class_columns, classes_origin, detect_output, infer_classes
from quantgate.sources.base import SourceContext


def feature_layout(ctx: SourceContext) -> tuple[list[str], list[int] | None]:
    """(feature columns in the model's order, tensor shape when it is more than [batch, features])."""
    sig = ctx.meta.signature
    declared = list(ctx.onboarding("input_columns", []) or [])
    if sig is None or sig.inputs is None:
        if declared:
            return declared, None
        raise UnsupportedModel(
            f"{ctx.ref} has no input signature",
            "log it with an input_example (MLflow infers the signature) or set input_columns: in the onboarding",
        )
    if not sig.inputs.is_tensor_spec():
        names = [str(n) for n in sig.inputs.input_names()]
        if declared and declared != names:
            raise ConfigError(
                f"input_columns: {declared} differs from the columns of {ctx.ref}'s signature {names}",
                "drop input_columns: (the signature names the columns) or make them equal",
            )
        return names, None
    specs = sig.inputs.inputs
    if len(specs) != 1:
        raise UnsupportedModel(
            f"{ctx.ref} takes {len(specs)} tensor inputs", "quantgate governs tensor models with one input tensor"
        )
    shape = [int(d) for d in specs[0].shape]
    if len(shape) < 2 or any(d < 1 for d in shape[1:]):
        raise UnsupportedModel(
            f"{ctx.ref} takes a tensor of shape {shape}",
            "quantgate feeds tensor models [batch, features] or [batch, C, H, W] with fixed feature sizes",
        )
    n = math.prod(shape[1:])
    cols = declared or numeric_columns(ctx)
    if len(cols) != n:
        where = "input_columns: names" if declared else "the data has"
        raise DataError(
            f"{ctx.ref} takes {n} features per row (tensor {shape}), but {where} {len(cols)} numeric column(s)",
            "set input_columns: in the onboarding to the model's features, in order",
        )
    return cols, (shape if len(shape) > 2 else None)


def numeric_columns(ctx: SourceContext) -> list[str]:
    label = getattr(ctx.config, "label", None)
    if ctx.sample is None:
        return []
    return [c for c in ctx.sample.columns if c != label and pd.api.types.is_numeric_dtype(ctx.sample[c])]


def resolve_outputs(ctx: SourceContext, probe: Callable[[pd.DataFrame], Any]) -> dict[str, Any]:
    """Probe the model on the sample rows; return the spec keys ``output``, ``output_width``,
    ``classes``, ``classes_from`` and ``output_note`` (how the output was read, for the card)."""
    from quantgate.models.outputs import to_array

    if ctx.sample is None or not len(ctx.sample):
        raise DataError(f"no rows to probe {ctx.ref}'s output with", "the evaluation data is empty")
    raw = probe(ctx.sample)
    arr = to_array(raw)
    if arr.shape[0] != len(ctx.sample):
        raise DataError(
            f"{ctx.ref} returned {arr.shape[0]} rows of output for {len(ctx.sample)} input rows",
            "quantgate governs models that answer one row per input row",
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise _non_finite_scores(ctx, ~np.isfinite(arr).all(axis=1))
    reading = detect_output(arr, str(ctx.onboarding("output", "auto")))
    declared = ctx.onboarding("classes")
    named = None if declared else class_columns(raw, ctx.labels)
    classes = named or infer_classes(reading.width, reading.kind, ctx.labels, declared)
    return {
        "output": reading.kind,
        "output_width": reading.width,
        "output_ambiguous": reading.ambiguous,
        "classes": classes,
        "classes_from": "model" if named else classes_origin(classes, reading.kind, declared),
        "output_note": reading.describe(),
    }


def _non_finite_scores(ctx: SourceContext, bad: np.ndarray) -> DataError:
    assert ctx.sample is not None
    label = getattr(ctx.config, "label", None)
    inputs = ctx.sample.drop(columns=[label], errors="ignore")
    return non_finite_scores(ctx.ref, inputs, bad, f"of the {len(bad)} evaluation rows it was probed with")


def non_finite_scores(ref: str, inputs: pd.DataFrame, bad: np.ndarray, among: str) -> DataError:
    """The error for NaN/inf scores on the rows ``bad`` of ``inputs``, naming the input columns with
    missing values when every bad row has one (the usual cause: a model that does not impute)."""
    missing = inputs.isna().to_numpy()
    where = f"on {int(bad.sum())} {among}"
    if missing.any() and bool(missing.any(axis=1)[bad].all()):
        cols = [str(c) for c in inputs.columns[missing[bad].any(axis=0)]]
        shown = ", ".join(cols[:5]) + (f" and {len(cols) - 5} more" if len(cols) > 5 else "")
        return DataError(
            f"{ref} returned NaN or infinite scores {where}, each of them a row with missing values "
            f"(column(s) {shown})",
            "the model does not handle missing values: drop or impute them in the evaluation data",
        )
    return DataError(f"{ref} returned NaN or infinite scores {where}", "check the model")


def tensor_model(ctx: SourceContext, module: Any, **spec_extra: Any) -> Any:
    """A WrappedModel for a module fed a float tensor: features from the signature (or the
    onboarding / data), outputs read from a probe on the sample rows."""
    from quantgate.models.wrapped import WrappedModel

    columns, shape = feature_layout(ctx)
    regression = str(ctx.onboarding("task", "")).endswith("-regression")
    spec: dict[str, Any] = {
        "task": "tensor-regression" if regression else "tensor-classification",
        "feature_columns": columns,
        **spec_extra,
        **({"input_shape": shape} if shape else {}),
    }
    probe = WrappedModel(module, {**spec, "classes": [0, 1]})

    def run(df: pd.DataFrame) -> np.ndarray:
        return np.concatenate([probe.raw_outputs(b) for b in probe.batches(df, 256)])

    if regression:
        from quantgate.sources.regression import regression_outputs

        spec |= regression_outputs(ctx, run)
    else:
        spec |= resolve_outputs(ctx, run)
    return WrappedModel(module, spec)
