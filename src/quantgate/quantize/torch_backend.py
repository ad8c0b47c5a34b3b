"""Torch-eager int8 recipes: dynamic int8 (x86/fbgemm kernels) and torchao int8 weight-only."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from torch import Tensor, nn

from quantgate.quantize.base import (
    Calibration,
    QuantizationResult,
    Recipe,
    excluded,
    linear_names,
    register_handler,
    weight_layers,
)


@dataclass(frozen=True)
class DynamicInt8Recipe(Recipe):
    """int8 weights (per-channel) with activations quantized on the fly, on every nn.Linear, and
    on every nn.LSTM / nn.GRU (per-tensor: torch's dynamic recurrent kernels).

    Backend: PyTorch's x86 (fbgemm) dynamic-quantized Linear kernels. torchao's
    ``Int8DynamicActivationInt8WeightConfig`` is the maintained API, but in eager mode on this
    CPU it ran *slower* than fp32 (0.87x on MiniLM, batch 32 x seq 128) while the fbgemm
    kernels ran 2.2x faster, so the speed-oriented recipe uses fbgemm until torchao's CPU
    path (which needs torch.compile) is measured to win.
    """

    per_channel: bool = True
    target: str = "auto"
    TYPE: ClassVar[str] = "dynamic-int8"
    BACKEND: ClassVar[str] = "torch-fbgemm"
    SUMMARY: ClassVar[str] = (
        "int8 weights per channel + dynamic int8 activations on every Linear (and LSTM/GRU, per tensor)"
    )
    LAYER_KINDS: ClassVar[tuple[str, ...]] = ("Linear", "Recurrent")

    def __post_init__(self) -> None:
        from quantgate.errors import ConfigError
        from quantgate.hardware import TARGETS

        if self.target not in TARGETS:
            raise ConfigError(f"target {self.target!r} is not one of {', '.join(TARGETS)}")


@dataclass(frozen=True)
class Int8WeightOnlyRecipe(Recipe):
    """int8 weights, float activations (torchao): smaller, near-lossless, not faster on CPU."""

    TYPE: ClassVar[str] = "int8-weight-only"
    BACKEND: ClassVar[str] = "torchao"
    SUMMARY: ClassVar[str] = "int8 weight-only on every Linear (torchao)"


@contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    """Run with torch's quantized engine set to ``engine`` (weights are packed for it)."""
    import torch

    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


@register_handler(DynamicInt8Recipe)
def _dynamic_int8(
    module: nn.Module, recipe: DynamicInt8Recipe, calibration: Calibration | None = None
) -> QuantizationResult:
    from quantgate.hardware import describe, resolve_target, torch_engine

    engine = torch_engine(recipe.target)
    with quantized_engine(engine):
        res = _dynamic_int8_on(module, recipe)
    res.resolved = replace(recipe, target=resolve_target(recipe.target))
    res.hardware = {**describe(recipe.target), "engine": engine}
    return res


def _dynamic_int8_on(module: nn.Module, recipe: DynamicInt8Recipe) -> QuantizationResult:
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    linears = linear_names(module)
    recurrent = weight_layers(module, ("Recurrent",))
    targets = [n for n in linears if not excluded(n, recipe.exclude)]
    rnn_targets = [n for n in recurrent if n and not excluded(n, recipe.exclude)]
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
        # LSTM/GRU weights take torch's per-tensor dynamic qconfig (its dynamic LSTM/GRU kernels)
        spec = {n: qconfig for n in targets} | {n: default_dynamic_qconfig for n in rnn_targets}
        q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(module), spec, dtype=torch.qint8)
    dyn = torch.ao.nn.quantized.dynamic
    done = [n for n, m in q.named_modules() if isinstance(m, dyn.Linear | dyn.LSTM | dyn.GRU)]
    layers = [*linears, *(n for n in recurrent if n)]
    return QuantizationResult(q, recipe, done, [n for n in layers if n not in done])


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
    linears = linear_names(q)
    targets = {n for n in linears if not excluded(n, recipe.exclude)}
    quantize_(q, Int8WeightOnlyConfig(), filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn in targets)
    done = [
        n
        for n, m in q.named_modules()
        if isinstance(m, nn.Linear) and type(m.weight).__name__ != "Parameter" and type(m.weight).__name__ != "Tensor"
    ]
    return QuantizationResult(TorchaoModule(q), recipe, done, [n for n in linears if n not in done])
