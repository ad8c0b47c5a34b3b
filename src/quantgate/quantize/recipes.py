"""Recipes as versioned, serialisable specs with one registered handler per spec type.

A recipe's JSON envelope ``{"_type": ..., "_version": ..., "_data": {...}}`` is what goes into
provenance and the model card; loading accepts only types on the allow-list (the registry
below), so a recipe file can never name arbitrary code. A new backend is one new spec class
plus one ``@register_handler`` function, not an edit to a chain of ``if``s.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from torch import Tensor, nn

from quantgate.errors import ConfigError, UnsupportedModel


@dataclass(frozen=True)
class Recipe:
    """Base spec: every recipe can keep modules in float by (dotted) name prefix."""

    exclude: tuple[str, ...] = ()
    TYPE: ClassVar[str] = "recipe"
    VERSION: ClassVar[int] = 1
    BACKEND: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(json.dumps(recipe_to_dict(self), sort_keys=True).encode()).hexdigest()

    @property
    def label(self) -> str:
        return self.TYPE + (f"(exclude={len(self.exclude)})" if self.exclude else "")


@dataclass(frozen=True)
class DynamicInt8Recipe(Recipe):
    """int8 weights (per-channel) with activations quantized on the fly, on every nn.Linear.

    Backend: PyTorch's x86 (fbgemm) dynamic-quantized Linear kernels. torchao's
    ``Int8DynamicActivationInt8WeightConfig`` is the maintained API, but in eager mode on this
    CPU it ran *slower* than fp32 (0.87x on MiniLM, batch 32 x seq 128) while the fbgemm
    kernels ran 2.2x faster, so the speed-oriented recipe uses fbgemm until torchao's CPU
    path (which needs torch.compile) is measured to win.
    """

    per_channel: bool = True
    TYPE: ClassVar[str] = "dynamic-int8"
    BACKEND: ClassVar[str] = "torch-fbgemm"
    SUMMARY: ClassVar[str] = "int8 weights per channel + dynamic int8 activations on every Linear"


@dataclass(frozen=True)
class Int8WeightOnlyRecipe(Recipe):
    """int8 weights, float activations (torchao): smaller, near-lossless, not faster on CPU."""

    TYPE: ClassVar[str] = "int8-weight-only"
    BACKEND: ClassVar[str] = "torchao"
    SUMMARY: ClassVar[str] = "int8 weight-only on every Linear (torchao)"


@dataclass
class QuantizationResult:
    module: nn.Module
    recipe: Recipe
    quantized: list[str] = field(default_factory=list)
    kept_float: list[str] = field(default_factory=list)

    @property
    def n_quantized(self) -> int:
        return len(self.quantized)


Calibration = list[tuple[Tensor, ...]]
"""Batches of model inputs (what ``WrappedModel.batches`` yields): export examples and calibration."""

Handler = Callable[[nn.Module, Any, Calibration | None], QuantizationResult]
_REGISTRY: dict[str, tuple[type[Recipe], Handler]] = {}


def register_handler(spec: type[Recipe]) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        _REGISTRY[spec.TYPE] = (spec, fn)
        return fn

    return deco


def _excluded(name: str, exclude: tuple[str, ...]) -> bool:
    return any(name == e or name.startswith(e + ".") for e in exclude)


def _linear_names(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]


@register_handler(DynamicInt8Recipe)
def _dynamic_int8(
    module: nn.Module, recipe: DynamicInt8Recipe, calibration: Calibration | None = None
) -> QuantizationResult:
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    linears = _linear_names(module)
    targets = [n for n in linears if not _excluded(n, recipe.exclude)]
    qconfig = per_channel_dynamic_qconfig if recipe.per_channel else default_dynamic_qconfig
    if isinstance(module, nn.Linear):  # quantize_dynamic swaps children only, never the root
        if not targets:
            return QuantizationResult(module, recipe, [], [""])
        root = copy.deepcopy(module)
        root.qconfig = qconfig
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q_root = torch.ao.nn.quantized.dynamic.Linear.from_float(root)
        return QuantizationResult(q_root, recipe, [""], [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notice
        q = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(module), {n: qconfig for n in targets}, dtype=torch.qint8
        )
    dyn_linear = torch.ao.nn.quantized.dynamic.Linear
    done = [n for n, m in q.named_modules() if isinstance(m, dyn_linear)]
    return QuantizationResult(q, recipe, done, [n for n in linears if n not in done])


class TorchaoModule(nn.Module):
    """A torchao-quantized module that survives ``torch.save`` / ``torch.load``.

    torchao 0.18's ``Int8Tensor`` parameters do not pickle ("'functools.partial' object has no
    attribute '__name__'"), so ``WrappedModel.save`` would fail on an int8-weight-only candidate.
    This wrapper pickles the module with each torchao parameter flattened into its plain inner
    tensors (``__tensor_flatten__``: int8 ``qdata``, ``scale``, ...) and rebuilds them on load
    with ``__tensor_unflatten__``, so the file holds int8 weights, not floats. (torchao also
    binds a ``functools.partial`` as each Linear's ``extra_repr``; that is dropped from the file.)
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *inputs: Tensor) -> Tensor:
        out: Tensor = self.inner(*inputs)
        return out

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        import io

        import torch

        packed: dict[tuple[str, str], tuple[Any, ...]] = {}
        removed: list[tuple[nn.Module, str, Any]] = []
        reprs: list[tuple[nn.Module, Any]] = []
        for mod_name, mod in self.inner.named_modules():
            if "extra_repr" in mod.__dict__:  # torchao binds a functools.partial here: not picklable
                reprs.append((mod, mod.__dict__.pop("extra_repr")))
            for p_name, param in list(mod.named_parameters(recurse=False)):
                if type(param) is nn.Parameter and type(param.data) is Tensor:
                    continue
                if not hasattr(param, "__tensor_flatten__"):
                    continue
                names, ctx = param.__tensor_flatten__()
                inner = {n: getattr(param, n) for n in names}
                packed[(mod_name, p_name)] = (type(param), inner, ctx, tuple(param.shape), tuple(param.stride()))
                removed.append((mod, p_name, param))
                mod._parameters[p_name] = None
        buf = io.BytesIO()
        try:
            torch.save(self.inner, buf)
        finally:
            for mod, p_name, param in removed:
                mod._parameters[p_name] = param
            for mod, fn in reprs:
                mod.__dict__["extra_repr"] = fn
        return (_rebuild_torchao, (buf.getvalue(), packed))


def _rebuild_torchao(blob: bytes, packed: dict[tuple[str, str], tuple[Any, ...]]) -> TorchaoModule:
    import io

    import torch

    inner = torch.load(io.BytesIO(blob), weights_only=False, map_location="cpu")
    for (mod_name, p_name), (cls, tensors, ctx, size, stride) in packed.items():
        t = cls.__tensor_unflatten__(tensors, ctx, size, stride)
        setattr(inner.get_submodule(mod_name), p_name, nn.Parameter(t, requires_grad=False))
    return TorchaoModule(inner)


@register_handler(Int8WeightOnlyRecipe)
def _int8_weight_only(
    module: nn.Module, recipe: Int8WeightOnlyRecipe, calibration: Calibration | None = None
) -> QuantizationResult:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    q = copy.deepcopy(module)
    linears = _linear_names(q)
    targets = {n for n in linears if not _excluded(n, recipe.exclude)}
    quantize_(q, Int8WeightOnlyConfig(), filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn in targets)
    done = [
        n
        for n, m in q.named_modules()
        if isinstance(m, nn.Linear) and type(m.weight).__name__ != "Parameter" and type(m.weight).__name__ != "Tensor"
    ]
    return QuantizationResult(TorchaoModule(q), recipe, done, [n for n in linears if n not in done])


def list_recipes() -> list[type[Recipe]]:
    return [spec for spec, _ in _REGISTRY.values()]


def get_recipe(name: str, **kwargs: Any) -> Recipe:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown recipe '{name}'", f"choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name][0](**kwargs)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(recipe).items()}
    return {"_type": recipe.TYPE, "_version": recipe.VERSION, "_data": data}


def recipe_from_dict(d: dict[str, Any]) -> Recipe:
    """Inverse of :func:`recipe_to_dict`, accepting only registered types and known fields."""
    t = d.get("_type")
    if t not in _REGISTRY:
        raise ConfigError(f"recipe type {t!r} is not on the allow-list", f"known: {', '.join(sorted(_REGISTRY))}")
    spec = _REGISTRY[t][0]
    if d.get("_version") != spec.VERSION:
        raise ConfigError(f"recipe {t} version {d.get('_version')!r} is not supported (expected {spec.VERSION})")
    data = dict(d.get("_data") or {})
    allowed = {f.name for f in fields(spec)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"recipe {t}: unknown field(s) {', '.join(unknown)}")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return spec(**data)


def apply_recipe(module: nn.Module, recipe: Recipe, calibration: Calibration | None = None) -> QuantizationResult:
    """Quantize a copy of ``module``; refuses to return a candidate in which nothing changed.

    ``calibration`` is a few input batches: ONNX export needs one as the tracing example and
    static int8 calibrates activation ranges on all of them; the torch-eager recipes ignore it.
    """
    _, handler = _REGISTRY[recipe.TYPE]
    if getattr(module, "onnx_bytes", None) is not None:  # an ONNX source model (OrtModule)
        if not recipe.TYPE.startswith("ort-"):
            raise UnsupportedModel(
                f"recipe {recipe.TYPE} quantizes torch modules; this source is an ONNX model",
                "use ort-dynamic-int8 or ort-static-int8",
            )
    elif not _linear_names(module):
        kinds = sorted({type(m).__name__ for m in module.modules()} - {type(module).__name__})
        raise UnsupportedModel(
            f"recipe {recipe.TYPE} found no nn.Linear to quantize in {type(module).__name__}",
            f"layers present: {', '.join(kinds) or 'none'}",
        )
    result = handler(module, recipe, calibration)
    if result.n_quantized == 0:
        if recipe.exclude and all(_excluded(n, recipe.exclude) for n in result.kept_float):
            raise UnsupportedModel(
                f"recipe {recipe.label} quantized nothing (all {len(result.kept_float)} Linear layers excluded)",
                "narrow the recipe's exclude list",
            )
        raise UnsupportedModel(
            f"recipe {recipe.label} ({recipe.BACKEND}) quantized nothing: none of "
            f"{', '.join(result.kept_float[:5]) or 'the Linear layers'} is supported by this backend",
            "choose another recipe",
        )
    return result


# Backends register their specs on import; they import nothing heavy until a handler runs.
from quantgate.quantize import float_backend as _float_backend  # noqa: E402,F401
from quantgate.quantize import onnx_backend as _onnx_backend  # noqa: E402,F401
from quantgate.quantize import quanto_backend as _quanto_backend  # noqa: E402,F401
