"""Static int8 in torch eager (x86 / qnnpack kernels) through FX graph mode: Conv1d/Conv2d and
Linear, with activation ranges calibrated on the calibration batches.

``torch.ao.quantization`` is deprecated, but its FX path is what still runs int8 convolutions
on CPU kernels in torch 2.13 (torchao's PT2E path emits quantize/dequantize pairs around float
ops, which only pay off under ``torch.compile``). Measured on this host (AVX512-VNNI, 2
threads), a 3-conv digits CNN at batch 32: fp32 5.9 ms, FX x86 int8 2.4 ms.

A converted module does not survive ``torch.save`` whole: torch's quantized conv modules
unpickle without ``nn.Module`` state ("'ConvReLU2d' object has no attribute '_modules'" in a
fresh process). :class:`FxStaticModule` therefore pickles the float module's *structure* (every
parameter replaced by a one-element zero tensor expanded to its shape, a few bytes), the
example input shape and the converted module's state dict (int8 weights, scales, zero points),
and on load re-runs prepare/convert on the skeleton and loads that state dict.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from quantgate.quantize.base import Calibration, QuantizationResult, Recipe, excluded, register_handler, weight_layers


@dataclass(frozen=True)
class TorchStaticInt8Recipe(Recipe):
    """Static int8 (weights per channel, activations calibrated) on Conv and Linear, torch x86."""

    target: str = "auto"
    TYPE: ClassVar[str] = "torch-static-int8"
    BACKEND: ClassVar[str] = "torch.ao FX (x86 / qnnpack)"
    SUMMARY: ClassVar[str] = "static int8 on every Conv1d/Conv2d/Linear (FX graph mode, calibrated)"
    LAYER_KINDS: ClassVar[tuple[str, ...]] = ("Linear", "Conv1d", "Conv2d")

    def __post_init__(self) -> None:
        from quantgate.errors import ConfigError
        from quantgate.hardware import TARGETS

        if self.target not in TARGETS:
            raise ConfigError(f"target {self.target!r} is not one of {', '.join(TARGETS)}")


def _convert(float_module: nn.Module, engine: str, exclude: tuple[str, ...], batches: Calibration) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from quantgate.quantize.torch_backend import quantized_engine

    mapping = get_default_qconfig_mapping(engine)
    for name in exclude:
        mapping = mapping.set_module_name(name, None)
    with quantized_engine(engine), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(float_module).eval(), mapping, tuple(batches[0]))
        with torch.inference_mode(False), torch.no_grad():
            for b in batches:
                prepared(*b)
        return convert_fx(prepared)


def _skeleton(module: nn.Module) -> nn.Module:
    """The module's structure with each float parameter a one-element zero tensor expanded to
    its shape (``torch.save`` stores one element per parameter)."""
    sk = copy.deepcopy(module)
    for mod in sk.modules():
        for name, p in list(mod.named_parameters(recurse=False)):
            zero = torch.zeros((), dtype=p.dtype).expand(p.shape)
            mod._parameters[name] = nn.Parameter(zero, requires_grad=False)
    return sk


class FxStaticModule(nn.Module):
    """An FX-converted static int8 module that round-trips through ``torch.save``."""

    def __init__(self, inner: nn.Module, skeleton: nn.Module, engine: str, exclude: tuple[str, ...], example: Any):
        super().__init__()
        self.inner = inner
        self._rebuild = (skeleton, engine, exclude, example)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(*inputs)
        return out

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        skeleton, engine, exclude, example = self._rebuild
        buf = io.BytesIO()
        torch.save(self.inner.state_dict(), buf)
        return (_rebuild_fx, (skeleton, engine, exclude, example, buf.getvalue()))


def _rebuild_fx(skeleton: nn.Module, engine: str, exclude: tuple[str, ...], example: Any, state: bytes) -> nn.Module:
    batch = tuple(torch.zeros(shape, dtype=dtype) for shape, dtype in example)
    inner = _convert(skeleton, engine, exclude, [batch])
    inner.load_state_dict(torch.load(io.BytesIO(state), weights_only=True))  # tensors only: no code
    return FxStaticModule(inner, skeleton, engine, exclude, example)


@register_handler(TorchStaticInt8Recipe)
def _torch_static(
    module: nn.Module, recipe: TorchStaticInt8Recipe, calibration: Calibration | None = None
) -> QuantizationResult:
    from dataclasses import replace

    from quantgate.errors import ConfigError, UnsupportedModel
    from quantgate.hardware import describe, resolve_target, torch_engine

    if not calibration:
        raise ConfigError(
            f"recipe {recipe.TYPE} needs calibration batches", "pass calibration batches (model.batches(df, 32))"
        )
    engine = torch_engine(recipe.target)
    layers = weight_layers(module, recipe.LAYER_KINDS)
    try:
        q = _convert(module, engine, recipe.exclude, calibration)
    except Exception as exc:  # FX tracing fails on data-dependent control flow: name it
        raise UnsupportedModel(
            f"FX static quantization of {type(module).__name__} failed: {type(exc).__name__}: {str(exc)[:300]}",
            "use ort-static-int8 or dynamic-int8",
        ) from exc
    qtypes = (torch.ao.nn.quantized.Conv1d, torch.ao.nn.quantized.Conv2d, torch.ao.nn.quantized.Linear)
    done_mods = {n for n, m in q.named_modules() if isinstance(m, qtypes)}
    done = [n for n in layers if n in done_mods and not excluded(n, recipe.exclude)]
    example = [(tuple(x.shape), x.dtype) for x in calibration[0]]
    wrapped = FxStaticModule(q, _skeleton(module), engine, recipe.exclude, example)
    res = QuantizationResult(wrapped, recipe, done, [n for n in layers if n not in done])
    res.resolved = replace(recipe, target=resolve_target(recipe.target))
    res.hardware = {**describe(recipe.target), "engine": engine}
    return res
