"""MLflow's ``onnx`` flavor: an ONNX Runtime module, quantized as it is by the ``ort-*`` recipes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from quantgate.errors import UnsupportedModel
from quantgate.models.wrapped import WrappedModel
from quantgate.sources.base import SourceContext, register_source
from quantgate.sources.layout import feature_layout, resolve_outputs


@register_source("onnx", lambda meta: "onnx" in meta.flavors)
def load_onnx(ctx: SourceContext) -> WrappedModel:
    """One float input ([batch, features] or an image shape), class scores as the first output.
    How scores are read (logits, probabilities) is probed, or set by ``output:`` in the onboarding
    (the older tag ``quantgate.output`` on the version still counts)."""
    import mlflow.onnx

    from quantgate.quantize.onnx_backend import OrtModule

    onx = mlflow.onnx.load_model(ctx.uri)
    initializers = {i.name for i in onx.graph.initializer}
    inputs = [i.name for i in onx.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(onx.graph.output) < 1:
        raise UnsupportedModel(
            f"{ctx.ref}: ONNX model with inputs {inputs} and {len(onx.graph.output)} output(s)",
            "quantgate governs ONNX classifiers with one float input and class scores first",
        )
    tagged = ctx.version.tags.get("quantgate.output")
    if tagged and ctx.onboarding("output", "auto") == "auto":
        ctx.config = ctx.config.model_copy(update={"output": tagged}) if ctx.config is not None else None
    module = OrtModule(onx.SerializeToString(), inputs)
    columns, shape = feature_layout(ctx)
    spec: dict[str, Any] = {
        "task": "tensor-classification",
        "feature_columns": columns,
        **({"input_shape": shape} if shape else {}),
    }
    probe = WrappedModel(module, {**spec, "classes": [0, 1]})

    def run(df: Any) -> np.ndarray:
        return torch.cat([module(*b) for b in probe.batches(df, 256)]).numpy()

    spec |= resolve_outputs(ctx, run)
    return WrappedModel(module, spec)
