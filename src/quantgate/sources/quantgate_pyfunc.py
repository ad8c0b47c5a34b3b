"""quantgate's own pyfunc (``QuantgatePyfunc``): the demo models, and every candidate quantgate logs."""

from __future__ import annotations

from mlflow.models import Model

from quantgate.models.wrapped import WrappedModel
from quantgate.sources.base import SourceContext, is_python_model, register_source


def load_python_model(uri: str) -> object:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(uri)


def _is_quantgate(meta: Model) -> bool:
    # the artifacts quantgate's pyfunc always carries; the class is confirmed on load
    arts = meta.flavors.get("python_function", {}).get("artifacts", {}) or {}
    return is_python_model(meta) and {"module", "spec"} <= set(arts)


@register_source("quantgate_pyfunc", _is_quantgate)
def load_quantgate_pyfunc(ctx: SourceContext) -> WrappedModel:
    from quantgate.models.pyfunc import QuantgatePyfunc
    from quantgate.sources.python_model import load_python_model_source

    pyfunc = load_python_model(ctx.uri)
    inner = pyfunc.unwrap_python_model()  # type: ignore[attr-defined]
    if isinstance(inner, QuantgatePyfunc):
        return inner.wrapped
    return load_python_model_source(ctx)  # a team's PythonModel that happens to use these names
