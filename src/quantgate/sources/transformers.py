"""MLflow's ``transformers`` flavor: not loaded yet (refused by name until it is)."""

from __future__ import annotations

from quantgate.errors import UnsupportedModel
from quantgate.models.wrapped import WrappedModel
from quantgate.sources.base import SourceContext, register_source


@register_source("transformers", lambda meta: "transformers" in meta.flavors)
def load_transformers(ctx: SourceContext) -> WrappedModel:
    raise UnsupportedModel(
        f"{ctx.ref} has the 'transformers' flavor, which quantgate does not load yet",
        "log the encoder + head as quantgate's pyfunc (see the rt-sentiment demo) or as an onnx model",
    )
