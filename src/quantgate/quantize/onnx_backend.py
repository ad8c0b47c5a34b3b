"""ONNX export + ONNX Runtime: fp32 (export only), dynamic int8 (optimum-onnx ``ORTQuantizer``)
and static int8 QDQ.

The candidate stays a torch ``nn.Module`` (:class:`OrtModule`) so ``WrappedModel``, the
evaluator and ``torch.save`` treat it like any other: it holds the ONNX bytes and opens an
``InferenceSession`` on first use (intra-op threads = ``torch.get_num_threads()``).

Layers are matched to graph nodes by the exporter's scope names
(``/encoder/encoder/layer.0/output/dense/MatMul`` belongs to module
``encoder.encoder.layer.0.output.dense``): a Linear's MatMul/Gemm, a convolution's Conv, an
embedding's Gather. That is how module-name exclusions become ``nodes_to_exclude`` and how the
quantized / kept-in-float lists are counted from the *quantized graph*, not from what was asked
for. Coverage (parameters by layer kind) and bytes by element type are read from the graphs'
initializers as well, and a quantized weight that kept a float initializer is reported.

Each int8 recipe is built for a hardware ``target`` (:mod:`quantgate.hardware`): the dynamic
recipe takes optimum's ``AutoQuantizationConfig`` preset of that ISA (``reduce_range`` on
avx2/avx512 without VNNI), the static one ``reduce_range`` likewise; the resolved target and
the config go into ``QuantizationResult.hardware``.

Static int8 calls ``onnxruntime.quantization.quantize_static`` directly: optimum's
``ORTQuantizer.fit``/``quantize`` wrap the same function but want a ``datasets.Dataset``
of named features, while the calibration here is the model's own input batches.
"""

from __future__ import annotations

import copy
import io
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from quantgate.errors import ConfigError, UnsupportedModel
from quantgate.hardware import TARGETS, describe, resolve_target
from quantgate.quantize.base import (
    Calibration,
    QuantizationResult,
    Recipe,
    excluded,
    layer_kind,
    register_handler,
    weight_layers,
)

OPSET = 17
_LINEAR_OPS = ("MatMul", "Gemm")
_WEIGHT_OPS = ("MatMul", "Gemm", "Conv", "Gather")
_OPS_OF_KIND = {"Linear": ("MatMul", "Gemm"), "Conv1d": ("Conv",), "Conv2d": ("Conv",), "Embedding": ("Gather",)}
_QUANT_OPS = (
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "QLinearMatMul",
    "QGemm",
    "MatMulIntegerToFloat",
    "ConvInteger",
    "QLinearConv",
)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
_INT_TYPES = (2, 3)  # onnx TensorProto UINT8, INT8


class OrtModule(nn.Module):
    """An ONNX Runtime session behind ``forward(*tensors) -> tensor``; pickles as ONNX bytes.

    The bytes are pickled as a uint8 tensor: ``torch.save`` (pickle protocol 2) would otherwise
    write a ``bytes`` object as a latin-1 string, in which every byte >= 0x80 takes two bytes;
    that inflated an int8 MiniLM file from 60.5 MB of ONNX to 90.4 MB on disk.
    """

    def __init__(self, onnx_bytes: bytes, input_names: list[str]) -> None:
        super().__init__()
        self.onnx_bytes = onnx_bytes
        self.input_names = list(input_names)
        self._session: Any = None

    def session(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = max(1, torch.get_num_threads())
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._session = ort.InferenceSession(self.onnx_bytes, so, providers=["CPUExecutionProvider"])
        return self._session

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feeds = {name: _to_numpy(x) for name, x in zip(self.input_names, inputs, strict=True)}
        return torch.from_numpy(np.asarray(self.session().run(None, feeds)[0]))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None
        state["onnx_bytes"] = torch.frombuffer(bytearray(self.onnx_bytes), dtype=torch.uint8)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        data = state.get("onnx_bytes")
        if isinstance(data, torch.Tensor):  # older files hold plain bytes
            state = {**state, "onnx_bytes": data.numpy().tobytes()}
        super().__setstate__(state)
        self._session = None

    def __deepcopy__(self, memo: dict[int, Any]) -> OrtModule:
        return OrtModule(self.onnx_bytes, self.input_names)


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    a = x.detach().cpu()
    if a.is_floating_point() and a.dtype != torch.float32:
        a = a.float()
    return a.numpy()


# --- export and graph bookkeeping ----------------------------------------------------------


def export_onnx(module: nn.Module, example: tuple[torch.Tensor, ...]) -> tuple[bytes, list[str]]:
    """TorchScript-based export (the dynamo exporter needs onnxscript, not installed here).

    Batch is dynamic for every input, and every further axis of an integer input too (token
    ids and masks vary in length). Refuses a graph that does not reproduce torch's output.
    """
    names = [f"input_{i}" for i in range(len(example))]
    axes: dict[str, dict[int, str]] = {"output": {0: "batch"}}
    for name, x in zip(names, example, strict=True):
        axes[name] = {0: "batch"}
        if not x.is_floating_point():
            axes[name].update({d: f"{name}_d{d}" for d in range(1, x.dim())})
    buf = io.BytesIO()
    m = copy.deepcopy(module).float().eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                m,
                example,
                buf,
                dynamo=False,
                input_names=names,
                output_names=["output"],
                dynamic_axes=axes,  # type: ignore[arg-type]
                opset_version=OPSET,
            )
    except Exception as exc:  # the exporter raises many types; name the module either way
        raise UnsupportedModel(
            f"ONNX export of {type(module).__name__} failed: {type(exc).__name__}: {str(exc)[:300]}",
            "use a torch-eager recipe (dynamic-int8, int8-weight-only)",
        ) from exc
    data = buf.getvalue()
    check = OrtModule(data, names)
    # the export's batch must really be dynamic: a shape traced into the graph (an LSTM's initial
    # state, a reshape) answers at the example's batch and fails or differs at any other, so the
    # graph is checked at batch 1 and at twice the example's batch too
    rows = int(example[0].shape[0])
    for batch in dict.fromkeys((rows, 1, 2 * rows)):
        inputs = tuple(x.repeat(*(2 if d == 0 else 1 for d in range(x.dim())))[:batch] for x in example)
        with torch.inference_mode():
            ref = m(*inputs).float()
            try:
                got = check(*inputs)
            except Exception as exc:  # ONNX Runtime raises its own types; name the batch either way
                raise UnsupportedModel(
                    f"the ONNX export of {type(module).__name__} fails at batch {batch} (exported at batch "
                    f"{rows}): {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                    "a shape is fixed in the graph; use a torch-eager recipe (dynamic-int8)",
                ) from exc
        if ref.shape != got.shape:
            raise UnsupportedModel(
                f"the ONNX export of {type(module).__name__} answers shape {tuple(got.shape)} at batch {batch} "
                f"where torch answers {tuple(ref.shape)} (exported at batch {rows})",
                "a shape is fixed in the graph; use a torch-eager recipe (dynamic-int8)",
            )
        if not torch.allclose(ref, got, atol=1e-3, rtol=1e-3):
            raise UnsupportedModel(
                f"the ONNX export of {type(module).__name__} does not reproduce torch's output at batch {batch} "
                f"(max abs diff {float((ref - got).abs().max()):.3g})",
                "use a torch-eager recipe",
            )
    return data, names


def _scope(node_name: str) -> str:
    """The qualified module name of a node: ``/encoder/encoder/layer.0/output/dense/MatMul_quant``
    -> ``encoder.encoder.layer.0.output.dense``; ``/body/body.0/Gemm`` -> ``body.0``.

    The exporter names each scope either relative to its caller (``layer.0`` under
    ``encoder.encoder``) or by its full qualified name (``body.0`` under ``body``).
    """
    qualified = ""
    for part in node_name.rsplit("/", 1)[0].strip("/").split("/"):
        if qualified and part.startswith(qualified + "."):
            qualified = part
        else:
            qualified = f"{qualified}.{part}" if qualified else part
    return qualified


def _weight_input(node: Any) -> str | None:
    """The input that carries a weight-bearing node's weight (the table for Gather)."""
    if node.op_type == "Gather":
        return node.input[0] if node.input else None
    return node.input[1] if len(node.input) > 1 else None


def layer_nodes(model: Any, layers: dict[str, str]) -> dict[str, list[str]]:
    """Module name -> names of the graph nodes the exporter emitted for its weight op
    (MatMul/Gemm for a Linear, Conv for a convolution, Gather for an embedding).
    ``layers`` maps module name -> layer kind."""
    out: dict[str, list[str]] = {n: [] for n in layers}
    for node in model.graph.node:
        scope = _scope(node.name)
        if scope in layers and node.op_type in _OPS_OF_KIND.get(layers[scope], ()):
            out[scope].append(node.name)
    return out


def linear_nodes(model: Any, linears: list[str]) -> dict[str, list[str]]:
    """Module name -> names of the MatMul/Gemm nodes the exporter emitted for it."""
    return layer_nodes(model, dict.fromkeys(linears, "Linear"))


def _node_quantized(node: Any, dq_outputs: set[str], int_inits: set[str]) -> bool:
    """A node runs on int8 in QOperator form (an integer op), or reads a dequantized / integer weight."""
    if node.op_type in _QUANT_OPS:
        return True
    w = _weight_input(node) if node.op_type in _WEIGHT_OPS else None
    return w is not None and (w in dq_outputs or w in int_inits)


def _graph_sets(model: Any) -> tuple[set[str], set[str]]:
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    int_inits = {t.name for t in model.graph.initializer if t.data_type in _INT_TYPES}
    return dq_outputs, int_inits


def quantized_layers(model: Any, layers: list[str]) -> list[str]:
    """Layers whose weight op runs on int8 in the quantized graph (QOperator or QDQ form)."""
    wanted = set(layers)
    dq_outputs, int_inits = _graph_sets(model)
    done = {
        _scope(node.name)
        for node in model.graph.node
        if _scope(node.name) in wanted and _node_quantized(node, dq_outputs, int_inits)
    }
    return [n for n in layers if n in done]


quantized_linears = quantized_layers


def quantized_nodes(model: Any, nodes: list[str]) -> list[str]:
    """For an ONNX source: the weight nodes that now run on int8 (ORT names a dynamically
    quantized node ``<name>_quant``; in QDQ form the node keeps its name and reads a dequantized weight)."""
    dq_outputs, int_inits = _graph_sets(model)
    by_name = {n.name: n for n in model.graph.node}
    done = []
    for name in nodes:
        q = by_name.get(f"{name}_quant") or by_name.get(f"{name}_MatMul_quant")
        plain = by_name.get(name)
        if (q is not None and q.op_type in _QUANT_OPS) or (
            plain is not None and _node_quantized(plain, dq_outputs, int_inits)
        ):
            done.append(name)
    return done


# --- coverage and size, read from the graphs ---------------------------------------------------


def _float_inits(model: Any) -> dict[str, tuple[int, tuple[int, ...]]]:
    from onnx import TensorProto

    return {
        t.name: (int(np.prod(t.dims)) if t.dims else 1, tuple(t.dims))
        for t in model.graph.initializer
        if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)
    }


_RECURRENT_OPS = ("LSTM", "GRU", "RNN")


def initializer_kinds(model: Any) -> dict[str, str]:
    """Float initializer -> layer kind, from the op it feeds as a weight: MatMul/Gemm -> Linear,
    Conv -> Conv1d/Conv2d (by weight rank), LSTM/GRU/RNN (W, R) -> Recurrent, Gather -> Embedding;
    everything else -> other."""
    floats = _float_inits(model)
    kinds = dict.fromkeys(floats, "other")
    for node in model.graph.node:
        if node.op_type in _RECURRENT_OPS:  # inputs W and R: the input and recurrent weights
            for w in node.input[1:3]:
                if w in floats:
                    kinds[w] = "Recurrent"
            continue
        if node.op_type not in _WEIGHT_OPS:
            continue
        w = _weight_input(node)
        if w not in floats:
            continue
        if node.op_type == "Conv":
            kinds[w] = {3: "Conv1d", 4: "Conv2d"}.get(len(floats[w][1]), "other")
        else:
            kinds[w] = "Linear" if node.op_type in _LINEAR_OPS else "Embedding"
    return kinds


def _quantized_names(weight: str) -> tuple[str, ...]:
    # onnxruntime's names for a quantized copy of ``weight`` (Gemm weights are transposed first)
    return (f"{weight}_quantized", f"{weight}_Transposed_quantized")


def graph_coverage(source: Any, quantized: Any) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Parameters by layer kind of the float graph and how many are stored as int8/uint8 in
    the quantized one; plus the *float copies*: weights stored quantized that still have a float
    initializer of their own name (what would make an int8 file as large as its fp32 source)."""
    from quantgate.quantize.base import LAYER_KINDS

    sizes = _float_inits(source)
    kinds = initializer_kinds(source)
    q_ints = {t.name for t in quantized.graph.initializer if t.data_type in _INT_TYPES}
    q_floats = set(_float_inits(quantized))
    out = {k: {"params": 0, "quantized": 0} for k in LAYER_KINDS}
    copies = []
    for name, kind in kinds.items():
        n = sizes[name][0]
        out[kind]["params"] += n
        if kind != "other" and any(q in q_ints for q in _quantized_names(name)):
            out[kind]["quantized"] += n
            if name in q_floats:
                copies.append(name)
    return {k: v for k, v in out.items() if v["params"]}, copies


def size_by_kind(model: Any) -> dict[str, int]:
    """Bytes of the graph's initializers by element type (``int8``, ``uint8``, ``float32``, ...)."""
    from onnx import numpy_helper

    out: dict[str, int] = {}
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t)
        out[str(a.dtype)] = out.get(str(a.dtype), 0) + int(a.nbytes)
    return dict(sorted(out.items()))


def _example(calibration: Calibration | None, recipe: Recipe) -> tuple[torch.Tensor, ...]:
    if not calibration:
        raise ConfigError(
            f"recipe {recipe.TYPE} needs at least one input batch (calibration=...) to export the model",
            "pass calibration batches, e.g. model.batches(calibration_df, 32)",
        )
    return tuple(calibration[0])


def _onnx_source(module: nn.Module, calibration: Calibration | None, recipe: Recipe) -> tuple[bytes, list[str]]:
    """An ONNX source model (MLflow onnx flavor) is quantized as it is; a torch module is exported."""
    if isinstance(module, OrtModule):
        return module.onnx_bytes, module.input_names
    return export_onnx(module, _example(calibration, recipe))


def _graph_kinds(recipe: _OrtInt8, onnx_model: Any) -> dict[str, str]:
    """Node name -> kind for every weight node of an ONNX source the recipe may quantize."""
    floats = _float_inits(onnx_model)
    out: dict[str, str] = {}
    for n in onnx_model.graph.node:
        if n.op_type in _LINEAR_OPS:
            out[n.name] = "Linear"
        elif n.op_type == "Conv" and _weight_input(n) in floats:
            out[n.name] = "Conv"
        elif n.op_type == "Gather" and recipe.quantize_embeddings and _weight_input(n) in floats:
            out[n.name] = "Embedding"
    return out


def _graph_plan(recipe: _OrtInt8, onnx_model: Any) -> tuple[list[str], list[str], list[str]]:
    """For an ONNX source there are no torch modules: each weight node (MatMul/Gemm, Conv, and
    Gather when embeddings are quantized) is a unit, named by its node name, and ``exclude``
    entries match node names (or their prefixes)."""
    kinds = _graph_kinds(recipe, onnx_model)
    nodes = [n for n in onnx_model.graph.node if n.name in kinds or (not n.name and n.op_type in _LINEAR_OPS)]
    if not nodes:
        raise UnsupportedModel(
            "the ONNX model has no MatMul/Gemm/Conv node to quantize",
            f"ops present: {', '.join(sorted({n.op_type for n in onnx_model.graph.node}))}",
        )
    unnamed = [n for n in nodes if not n.name]
    if unnamed:
        raise UnsupportedModel(
            f"{len(unnamed)} weight node(s) of the ONNX model have no name",
            "name the graph's nodes so exclusions and the quantized/float record can refer to them",
        )
    excluded_ops = set(recipe.exclude_op_types)
    to_quantize, to_exclude = [], []
    for n in nodes:
        aliases = [n.name, f"{n.name}_MatMul"] if n.op_type == "Gemm" else [n.name]
        if excluded(n.name, recipe.exclude) or n.op_type in excluded_ops:
            to_exclude.extend(aliases)
        else:
            to_quantize.extend(aliases)
    return [n.name for n in nodes], to_quantize, to_exclude


def _kinds_of(recipe: Recipe) -> tuple[str, ...]:
    kinds: tuple[str, ...] = recipe.LAYER_KINDS
    if getattr(recipe, "quantize_embeddings", False):
        kinds = (*kinds, "Embedding")
    return kinds


def _plan(module: nn.Module, recipe: _OrtInt8, onnx_model: Any) -> tuple[list[str], list[str], list[str]]:
    """(layers, nodes to quantize, nodes to exclude) from module-name and op-type exclusions."""
    if isinstance(module, OrtModule):
        return _graph_plan(recipe, onnx_model)
    kinds = _kinds_of(recipe)
    layers = {n: layer_kind(m) for n, m in module.named_modules() if layer_kind(m) in kinds}
    if isinstance(module, nn.Linear):
        layers = {"": "Linear"}
    per_layer = layer_nodes(onnx_model, layers)
    if all(not nodes for nodes in per_layer.values()):
        raise UnsupportedModel(
            f"no weight node in the exported graph maps to a layer of {type(module).__name__}",
            "use a torch-eager recipe",
        )
    excluded_ops = set(recipe.exclude_op_types)
    op_of = {n.name: n.op_type for n in onnx_model.graph.node}
    to_quantize, to_exclude = [], []
    for name, nodes in per_layer.items():
        for node in nodes:
            # ORT's dynamic quantizer first rewrites Gemm into MatMul + Add named "<gemm>_MatMul"
            aliases = [node, f"{node}_MatMul"] if op_of[node] == "Gemm" else [node]
            if excluded(name, recipe.exclude) or op_of[node] in excluded_ops:
                to_exclude.extend(aliases)
            else:
                to_quantize.extend(aliases)
    return list(layers), to_quantize, to_exclude


def _result(
    module: nn.Module,
    recipe: Recipe,
    source_bytes: bytes,
    q_bytes: bytes,
    names: list[str],
    layers: list[str],
    hardware: dict[str, Any] | None = None,
) -> QuantizationResult:
    import onnx

    source = onnx.load_from_string(source_bytes)
    qmodel = source if q_bytes is source_bytes else onnx.load_from_string(q_bytes)
    done = quantized_nodes(qmodel, layers) if isinstance(module, OrtModule) else quantized_layers(qmodel, layers)
    coverage, copies = graph_coverage(source, qmodel)
    res = QuantizationResult(
        OrtModule(q_bytes, names),
        recipe,
        done,
        [n for n in layers if n not in done],
        coverage=coverage,
        hardware=dict(hardware or {}),
        size_by_kind=size_by_kind(qmodel),
    )
    if copies:
        res.notes.append(f"{len(copies)} quantized weight(s) also kept a float copy: {', '.join(copies[:5])}")
    res.hardware["float_copies"] = copies
    return res


# --- recipes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrtFp32Recipe(Recipe):
    """ONNX export only, fp32 weights and activations: the runtime's share of a speedup, lossless.

    Predictions match torch fp32 within float rounding (export is refused beyond 1e-3)."""

    TYPE: ClassVar[str] = "ort-fp32"
    BACKEND: ClassVar[str] = "onnxruntime (fp32)"
    SUMMARY: ClassVar[str] = "ONNX export, fp32 in ONNX Runtime: no precision change"
    LOSSLESS: ClassVar[bool] = True
    LAYER_KINDS: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True)
class _OrtInt8(Recipe):
    """Fields shared by the ORT int8 recipes."""

    per_channel: bool = True
    exclude_op_types: tuple[str, ...] = ()
    quantize_embeddings: bool = False
    target: str = "auto"
    LAYER_KINDS: ClassVar[tuple[str, ...]] = ("Linear", "Conv1d", "Conv2d")

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"target {self.target!r} is not one of {', '.join(TARGETS)}")

    def operators(self) -> list[str]:
        return [*_LINEAR_OPS, "Conv", *(["Gather"] if self.quantize_embeddings else [])]


@dataclass(frozen=True)
class OrtDynamicInt8Recipe(_OrtInt8):
    """ONNX Runtime dynamic int8 (MatMulInteger / ConvInteger; optionally embeddings), with the
    quantization config of the target ISA (optimum ``AutoQuantizationConfig``).

    ConvInteger runs, but slowly: on the digits CNN at batch 32 (2 threads, AVX512-VNNI host)
    it took 22-37 ms where ORT fp32 took 1.3-3.1 ms and static QDQ 0.7 ms. The search tries
    ``ort-static-int8`` first for conv-heavy models and measures every trial; set
    ``exclude_op_types=("Conv",)`` to keep convolutions float in this recipe."""

    TYPE: ClassVar[str] = "ort-dynamic-int8"
    BACKEND: ClassVar[str] = "onnxruntime (optimum-onnx ORTQuantizer)"
    SUMMARY: ClassVar[str] = "ONNX export + ONNX Runtime dynamic int8 on every Linear (MatMul/Gemm) and Conv"


@dataclass(frozen=True)
class OrtStaticInt8Recipe(_OrtInt8):
    """ONNX Runtime static int8 in QDQ form; activation ranges from the calibration batches."""

    calibration_method: str = "minmax"
    percentile: float = 99.999
    TYPE: ClassVar[str] = "ort-static-int8"
    BACKEND: ClassVar[str] = "onnxruntime (quantize_static, QDQ)"
    SUMMARY: ClassVar[str] = "ONNX export + ONNX Runtime static int8 QDQ on Linear and Conv, calibrated"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ConfigError(
                f"calibration_method {self.calibration_method!r} is not one of {', '.join(CALIBRATION_METHODS)}"
            )


def dynamic_config(recipe: OrtDynamicInt8Recipe, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """optimum's ``AutoQuantizationConfig`` for the recipe's target, and its record.

    avx2 and avx512 (no VNNI) use ``reduce_range`` (7-bit weights, so the u8 x s8 kernels
    cannot saturate); avx512_vnni and arm64 use their presets as they are."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    target = resolve_target(recipe.target)
    common: dict[str, Any] = {"is_static": False, "per_channel": recipe.per_channel, **kwargs}
    if target == "avx2":
        cfg = AutoQuantizationConfig.avx2(reduce_range=True, **common)
    elif target == "avx512":
        cfg = AutoQuantizationConfig.avx512(reduce_range=True, **common)
    elif target == "arm64":
        cfg = AutoQuantizationConfig.arm64(**common)
    else:
        cfg = AutoQuantizationConfig.avx512_vnni(**common)
    record = {
        "preset": f"AutoQuantizationConfig.{target}",
        "format": cfg.format.name,
        "activations": cfg.activations_dtype.name,
        "weights": cfg.weights_dtype.name,
        "reduce_range": bool(cfg.reduce_range),
        "per_channel": bool(cfg.per_channel),
        "operators": list(cfg.operators_to_quantize),
    }
    return cfg, record


def static_config(recipe: OrtStaticInt8Recipe) -> dict[str, Any]:
    """The ``quantize_static`` settings for the recipe's target (u8 activations, s8 weights,
    ``reduce_range`` where there is no VNNI), as recorded with the candidate."""
    target = resolve_target(recipe.target)
    return {
        "preset": f"quantize_static.{target}",
        "format": "QDQ",
        "activations": "QUInt8",
        "weights": "QInt8",
        "reduce_range": target in ("avx2", "avx512"),
        "per_channel": recipe.per_channel,
        "operators": recipe.operators(),
        "calibration_method": recipe.calibration_method,
    }


def _hardware(recipe: _OrtInt8, config: dict[str, Any]) -> dict[str, Any]:
    return {**describe(recipe.target), "ort_config": config}


@register_handler(OrtFp32Recipe)
def _ort_fp32(module: nn.Module, recipe: OrtFp32Recipe, calibration: Calibration | None = None) -> QuantizationResult:
    data, names = _onnx_source(module, calibration, recipe)
    if isinstance(module, OrtModule):
        import onnx

        layers = list(_graph_kinds(OrtDynamicInt8Recipe(), onnx.load_from_string(data)))
    else:
        layers = weight_layers(module, ("Linear", "Conv1d", "Conv2d"))
    res = _result(module, recipe, data, data, names, layers)  # apply_recipe records target "any" + host
    res.notes.append("runtime change only (ONNX Runtime fp32): no parameter is quantized")
    return res


@register_handler(OrtDynamicInt8Recipe)
def _ort_dynamic(
    module: nn.Module, recipe: OrtDynamicInt8Recipe, calibration: Calibration | None = None
) -> QuantizationResult:
    import onnx
    from optimum.onnxruntime import ORTQuantizer

    data, names = _onnx_source(module, calibration, recipe)
    layers, to_quantize, to_exclude = _plan(module, recipe, onnx.load_from_string(data))
    cfg, record = dynamic_config(
        recipe, nodes_to_quantize=to_quantize, nodes_to_exclude=to_exclude, operators_to_quantize=recipe.operators()
    )
    resolved = replace(recipe, target=resolve_target(recipe.target))
    if not to_quantize:
        res = QuantizationResult(OrtModule(data, names), recipe, [], layers)
        res.resolved = resolved
        return res
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Path(tmp)
        (d / "model.onnx").write_bytes(data)
        quantizer = _quiet(lambda: ORTQuantizer.from_pretrained(d, file_name="model.onnx"))
        _quiet(lambda: quantizer.quantize(save_dir=d / "q", quantization_config=cfg))
        q_bytes = (d / "q" / "model_quantized.onnx").read_bytes()
    res = _result(module, recipe, data, q_bytes, names, layers, _hardware(recipe, record))
    res.resolved = resolved
    return res


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over the calibration batches."""

    def __init__(self, names: list[str], batches: Calibration) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(
            [{n: _to_numpy(x) for n, x in zip(names, b, strict=True)} for b in batches]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


@register_handler(OrtStaticInt8Recipe)
def _ort_static(
    module: nn.Module, recipe: OrtStaticInt8Recipe, calibration: Calibration | None = None
) -> QuantizationResult:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    _example(calibration, recipe)
    assert calibration is not None
    data, names = _onnx_source(module, calibration, recipe)
    layers, to_quantize, to_exclude = _plan(module, recipe, onnx.load_from_string(data))
    resolved = replace(recipe, target=resolve_target(recipe.target))
    if not to_quantize:
        res = QuantizationResult(OrtModule(data, names), recipe, [], layers)
        res.resolved = resolved
        return res
    record = static_config(recipe)
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[recipe.calibration_method]
    extra: dict[str, Any] = {"CalibMovingAverage": False}
    if recipe.calibration_method == "percentile":
        extra["CalibPercentile"] = recipe.percentile
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Path(tmp)
        (d / "model.onnx").write_bytes(data)
        _quiet(
            lambda: quantize_static(
                str(d / "model.onnx"),
                str(d / "q.onnx"),
                _Reader(names, calibration),  # type: ignore[arg-type]
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=recipe.operators(),
                per_channel=recipe.per_channel,
                reduce_range=record["reduce_range"],
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=to_quantize,
                nodes_to_exclude=to_exclude,
                calibrate_method=method,
                extra_options=extra,
            )
        )
        q_bytes = (d / "q.onnx").read_bytes()
    res = _result(module, recipe, data, q_bytes, names, layers, _hardware(recipe, record))
    res.resolved = resolved
    return res


def _quiet(fn: Any) -> Any:
    """optimum and onnxruntime log at INFO/WARNING through logging; keep the CLI's output clean."""
    import logging

    names = ("optimum", "optimum.onnxruntime.quantization", "onnxruntime", "root")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        return fn()
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)
