"""Recipes for causal language models (a ``transformers`` ``*ForCausalLM``): bf16, int8 weight-only
and int4 weight-only on torchao's CPU int4 kernel.

Same pattern as every recipe (a frozen, versioned spec whose JSON envelope and digest go into
provenance, and one handler per spec), but a **registry of its own** (:data:`LM_REGISTRY`), for
two reasons: the classifier registry (:mod:`quantgate.quantize.recipes`) is filled by the imports
in that module, so a recipe registered from here would be listed or not depending on import
order, and the classifier search would try LM recipes on tabular models; and the LM recipes'
types must not collide with ``bf16`` / ``int8-weight-only`` / ``int4-weight-only``, whose specs
and digests stay as they are. So the types are ``lm-bf16``, ``lm-int8-weight-only`` and
``lm-int4-weight-only``.

int4: ``torchao.prototype.quantization.int4.inference_workflow.PrototypeInt4WeightOnlyConfig``
(``Int4OpaqueTensor``, ATen's ``_weight_int4pack_mm_for_cpu``) on a **bf16** copy of the model
(on fp32 activations the same kernel path is ~35x slower). The kernel needs the input width
divisible by the group size and the output width by 16; torchao skips a layer whose input width
the group size does not divide and says so at INFO level only (and crashes on an output width
that is not a multiple of 16). So the group size is chosen **per layer** (the largest of
``group_sizes`` that divides its input width), each layer that fits none is named with the reason,
and every planned layer is checked to have become int4 afterwards: nothing is skipped silently.
Whether the kernel runs on this host is probed once (a real int4 matmul), never assumed from the
ISA: where it does not, the recipe raises :class:`Int4KernelUnavailable`.

Embeddings and ``lm_head`` stay float by default (``include_embeddings: true`` quantizes
``lm_head`` and, for int8, the input embedding; an int4 embedding lookup does not exist, so the
int4 recipe names it as kept in bf16).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from quantgate.errors import ConfigError, UnsupportedModel
from quantgate.quantize.base import QuantizationResult, Recipe, excluded, module_coverage, recipe_to_dict

INT4_GROUP_SIZES = (32, 64, 128, 256)
"""group sizes the CPU int4 kernel accepts"""
INT4_OUT_MULTIPLE = 16
"""the CPU int4 kernel packs output rows by 16 (``_convert_weight_to_int4pack_cpu``)"""
INT4_KERNEL = "aten._weight_int4pack_mm_for_cpu (torchao Int4OpaqueTensor)"


class Int4KernelUnavailable(UnsupportedModel):
    """torchao's CPU int4 kernel does not run on this host (no silent fallback to another recipe)."""


@dataclass(frozen=True)
class LMRecipe(Recipe):
    """Base spec of the language-model recipes: ``exclude`` keeps modules float by name prefix."""

    TYPE: ClassVar[str] = "lm-recipe"
    BITS: ClassVar[int] = 32
    """weight bits of the quantized layers (what the policy's ``weight_bits`` rules match)"""


@dataclass(frozen=True)
class LMBf16Recipe(LMRecipe):
    """The whole model in bf16 (weights, activations, norms, embeddings): half the bytes, and the
    base that the int4 kernel runs on."""

    TYPE: ClassVar[str] = "lm-bf16"
    BACKEND: ClassVar[str] = "torch-cast"
    BITS: ClassVar[int] = 16
    SUMMARY: ClassVar[str] = "the whole language model cast to bf16"

    def __post_init__(self) -> None:
        if self.exclude:  # a float32 module inside a bf16 decoder would fail on dtypes: refuse, never ignore
            raise ConfigError(
                "lm-bf16 casts the whole model and cannot keep modules in fp32",
                "drop exclude, or use lm-int8-weight-only / lm-int4-weight-only, which honour it",
            )


@dataclass(frozen=True)
class LMWeightOnlyRecipe(LMRecipe):
    include_embeddings: bool = False
    """quantize ``lm_head`` (and, where the backend can, the input embedding) too"""


@dataclass(frozen=True)
class LMInt8WeightOnlyRecipe(LMWeightOnlyRecipe):
    """int8 weights per output channel (torchao ``Int8WeightOnlyConfig``), fp32 activations."""

    TYPE: ClassVar[str] = "lm-int8-weight-only"
    BACKEND: ClassVar[str] = "torchao"
    BITS: ClassVar[int] = 8
    SUMMARY: ClassVar[str] = "int8 weight-only on every Linear of the decoder (torchao), fp32 activations"


@dataclass(frozen=True)
class LMInt4WeightOnlyRecipe(LMWeightOnlyRecipe):
    """int4 weights in groups (torchao's CPU int4 kernel) on a bf16 copy, the group size chosen
    per layer from ``group_sizes`` (the largest that divides the layer's input width)."""

    group_sizes: tuple[int, ...] = (128, 64, 32)
    TYPE: ClassVar[str] = "lm-int4-weight-only"
    BACKEND: ClassVar[str] = "torchao-cpu-int4"
    BITS: ClassVar[int] = 4
    SUMMARY: ClassVar[str] = (
        "int4 weight-only (torchao CPU int4 kernel) on a bf16 copy, group size per layer from {128, 64, 32}"
    )

    def __post_init__(self) -> None:
        bad = [g for g in self.group_sizes if g not in INT4_GROUP_SIZES]
        if not self.group_sizes or bad:
            raise ConfigError(
                f"lm-int4-weight-only: group sizes {list(self.group_sizes)} are not all among "
                f"{list(INT4_GROUP_SIZES)} (what the CPU int4 kernel accepts)"
            )


@dataclass
class LMQuantizationResult(QuantizationResult):
    """A :class:`QuantizationResult` with what is particular to a language model: the reason
    each layer was left unquantized, the group size chosen per layer (int4) and the weight bits."""

    skipped: dict[str, str] = field(default_factory=dict)
    """module name -> why it was not quantized (every layer in ``kept_float`` has one)"""
    group_sizes: dict[str, int] = field(default_factory=dict)
    weight_bits: int = 32
    compute_dtype: str = "float32"

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "skipped": dict(self.skipped),
            "group_sizes": dict(self.group_sizes),
            "weight_bits": self.weight_bits,
            "compute_dtype": self.compute_dtype,
        }


LMHandler = Callable[[nn.Module, Any], LMQuantizationResult]
LM_REGISTRY: dict[str, tuple[type[LMRecipe], LMHandler]] = {}


def register_lm_handler(spec: type[LMRecipe]) -> Callable[[LMHandler], LMHandler]:
    def deco(fn: LMHandler) -> LMHandler:
        LM_REGISTRY[spec.TYPE] = (spec, fn)
        return fn

    return deco


def list_lm_recipes() -> list[type[LMRecipe]]:
    return [spec for spec, _ in LM_REGISTRY.values()]


def get_lm_recipe(name: str, **kwargs: Any) -> LMRecipe:
    if name not in LM_REGISTRY:
        raise ConfigError(f"unknown language-model recipe '{name}'", f"choose one of: {', '.join(sorted(LM_REGISTRY))}")
    return LM_REGISTRY[name][0](**kwargs)


def lm_recipe_from_dict(d: dict[str, Any]) -> LMRecipe:
    """Inverse of :func:`quantgate.quantize.base.recipe_to_dict` for LM recipes (allow-list only)."""
    t = d.get("_type")
    if t not in LM_REGISTRY:
        raise ConfigError(
            f"recipe type {t!r} is not a language-model recipe", f"known: {', '.join(sorted(LM_REGISTRY))}"
        )
    spec = LM_REGISTRY[t][0]
    if d.get("_version") != spec.VERSION:
        raise ConfigError(f"recipe {t} version {d.get('_version')!r} is not supported (expected {spec.VERSION})")
    data = dict(d.get("_data") or {})
    unknown = sorted(set(data) - {f.name for f in fields(spec)})
    if unknown:
        raise ConfigError(f"recipe {t}: unknown field(s) {', '.join(unknown)}")
    return spec(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# --- layers ------------------------------------------------------------------------------------


def _name_of(model: nn.Module, target: nn.Module | None) -> str | None:
    if target is None:
        return None
    return next((n for n, m in model.named_modules() if m is target), None)


def embedding_names(model: nn.Module) -> tuple[str | None, str | None]:
    """(input embedding, output projection) module names of a causal LM, None where absent."""
    inp = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    try:
        out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    except NotImplementedError:
        out = None
    return _name_of(model, inp), _name_of(model, out)


def _check_causal_lm(model: nn.Module) -> None:
    if not hasattr(model, "get_input_embeddings") or not hasattr(model, "config"):
        raise UnsupportedModel(
            f"{type(model).__name__} is not a transformers causal language model",
            "pass a *ForCausalLM (transformers), e.g. AutoModelForCausalLM.from_pretrained(...)",
        )


def _plan(
    model: nn.Module, recipe: LMWeightOnlyRecipe, kinds: tuple[type[nn.Module], ...]
) -> tuple[list[str], dict[str, str]]:
    """(modules to quantize, {module: why not}) over the weight layers of ``kinds``, before any
    backend constraint: exclusions and the embeddings/lm_head default."""
    emb, head = embedding_names(model)
    targets: list[str] = []
    skipped: dict[str, str] = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear | nn.Embedding):
            continue
        if name in (emb, head) and not recipe.include_embeddings:
            skipped[name] = "embeddings and lm_head stay float by default (include_embeddings: true quantizes them)"
        elif excluded(name, recipe.exclude):
            skipped[name] = "excluded by the recipe"
        elif not isinstance(mod, kinds):
            skipped[name] = f"{type(mod).__name__} is not supported by {recipe.BACKEND}"
        else:
            targets.append(name)
    return targets, skipped


def _is_quantized(param: Any, cls_name: str) -> bool:
    return type(param).__name__ == cls_name


def tensor_bytes(module: nn.Module) -> dict[str, int]:
    """Bytes of the stored parameters by element kind (``int4``, ``int8``, ``bfloat16``,
    ``float32``, ...): a quantized tensor subclass counts its inner tensors (packed values,
    scales, zero points); a parameter shared by two modules counts once."""
    out: dict[str, int] = {}
    seen: set[int] = set()

    def add(t: torch.Tensor, label: str | None = None) -> None:
        if type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "__tensor_flatten__"):
            names, _ = t.__tensor_flatten__()
            for n in names:
                inner = getattr(t, n)
                packed = "int4" if type(t).__name__ == "Int4OpaqueTensor" and n == "qdata" else None
                add(inner, packed)
            return
        key = label or str(t.dtype).removeprefix("torch.")
        out[key] = out.get(key, 0) + t.numel() * t.element_size()

    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        add(p)
    return out


# --- handlers ----------------------------------------------------------------------------------


@register_lm_handler(LMBf16Recipe)
def _lm_bf16(model: nn.Module, recipe: LMBf16Recipe) -> LMQuantizationResult:
    from quantgate.quantize.float_backend import cpu_supports

    ok, why = cpu_supports(torch.bfloat16)
    if not ok:
        raise UnsupportedModel(why, "use lm-int8-weight-only on this machine")
    q = copy.deepcopy(model).to(torch.bfloat16)
    weights = [n for n, m in q.named_modules() if isinstance(m, nn.Linear | nn.Embedding)]
    return LMQuantizationResult(
        q,
        recipe,
        quantized=weights,
        kept_float=[],
        notes=["every parameter (norms included) and every activation is bf16; logits are read as fp32"],
        weight_bits=16,
        compute_dtype="bfloat16",
    )


@register_lm_handler(LMInt8WeightOnlyRecipe)
def _lm_int8_weight_only(model: nn.Module, recipe: LMInt8WeightOnlyRecipe) -> LMQuantizationResult:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    targets, skipped = _plan(model, recipe, (nn.Linear, nn.Embedding))
    q = copy.deepcopy(model)
    wanted = set(targets)
    if wanted:
        quantize_(q, Int8WeightOnlyConfig(), filter_fn=lambda m, fqn: fqn in wanted)
    done = [n for n in targets if _is_quantized(q.get_submodule(n).weight, "Int8Tensor")]
    for n in targets:
        if n not in done:
            skipped[n] = "torchao left it unquantized"
    return LMQuantizationResult(
        q, recipe, quantized=done, kept_float=list(skipped), skipped=skipped, weight_bits=8, compute_dtype="float32"
    )


@functools.cache
def int4_kernel_status() -> tuple[bool, str]:
    """Whether torchao's CPU int4 path runs here: a real int4 matmul on a small bf16 Linear,
    compared with the bf16 result (never inferred from the ISA). ``(ok, why not)``."""
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        return False, f"this torch {torch.__version__} has no aten._weight_int4pack_mm_for_cpu"
    try:
        from torchao.prototype.quantization.int4.inference_workflow import PrototypeInt4WeightOnlyConfig
        from torchao.quantization import quantize_
    except ImportError as exc:
        return False, f"torchao has no CPU int4 workflow: {exc}"
    try:
        gen = torch.Generator().manual_seed(0)
        lin = nn.Linear(64, 32, bias=False).to(torch.bfloat16)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(32, 64, generator=gen).to(torch.bfloat16) * 0.1)
        x = torch.randn(4, 64, generator=gen).to(torch.bfloat16)
        with torch.no_grad():
            ref = lin(x).float()
        holder = nn.Sequential(lin)
        quantize_(holder, PrototypeInt4WeightOnlyConfig(group_size=32))
        if type(holder[0].weight).__name__ != "Int4OpaqueTensor":
            return False, "torchao did not pack a 64x32 bf16 Linear to Int4OpaqueTensor"
        with torch.inference_mode():
            y = holder(x).float()
    except Exception as exc:  # the kernel's failure modes are many (missing ISA path, op errors)
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if not bool(torch.isfinite(y).all()):
        return False, "the int4 matmul returned non-finite values"
    err = float((y - ref).abs().max() / ref.abs().max().clamp_min(1e-6))
    if err > 0.25:
        return False, f"the int4 matmul disagrees with bf16 by {err:.0%} of its range"
    return True, ""


def int4_group_size(in_features: int, out_features: int, group_sizes: tuple[int, ...]) -> tuple[int | None, str]:
    """The largest group size that fits a Linear, or ``(None, why none fits)`` (pure)."""
    if out_features % INT4_OUT_MULTIPLE:
        return None, (
            f"output width {out_features} is not a multiple of {INT4_OUT_MULTIPLE} (the CPU int4 kernel packs "
            f"{INT4_OUT_MULTIPLE} rows at a time)"
        )
    for g in sorted(group_sizes, reverse=True):
        if in_features % g == 0:
            return g, ""
    return None, f"input width {in_features} is divisible by none of the group sizes {sorted(group_sizes)}"


@register_lm_handler(LMInt4WeightOnlyRecipe)
def _lm_int4_weight_only(model: nn.Module, recipe: LMInt4WeightOnlyRecipe) -> LMQuantizationResult:
    ok, why = int4_kernel_status()
    if not ok:
        raise Int4KernelUnavailable(
            f"lm-int4-weight-only needs torchao's CPU int4 kernel ({INT4_KERNEL}), which does not run on this "
            f"host: {why}",
            "use lm-int8-weight-only or lm-bf16 here, or build the candidate on a host where the kernel runs",
        )
    from torchao.prototype.quantization.int4.inference_workflow import PrototypeInt4WeightOnlyConfig
    from torchao.quantization import quantize_

    targets, skipped = _plan(model, recipe, (nn.Linear,))
    emb, _ = embedding_names(model)
    if emb in skipped and recipe.include_embeddings:
        skipped[emb] = "an int4 embedding lookup does not exist in torchao's CPU int4 path: kept in bf16"
    groups: dict[str, int] = {}
    for name in targets:
        lin = model.get_submodule(name)
        g, reason = int4_group_size(lin.in_features, lin.out_features, recipe.group_sizes)
        if g is None:
            skipped[name] = reason
        else:
            groups[name] = g
    q = copy.deepcopy(model).to(torch.bfloat16)
    for g in sorted(set(groups.values()), reverse=True):
        names = {n for n, gn in groups.items() if gn == g}
        quantize_(q, PrototypeInt4WeightOnlyConfig(group_size=g), filter_fn=lambda m, fqn, names=names: fqn in names)
    done = [n for n in groups if _is_quantized(q.get_submodule(n).weight, "Int4OpaqueTensor")]
    for n in groups:
        if n not in done:
            skipped[n] = f"torchao left it unquantized at group size {groups[n]} (torchao logs such skips at INFO only)"
    from quantgate.hardware import host_info

    return LMQuantizationResult(
        q,
        recipe,
        quantized=done,
        kept_float=list(skipped),
        skipped=skipped,
        group_sizes={n: groups[n] for n in done},
        weight_bits=4,
        compute_dtype="bfloat16",
        hardware={"target": str(host_info()["isa"]), "kernel": INT4_KERNEL},
        notes=[
            "int4 weights on a bf16 copy: activations, norms and every layer kept float are bf16, logits read as fp32"
        ],
    )


def apply_lm_recipe(model: nn.Module, recipe: LMRecipe) -> LMQuantizationResult:
    """Quantize a copy of a causal LM; coverage by layer kind over the float model; refuses a
    candidate in which nothing was quantized, naming why for the first layers."""
    from quantgate.hardware import host_info

    if recipe.TYPE not in LM_REGISTRY:
        raise ConfigError(f"{recipe.TYPE} is not a language-model recipe", f"known: {', '.join(sorted(LM_REGISTRY))}")
    _check_causal_lm(model)
    result = LM_REGISTRY[recipe.TYPE][1](model, recipe)
    result.coverage = module_coverage(model, result.quantized)
    result.size_by_kind = tensor_bytes(result.module)
    result.hardware.setdefault("target", "any")
    result.hardware.setdefault("host", host_info())
    if not result.quantized:
        reasons = "; ".join(f"{n}: {r}" for n, r in list(result.skipped.items())[:3])
        raise UnsupportedModel(
            f"recipe {recipe.label} quantized nothing in {type(model).__name__} ({reasons or 'no weight layers'})",
            "choose another recipe, or other group sizes / exclusions",
        )
    return result


__all__ = [
    "LM_REGISTRY",
    "Int4KernelUnavailable",
    "LMBf16Recipe",
    "LMInt4WeightOnlyRecipe",
    "LMInt8WeightOnlyRecipe",
    "LMQuantizationResult",
    "LMRecipe",
    "apply_lm_recipe",
    "get_lm_recipe",
    "int4_group_size",
    "int4_kernel_status",
    "list_lm_recipes",
    "lm_recipe_from_dict",
    "recipe_to_dict",
    "tensor_bytes",
]
