"""What every recipe shares: the spec base class, the result, the handler registry and the layer
helpers. It imports no backend, so backends import it and :mod:`quantgate.quantize.recipes`
imports the backends: the dependency points one way (base <- backends <- recipes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

LAYER_KINDS = ("Linear", "Conv1d", "Conv2d", "Recurrent", "Embedding", "other")
"""The layer kinds coverage is reported by; "other" holds every remaining parameter (biases,
norms, position tables of unusual layers, ...)."""
COMPUTE_KINDS = ("Linear", "Conv1d", "Conv2d", "Recurrent")
"""Kinds whose weights are multiplied (where int8 saves time); an embedding is a lookup: its
quantization saves bytes, not time. ``Recurrent`` is ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``, whose
weights are ``weight_ih_l*`` / ``weight_hh_l*``."""


@dataclass(frozen=True)
class Recipe:
    """Base spec: every recipe can keep modules in float by (dotted) name prefix."""

    exclude: tuple[str, ...] = ()
    TYPE: ClassVar[str] = "recipe"
    VERSION: ClassVar[int] = 1
    BACKEND: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""
    LOSSLESS: ClassVar[bool] = False
    """True for a recipe that changes the runtime, not the precision (``ort-fp32``): it may
    legitimately quantize nothing."""
    LAYER_KINDS: ClassVar[tuple[str, ...]] = ("Linear",)
    """Which layer kinds the recipe can quantize (what the search uses to prefer recipes that
    cover the model's heaviest layers)."""

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(json.dumps(recipe_to_dict(self), sort_keys=True).encode()).hexdigest()

    @property
    def label(self) -> str:
        return self.TYPE + (f"(exclude={len(self.exclude)})" if self.exclude else "")


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(recipe).items()}
    return {"_type": recipe.TYPE, "_version": recipe.VERSION, "_data": data}


@dataclass
class QuantizationResult:
    """A quantized copy of a module and an honest record of what was quantized.

    ``quantized`` / ``kept_float``: module (or, for an ONNX source, node) names.
    ``coverage``: per layer kind (:data:`LAYER_KINDS`), ``{"params": n, "quantized": q}``
    counted in parameters (weight elements; biases and norms are under "other").
    ``hardware``: the requested and resolved target ISA, the host it was built on, and the
    backend configuration that target selected (ORT quantization config, torch engine).
    ``resolved``: the recipe as built (``target="auto"`` replaced by the resolved ISA); its
    JSON (:attr:`recipe_json`) is what provenance and the card should record.
    ``size_by_kind``: bytes of the stored weights by element type (``int8``, ``float32``, ...).
    ``notes``: what the backend could not do, in words for the card.
    """

    module: nn.Module
    recipe: Recipe
    quantized: list[str] = field(default_factory=list)
    kept_float: list[str] = field(default_factory=list)
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)
    resolved: Recipe | None = None
    size_by_kind: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_quantized(self) -> int:
        return len(self.quantized)

    @property
    def quantized_param_share(self) -> float:
        """Share (0..1) of all parameters stored quantized; NaN when coverage is unknown."""
        total = sum(v["params"] for v in self.coverage.values())
        return sum(v["quantized"] for v in self.coverage.values()) / total if total else float("nan")

    @property
    def compute_param_share(self) -> float:
        """Share (0..1) of the matmul/conv weights (:data:`COMPUTE_KINDS`) stored quantized: what
        a latency-oriented search should weigh; NaN when the model has none."""
        cov = [v for k, v in self.coverage.items() if k in COMPUTE_KINDS]
        total = sum(v["params"] for v in cov)
        return sum(v["quantized"] for v in cov) / total if total else float("nan")

    @property
    def recipe_json(self) -> dict[str, Any]:
        return recipe_to_dict(self.resolved or self.recipe)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record for the model card and provenance."""
        return {
            "recipe": self.recipe_json,
            "quantized": list(self.quantized),
            "kept_float": list(self.kept_float),
            "coverage": self.coverage,
            "quantized_param_share": self.quantized_param_share,
            "compute_param_share": self.compute_param_share,
            "hardware": self.hardware,
            "size_by_kind": self.size_by_kind,
            "notes": list(self.notes),
        }


Calibration = list[tuple[Tensor, ...]]
"""Batches of model inputs (what ``WrappedModel.batches`` yields): export examples and calibration."""

Handler = Callable[[nn.Module, Any, Calibration | None], QuantizationResult]
REGISTRY: dict[str, tuple[type[Recipe], Handler]] = {}


def register_handler(spec: type[Recipe]) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        REGISTRY[spec.TYPE] = (spec, fn)
        return fn

    return deco


# --- layers ----------------------------------------------------------------------------------


def excluded(name: str, exclude: tuple[str, ...]) -> bool:
    return any(name == e or name.startswith(e + ".") for e in exclude)


def linear_names(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def layer_kind(module: nn.Module) -> str:
    """The coverage kind of a module (``other`` for anything without a quantizable weight)."""
    if isinstance(module, nn.Linear):
        return "Linear"
    if isinstance(module, nn.Conv1d):
        return "Conv1d"
    if isinstance(module, nn.Conv2d):
        return "Conv2d"
    if isinstance(module, nn.LSTM | nn.GRU | nn.RNN):
        return "Recurrent"
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        return "Embedding"
    return "other"


def is_layer_weight(kind: str, param_name: str) -> bool:
    """Whether a module's own parameter is the weight its kind is counted by (a recurrent layer
    has several: ``weight_ih_l0``, ``weight_hh_l0``, ...; biases and norms are "other")."""
    return param_name.startswith("weight_") if kind == "Recurrent" else param_name == "weight"


def weight_layers(module: nn.Module, kinds: tuple[str, ...] = ("Linear",)) -> list[str]:
    """Names of the modules of the given kinds, in module order."""
    return [n for n, m in module.named_modules() if layer_kind(m) in kinds]


def module_coverage(module: nn.Module, quantized: list[str] | set[str]) -> dict[str, dict[str, int]]:
    """Parameters by layer kind of a (float) torch module, and how many of them ``quantized``
    (module names) holds: a layer's weight counts under its kind, every other parameter
    (biases, norms) under ``other``; shared parameters are counted once."""
    done = set(quantized)
    out = {k: {"params": 0, "quantized": 0} for k in LAYER_KINDS}
    seen: set[int] = set()
    for name, mod in module.named_modules():
        kind = layer_kind(mod)
        for p_name, p in mod.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            k = kind if is_layer_weight(kind, p_name) else "other"
            out[k]["params"] += p.numel()
            if k != "other" and name in done:
                out[k]["quantized"] += p.numel()
    return {k: v for k, v in out.items() if v["params"]}


def heaviest_kind(module: nn.Module, kinds: tuple[str, ...] = LAYER_KINDS[:-1]) -> str:
    """The weight-layer kind (among ``kinds``) holding the most parameters (``other`` when none)."""
    cov = {k: v for k, v in module_coverage(module, ()).items() if k in kinds}
    return max(cov, key=lambda k: cov[k]["params"]) if cov else "other"


def pickled_size(module: nn.Module) -> int:
    """Bytes of ``torch.save(module)``: the size a candidate's module file will have."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(module, buf)
    return buf.tell()
