"""The source-kind registry and what every handler is given."""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from quantgate.errors import QuantgateError, UnsupportedModel

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models import Model

    from quantgate.models.wrapped import WrappedModel
    from quantgate.onboarding import ModelConfig

#: handler modules, in the order they are asked (most specific first); each registers itself
KIND_MODULES = (
    "quantgate.sources.quantgate_pyfunc",
    "quantgate.sources.python_model",
    "quantgate.sources.pytorch",
    "quantgate.sources.text_generation",
    "quantgate.sources.transformers",
    "quantgate.sources.onnx",
)

SUPPORTED = (
    "the 'pytorch' flavor (pt2 or pickle), the 'transformers' flavor (text-classification; "
    "text-generation with task: text-generation), 'onnx', "
    "quantgate's pyfunc, or an mlflow.pyfunc.PythonModel holding torch nn.Module attributes"
)


@dataclass
class SourceContext:
    """Everything a handler may use: the version, its MLflow metadata, the onboarding and the data.

    ``sample`` is a few labelled evaluation rows (to probe the output's shape); ``labels`` the
    label values seen in the data; ``columns`` the data's columns in file order (label excluded).
    """

    version: ModelVersion
    meta: Model
    config: ModelConfig | None = None
    sample: pd.DataFrame | None = None
    labels: Sequence[Any] = ()
    columns: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"models:/{self.version.name}/{self.version.version}"

    @property
    def ref(self) -> str:
        return f"{self.version.name}/{self.version.version}"

    @property
    def flavors(self) -> list[str]:
        return sorted(self.meta.flavors)

    def onboarding(self, key: str, default: Any = None) -> Any:
        value = getattr(self.config, key, None) if self.config is not None else None
        return default if value in (None, [], "") else value


@dataclass(frozen=True)
class SourceHandler:
    kind: str
    matches: Callable[[Model], bool]
    load: Callable[[SourceContext], WrappedModel]


_HANDLERS: dict[str, SourceHandler] = {}


def register_source(
    kind: str, matches: Callable[[Model], bool]
) -> Callable[[Callable[[SourceContext], WrappedModel]], Callable[[SourceContext], WrappedModel]]:
    """Decorator: ``@register_source("pytorch", lambda meta: "pytorch" in meta.flavors)``."""

    def deco(fn: Callable[[SourceContext], WrappedModel]) -> Callable[[SourceContext], WrappedModel]:
        _HANDLERS[kind] = SourceHandler(kind, matches, fn)
        return fn

    return deco


def source_kinds() -> list[SourceHandler]:
    for mod in KIND_MODULES:
        importlib.import_module(mod)
    order = {m.rsplit(".", 1)[1]: i for i, m in enumerate(KIND_MODULES)}
    return sorted(_HANDLERS.values(), key=lambda h: order.get(h.kind, len(order)))


def is_python_model(meta: Model) -> bool:
    """An ``mlflow.pyfunc.PythonModel`` (quantgate's own or a team's)."""
    pf = meta.flavors.get("python_function", {})
    return pf.get("loader_module") == "mlflow.pyfunc.model" and "python_model" in pf


def handler_for(meta: Model) -> SourceHandler | None:
    return next((h for h in source_kinds() if h.matches(meta)), None)


def load_source(ctx: SourceContext) -> WrappedModel:
    """The version as a WrappedModel, through the first handler whose kind matches."""
    handler = handler_for(ctx.meta)
    if handler is None:
        raise UnsupportedModel(
            f"{ctx.ref} has flavor(s) {', '.join(ctx.flavors)}, which quantgate cannot quantize",
            f"quantgate governs {SUPPORTED}",
        )
    try:
        wrapped = handler.load(ctx)
    except QuantgateError:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, RuntimeError) as exc:
        if not _is_artifact_read_error(exc):
            raise
        raise UnsupportedModel(
            f"the artifact of {ctx.ref} ({handler.kind}) cannot be read: {_first_line(exc)}",
            "the registered files are missing or damaged: log and register the model again "
            "(nothing was quantized or registered)",
        ) from exc
    wrapped.spec.setdefault("source_kind", handler.kind)
    return wrapped


#: what torch, ONNX and pickle say when the bytes of a file are damaged (not a bug of ours)
_DAMAGED = (
    "PytorchStreamReader",
    "failed finding central directory",
    "invalid load key",
    "unexpected EOF",
    "Ran out of input",
    "INVALID_PROTOBUF",
    "Protobuf parsing failed",
)


def _is_artifact_read_error(exc: BaseException) -> bool:
    """A missing file (OSError, FileNotFoundError) or the damaged-bytes messages of the loaders;
    any other RuntimeError stays what it is (a bug shows its traceback)."""
    if isinstance(exc, OSError | EOFError | pickle.UnpicklingError):
        return True
    return any(marker in str(exc) for marker in _DAMAGED)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    name = getattr(exc, "filename", None)
    line = text[0] if text else type(exc).__name__
    return f"{line} ({name})" if name and str(name) not in line else line
