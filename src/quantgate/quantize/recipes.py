"""Recipes as versioned, serialisable specs with one registered handler per spec type.

A recipe's JSON envelope ``{"_type": ..., "_version": ..., "_data": {...}}`` is what goes into
provenance and the model card; loading accepts only types on the allow-list (the registry),
so a recipe file can never name arbitrary code. A new backend is one new module with a spec
class and one ``@register_handler`` function (see :mod:`quantgate.quantize.base`), plus one
import line below; nothing here changes per backend.

Layering: ``base`` (spec, result, registry) <- backends <- this module. The backends import
nothing heavy until a handler runs.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from torch import nn

from quantgate.errors import ConfigError, UnsupportedModel
from quantgate.quantize import float_backend as _float_backend  # noqa: F401  (registers fp16, bf16)
from quantgate.quantize import onnx_backend as _onnx_backend  # noqa: F401  (registers ort-*)
from quantgate.quantize import quanto_backend as _quanto_backend  # noqa: F401  (registers quanto)
from quantgate.quantize import torch_backend as _torch_backend  # noqa: F401  (registers torch int8)
from quantgate.quantize import torch_static_backend as _torch_static  # noqa: F401  (registers torch static)
from quantgate.quantize.base import (
    REGISTRY,
    Calibration,
    QuantizationResult,
    Recipe,
    excluded,
    module_coverage,
    recipe_to_dict,
    register_handler,
    weight_layers,
)
from quantgate.quantize.torch_backend import (  # re-exported: older pickles name them here
    DynamicInt8Recipe,
    Int8WeightOnlyRecipe,
    TorchaoModule,
    _rebuild_torchao,
)

__all__ = [
    "Calibration",
    "DynamicInt8Recipe",
    "Int8WeightOnlyRecipe",
    "QuantizationResult",
    "Recipe",
    "TorchaoModule",
    "_rebuild_torchao",
    "apply_recipe",
    "get_recipe",
    "list_recipes",
    "recipe_from_dict",
    "recipe_to_dict",
    "register_handler",
]


def list_recipes() -> list[type[Recipe]]:
    return [spec for spec, _ in REGISTRY.values()]


def get_recipe(name: str, **kwargs: Any) -> Recipe:
    if name not in REGISTRY:
        raise ConfigError(f"unknown recipe '{name}'", f"choose one of: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name][0](**kwargs)


def recipe_from_dict(d: dict[str, Any]) -> Recipe:
    """Inverse of :func:`recipe_to_dict`, accepting only registered types and known fields."""
    t = d.get("_type")
    if t not in REGISTRY:
        raise ConfigError(f"recipe type {t!r} is not on the allow-list", f"known: {', '.join(sorted(REGISTRY))}")
    spec = REGISTRY[t][0]
    if d.get("_version") != spec.VERSION:
        raise ConfigError(f"recipe {t} version {d.get('_version')!r} is not supported (expected {spec.VERSION})")
    data = dict(d.get("_data") or {})
    allowed = {f.name for f in fields(spec)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"recipe {t}: unknown field(s) {', '.join(unknown)}")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    _check_field_types(t, spec, data)
    return spec(**data)


def _check_field_types(name: str, spec: type[Recipe], data: dict[str, Any]) -> None:
    """Each field's value has the field's declared type, strictly (pydantic): a recipe file with
    ``"exclude": {"nested": true}`` is refused here, naming the field, instead of quantizing with a
    spec nobody wrote."""
    from typing import get_type_hints

    from pydantic import TypeAdapter, ValidationError

    hints = get_type_hints(spec)
    for key, value in data.items():
        try:
            TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(
                f"recipe {name}: field {key!r} must be {_type_name(hints[key])}, got {type(value).__name__} "
                f"{value!r}" + (f" ({err['msg']})" if err.get("msg") else ""),
                "fix the value in the recipe file (see docs/recipes.md for each recipe's fields)",
            ) from None


def _type_name(hint: Any) -> str:
    text = str(hint).replace("typing.", "")
    return {"tuple[str, ...]": "a list of strings"}.get(text, getattr(hint, "__name__", text))


def apply_recipe(module: nn.Module, recipe: Recipe, calibration: Calibration | None = None) -> QuantizationResult:
    """Quantize a copy of ``module``; refuses to return a candidate in which nothing changed
    (except for a lossless recipe such as ``ort-fp32``, whose point is the runtime).

    ``calibration`` is a few input batches: ONNX export needs one as the tracing example and
    static int8 calibrates activation ranges on all of them; the torch-eager dynamic and
    weight-only recipes ignore it.
    """
    from quantgate.hardware import host_info

    _, handler = REGISTRY[recipe.TYPE]
    if getattr(module, "onnx_bytes", None) is not None:  # an ONNX source model (OrtModule)
        if not recipe.TYPE.startswith("ort-"):
            raise UnsupportedModel(
                f"recipe {recipe.TYPE} quantizes torch modules; this source is an ONNX model",
                "use ort-dynamic-int8, ort-static-int8 or ort-fp32",
            )
    elif not weight_layers(module, recipe.LAYER_KINDS) and not recipe.LOSSLESS:
        kinds = sorted({type(m).__name__ for m in module.modules()} - {type(module).__name__})
        wanted = "/".join(f"nn.{k}" for k in recipe.LAYER_KINDS)
        raise UnsupportedModel(
            f"recipe {recipe.TYPE} found no {wanted} to quantize in {type(module).__name__}",
            f"layers present: {', '.join(kinds) or 'none'}",
        )
    result = handler(module, recipe, calibration)
    if not result.coverage and getattr(module, "onnx_bytes", None) is None:
        result.coverage = module_coverage(module, result.quantized)
    if result.resolved is None:
        result.resolved = replace(recipe)
    result.hardware.setdefault("host", host_info())
    # a recipe with no ISA-specific int8 kernel (float casts, weight-only dequantizing to float, the
    # ORT export) gives the same predictions on any ISA; its speed is still the measuring host's
    result.hardware.setdefault("target", "any")
    if result.n_quantized == 0 and not recipe.LOSSLESS:
        if recipe.exclude and all(excluded(n, recipe.exclude) for n in result.kept_float):
            raise UnsupportedModel(
                f"recipe {recipe.label} quantized nothing (all {len(result.kept_float)} "
                f"{'/'.join(recipe.LAYER_KINDS)} layers excluded)",
                "narrow the recipe's exclude list",
            )
        raise UnsupportedModel(
            f"recipe {recipe.label} ({recipe.BACKEND}) quantized nothing: none of "
            f"{', '.join(result.kept_float[:5]) or 'the layers'} is supported by this backend",
            "choose another recipe",
        )
    return result
