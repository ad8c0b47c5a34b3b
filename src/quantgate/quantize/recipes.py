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

from torch import nn

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


Handler = Callable[[nn.Module, Any], QuantizationResult]
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
def _dynamic_int8(module: nn.Module, recipe: DynamicInt8Recipe) -> QuantizationResult:
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


@register_handler(Int8WeightOnlyRecipe)
def _int8_weight_only(module: nn.Module, recipe: Int8WeightOnlyRecipe) -> QuantizationResult:
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
    return QuantizationResult(q, recipe, done, [n for n in linears if n not in done])


def list_recipes() -> list[type[Recipe]]:
    return [spec for spec, _ in _REGISTRY.values()]


def get_recipe(name: str, **kwargs: Any) -> Recipe:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown recipe '{name}'", f"choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name][0](**kwargs)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    data = asdict(recipe)
    data["exclude"] = list(recipe.exclude)
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
    if "exclude" in data:
        data["exclude"] = tuple(data["exclude"])
    return spec(**data)


def apply_recipe(module: nn.Module, recipe: Recipe) -> QuantizationResult:
    """Quantize a copy of ``module``; refuses to return a candidate in which nothing changed."""
    _, handler = _REGISTRY[recipe.TYPE]
    if not _linear_names(module):
        kinds = sorted({type(m).__name__ for m in module.modules()} - {type(module).__name__})
        raise UnsupportedModel(
            f"recipe {recipe.TYPE} found no nn.Linear to quantize in {type(module).__name__}",
            f"layers present: {', '.join(kinds) or 'none'}",
        )
    result = handler(module, recipe)
    if result.n_quantized == 0:
        raise UnsupportedModel(
            f"recipe {recipe.label} quantized nothing (all {len(result.kept_float)} Linear layers excluded)",
            "narrow the recipe's exclude list",
        )
    return result
