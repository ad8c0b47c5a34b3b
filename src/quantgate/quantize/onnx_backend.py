"""ONNX export + ONNX Runtime int8: dynamic (optimum-onnx ``ORTQuantizer``) and static QDQ.

The candidate stays a torch ``nn.Module`` (:class:`OrtModule`) so ``WrappedModel``, the
evaluator and ``torch.save`` treat it like any other: it holds the quantized ONNX bytes and
opens an ``InferenceSession`` on first use (intra-op threads = ``torch.get_num_threads()``).

Linear layers are matched to graph nodes by the exporter's scope names
(``/encoder/encoder/layer.0/output/dense/MatMul`` belongs to module
``encoder.encoder.layer.0.output.dense``), which is how module-name exclusions become
``nodes_to_exclude`` and how the quantized / kept-in-float lists are counted from the
*quantized graph*, not from what was asked for.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from quantgate.errors import ConfigError, UnsupportedModel
from quantgate.quantize.base import (
    Calibration,
    QuantizationResult,
    Recipe,
    excluded,
    linear_names,
    register_handler,
)

OPSET = 17
_LINEAR_OPS = ("MatMul", "Gemm")
_QUANT_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class OrtModule(nn.Module):
    """An ONNX Runtime session behind ``forward(*tensors) -> tensor``; pickles as ONNX bytes."""

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
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
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
    with torch.inference_mode():
        ref = m(*example).float()
        got = check(*example)
    if ref.shape != got.shape or not torch.allclose(ref, got, atol=1e-3, rtol=1e-3):
        raise UnsupportedModel(
            f"the ONNX export of {type(module).__name__} does not reproduce torch's output "
            f"(max abs diff {float((ref - got).abs().max()) if ref.shape == got.shape else 'shape'})",
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


def linear_nodes(model: Any, linears: list[str]) -> dict[str, list[str]]:
    """Module name -> names of the MatMul/Gemm nodes the exporter emitted for it."""
    wanted = set(linears)
    out: dict[str, list[str]] = {n: [] for n in linears}
    for node in model.graph.node:
        if node.op_type in _LINEAR_OPS and _scope(node.name) in wanted:
            out[_scope(node.name)].append(node.name)
    return out


def quantized_linears(model: Any, linears: list[str]) -> list[str]:
    """Linears whose matmul runs on int8 in the quantized graph (QOperator or QDQ form)."""
    wanted = set(linears)
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    done: set[str] = set()
    for node in model.graph.node:
        scope = _scope(node.name)
        if scope not in wanted:
            continue
        if node.op_type in _QUANT_OPS:
            done.add(scope)
        elif node.op_type in _LINEAR_OPS and len(node.input) > 1 and node.input[1] in dq_outputs:
            done.add(scope)
    return [n for n in linears if n in done]


def quantized_nodes(model: Any, nodes: list[str]) -> list[str]:
    """For an ONNX source: the MatMul/Gemm nodes that now run on int8 (ORT names a dynamically
    quantized node ``<name>_quant``; in QDQ form the node keeps its name and reads a dequantized weight)."""
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    by_name = {n.name: n for n in model.graph.node}
    done = []
    for name in nodes:
        q = by_name.get(f"{name}_quant") or by_name.get(f"{name}_MatMul_quant")
        plain = by_name.get(name)
        if (q is not None and q.op_type in _QUANT_OPS) or (
            plain is not None and plain.op_type in _LINEAR_OPS and len(plain.input) > 1 and plain.input[1] in dq_outputs
        ):
            done.append(name)
    return done


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


def _graph_plan(
    recipe: OrtDynamicInt8Recipe | OrtStaticInt8Recipe, onnx_model: Any
) -> tuple[list[str], list[str], list[str]]:
    """For an ONNX source there are no torch modules: each MatMul/Gemm node is a unit, named by
    its node name, and ``exclude`` entries match node names (or their prefixes)."""
    nodes = [n for n in onnx_model.graph.node if n.op_type in _LINEAR_OPS]
    if not nodes:
        raise UnsupportedModel(
            "the ONNX model has no MatMul/Gemm node to quantize",
            f"ops present: {', '.join(sorted({n.op_type for n in onnx_model.graph.node}))}",
        )
    unnamed = [n for n in nodes if not n.name]
    if unnamed:
        raise UnsupportedModel(
            f"{len(unnamed)} MatMul/Gemm node(s) of the ONNX model have no name",
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


def _plan(
    module: nn.Module, recipe: OrtDynamicInt8Recipe | OrtStaticInt8Recipe, onnx_model: Any
) -> tuple[list[str], list[str], list[str]]:
    """(linears, nodes to quantize, nodes to exclude) from module-name and op-type exclusions."""
    if isinstance(module, OrtModule):
        return _graph_plan(recipe, onnx_model)
    linears = linear_names(module)
    if isinstance(module, nn.Linear):
        linears = [""]
    per_linear = linear_nodes(onnx_model, linears)
    missing = [n for n, nodes in per_linear.items() if not nodes]
    if missing and len(missing) == len(linears):
        raise UnsupportedModel(
            f"no MatMul/Gemm node in the exported graph maps to a Linear of {type(module).__name__}",
            "use a torch-eager recipe",
        )
    excluded_ops = set(recipe.exclude_op_types)
    op_of = {n.name: n.op_type for n in onnx_model.graph.node}
    to_quantize, to_exclude = [], []
    for name, nodes in per_linear.items():
        for node in nodes:
            # ORT's dynamic quantizer first rewrites Gemm into MatMul + Add named "<gemm>_MatMul"
            aliases = [node, f"{node}_MatMul"] if op_of[node] == "Gemm" else [node]
            if excluded(name, recipe.exclude) or op_of[node] in excluded_ops:
                to_exclude.extend(aliases)
            else:
                to_quantize.extend(aliases)
    return linears, to_quantize, to_exclude


def _result(
    module: nn.Module, recipe: Recipe, q_bytes: bytes, names: list[str], linears: list[str]
) -> QuantizationResult:
    import onnx

    qmodel = onnx.load_from_string(q_bytes)
    done = quantized_nodes(qmodel, linears) if isinstance(module, OrtModule) else quantized_linears(qmodel, linears)
    return QuantizationResult(OrtModule(q_bytes, names), recipe, done, [n for n in linears if n not in done])


# --- recipes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrtDynamicInt8Recipe(Recipe):
    """ONNX Runtime dynamic int8 (MatMulInteger, u8 activations / s8 weights, VNNI kernels)."""

    per_channel: bool = True
    exclude_op_types: tuple[str, ...] = ()
    TYPE: ClassVar[str] = "ort-dynamic-int8"
    BACKEND: ClassVar[str] = "onnxruntime (optimum-onnx ORTQuantizer)"
    SUMMARY: ClassVar[str] = "ONNX export + ONNX Runtime dynamic int8 on every Linear's MatMul/Gemm"


@dataclass(frozen=True)
class OrtStaticInt8Recipe(Recipe):
    """ONNX Runtime static int8 in QDQ form; activation ranges from the calibration batches."""

    calibration_method: str = "minmax"
    percentile: float = 99.999
    per_channel: bool = True
    exclude_op_types: tuple[str, ...] = ()
    TYPE: ClassVar[str] = "ort-static-int8"
    BACKEND: ClassVar[str] = "onnxruntime (quantize_static, QDQ)"
    SUMMARY: ClassVar[str] = "ONNX export + ONNX Runtime static int8 QDQ, calibrated (minmax/entropy/percentile)"

    def __post_init__(self) -> None:
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ConfigError(
                f"calibration_method {self.calibration_method!r} is not one of {', '.join(CALIBRATION_METHODS)}"
            )


@register_handler(OrtDynamicInt8Recipe)
def _ort_dynamic(
    module: nn.Module, recipe: OrtDynamicInt8Recipe, calibration: Calibration | None = None
) -> QuantizationResult:
    import onnx
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    data, names = _onnx_source(module, calibration, recipe)
    linears, to_quantize, to_exclude = _plan(module, recipe, onnx.load_from_string(data))
    if not to_quantize:
        return QuantizationResult(OrtModule(data, names), recipe, [], linears)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Path(tmp)
        (d / "model.onnx").write_bytes(data)
        quantizer = ORTQuantizer.from_pretrained(d, file_name="model.onnx")
        cfg = AutoQuantizationConfig.avx512_vnni(
            is_static=False,
            per_channel=recipe.per_channel,
            nodes_to_quantize=to_quantize,
            nodes_to_exclude=to_exclude,
            operators_to_quantize=list(_LINEAR_OPS),
        )
        _quiet(lambda: quantizer.quantize(save_dir=d / "q", quantization_config=cfg))
        q_bytes = (d / "q" / "model_quantized.onnx").read_bytes()
    return _result(module, recipe, q_bytes, names, linears)


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
    linears, to_quantize, to_exclude = _plan(module, recipe, onnx.load_from_string(data))
    if not to_quantize:
        return QuantizationResult(OrtModule(data, names), recipe, [], linears)
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
                op_types_to_quantize=list(_LINEAR_OPS),
                per_channel=recipe.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=to_quantize,
                nodes_to_exclude=to_exclude,
                calibrate_method=method,
                extra_options=extra,
            )
        )
        q_bytes = (d / "q.onnx").read_bytes()
    return _result(module, recipe, q_bytes, names, linears)


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
