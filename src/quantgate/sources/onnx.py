"""MLflow's ``onnx`` flavor: an ONNX Runtime module, quantized as it is by the ``ort-*`` recipes."""

from __future__ import annotations

from quantgate.errors import UnsupportedModel
from quantgate.models.wrapped import WrappedModel
from quantgate.sources.base import SourceContext, register_source
from quantgate.sources.layout import tensor_model


@register_source("onnx", lambda meta: "onnx" in meta.flavors)
def load_onnx(ctx: SourceContext) -> WrappedModel:
    """One float input ([batch, features] or an image shape), class scores as the first output.
    How scores are read (logits, probabilities) is probed, or set by ``output:`` in the onboarding
    (or the tag ``quantgate.output`` on the version, like every onboarding key)."""
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
    return tensor_model(ctx, OrtModule(onx.SerializeToString(), inputs))
