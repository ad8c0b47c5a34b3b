"""fp16 / bf16: each selected Linear is cast and wrapped so callers still see float32.

``CastLinear`` casts its input to the weight dtype and its output back to the caller's dtype,
so a half-precision Linear drops into an fp32 graph (LayerNorm, softmax, the tokenizer's int
ids) and ``WrappedModel`` needs no change. Per-Linear casting is what makes exclusions work
like in every other recipe; the price is two casts per layer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from quantgate.errors import UnsupportedModel
from quantgate.quantize.base import (
    Calibration,
    QuantizationResult,
    Recipe,
    excluded,
    linear_names,
    register_handler,
)


class CastLinear(nn.Module):
    """A Linear held in ``dtype``; inputs are cast in, outputs cast back to the input dtype."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype) -> None:
        super().__init__()
        self.linear = copy.deepcopy(linear).to(dtype)
        self.dtype = dtype

    @property
    def in_features(self) -> int:
        return int(self.linear.in_features)

    @property
    def out_features(self) -> int:
        return int(self.linear.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.to(self.dtype)).to(x.dtype)


def cpu_supports(dtype: torch.dtype) -> tuple[bool, str]:
    """Whether a half-precision matmul runs here, and why not (a quick real matmul)."""
    try:
        a = torch.randn(8, 8).to(dtype)
        out = a @ a
        ok = bool(torch.isfinite(out.float()).all())
    except (RuntimeError, TypeError) as exc:
        return False, f"{dtype} matmul fails on this CPU: {exc}"
    if not ok:
        return False, f"{dtype} matmul returns non-finite values on this CPU"
    return True, ""


def _cast(module: nn.Module, recipe: Recipe, dtype: torch.dtype) -> QuantizationResult:
    ok, why = cpu_supports(dtype)
    if not ok:
        raise UnsupportedModel(why, "use an int8 recipe on this machine")
    linears = linear_names(module)
    targets = [n for n in linears if not excluded(n, recipe.exclude)]
    if isinstance(module, nn.Linear):
        if not targets:
            return QuantizationResult(copy.deepcopy(module), recipe, [], [""])
        return QuantizationResult(CastLinear(module, dtype), recipe, [""], [])
    q = copy.deepcopy(module)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = q.get_submodule(parent_name) if parent_name else q
        lin = getattr(parent, child)
        setattr(parent, child, CastLinear(lin, dtype))
    return QuantizationResult(q, recipe, targets, [n for n in linears if n not in targets])


@dataclass(frozen=True)
class Fp16Recipe(Recipe):
    """fp16 weights and matmuls. On a CPU without AVX512-FP16 this is emulated: smaller, slower."""

    TYPE: ClassVar[str] = "fp16"
    BACKEND: ClassVar[str] = "torch-cast"
    SUMMARY: ClassVar[str] = "fp16 on every Linear (inputs cast in, outputs cast back to fp32)"


@dataclass(frozen=True)
class Bf16Recipe(Recipe):
    """bf16 weights and matmuls (oneDNN uses AVX512-BF16 / AMX where the CPU has them)."""

    TYPE: ClassVar[str] = "bf16"
    BACKEND: ClassVar[str] = "torch-cast"
    SUMMARY: ClassVar[str] = "bf16 on every Linear (inputs cast in, outputs cast back to fp32)"


@register_handler(Fp16Recipe)
def _fp16(module: nn.Module, recipe: Fp16Recipe, calibration: Calibration | None = None) -> QuantizationResult:
    return _cast(module, recipe, torch.float16)


@register_handler(Bf16Recipe)
def _bf16(module: nn.Module, recipe: Bf16Recipe, calibration: Calibration | None = None) -> QuantizationResult:
    return _cast(module, recipe, torch.bfloat16)
