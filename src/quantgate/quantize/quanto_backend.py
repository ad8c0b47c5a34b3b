"""Weight-only int8 / int4 through optimum-quanto (``quantize`` + ``freeze``).

Why quanto for int4: torchao 0.18's ``Int4WeightOnlyConfig`` has no CPU path on this machine
(``plain`` needs the mslk kernels, ``plain_int32`` refuses device cpu, ``tile_packed_to_4d``
needs CUDA), so the int4 recipe packs weights with quanto, which runs everywhere. A frozen
quanto module pickles whole (``QLinear`` + ``WeightQBytesTensor`` / ``WeightQBitsTensor``), so
``torch.save`` of the module round-trips in a fresh process; the integration test proves it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from quantgate.quantize.base import (
    Calibration,
    QuantizationResult,
    Recipe,
    excluded,
    linear_names,
    register_handler,
)


@dataclass(frozen=True)
class QuantoInt8Recipe(Recipe):
    """int8 weights (per output channel), float activations: smaller, near-lossless, not faster."""

    TYPE: ClassVar[str] = "quanto-int8-weight-only"
    BACKEND: ClassVar[str] = "optimum-quanto"
    SUMMARY: ClassVar[str] = "int8 weight-only on every Linear (optimum-quanto qint8)"


@dataclass(frozen=True)
class Int4WeightOnlyRecipe(Recipe):
    """int4 weights in groups, float activations: 4x smaller Linear weights, some accuracy cost.

    Backend is optimum-quanto qint4 (group size 128 by quanto's default) because torchao's
    int4 layouts need CUDA or extra kernels on CPU (see the module docstring).
    """

    TYPE: ClassVar[str] = "int4-weight-only"
    BACKEND: ClassVar[str] = "optimum-quanto"
    SUMMARY: ClassVar[str] = "int4 weight-only on every Linear (optimum-quanto qint4; torchao int4 has no CPU kernel)"


class QuantoModule(nn.Module):
    """Runs a quanto-quantized module outside ``torch.inference_mode``.

    quanto's packed int4 weights fail under inference mode ("Cannot set version_counter for
    inference tensor"), and ``WrappedModel.predict_proba`` runs in inference mode; this wrapper
    runs the inner module under ``no_grad`` instead, on plain copies of the inputs.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(False), torch.no_grad():
            out: torch.Tensor = self.inner(*(x.clone() for x in inputs))
        return out


def _quanto(module: nn.Module, recipe: Recipe, bits: int) -> QuantizationResult:
    from optimum.quanto import QLinear, freeze, qint4, qint8, quantize

    q = copy.deepcopy(module)
    linears = linear_names(q)
    targets = [n for n in linears if not excluded(n, recipe.exclude)]
    if isinstance(q, nn.Linear):
        if not targets:
            return QuantizationResult(q, recipe, [], [""])
        holder = nn.Sequential(q)
        quantize(holder, weights=qint8 if bits == 8 else qint4)
        freeze(holder)
        return QuantizationResult(QuantoModule(holder[0]), recipe, [""], [])
    quantize(q, weights=qint8 if bits == 8 else qint4, include=targets or ["__nothing__"])
    freeze(q)
    done = [n for n, m in q.named_modules() if isinstance(m, QLinear)]
    return QuantizationResult(QuantoModule(q), recipe, done, [n for n in linears if n not in done])


@register_handler(QuantoInt8Recipe)
def _quanto_int8(
    module: nn.Module, recipe: QuantoInt8Recipe, calibration: Calibration | None = None
) -> QuantizationResult:
    return _quanto(module, recipe, 8)


@register_handler(Int4WeightOnlyRecipe)
def _quanto_int4(
    module: nn.Module, recipe: Int4WeightOnlyRecipe, calibration: Calibration | None = None
) -> QuantizationResult:
    return _quanto(module, recipe, 4)
