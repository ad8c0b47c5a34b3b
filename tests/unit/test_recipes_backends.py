"""The backend recipes (fp16/bf16, quanto, ONNX Runtime): spec fields through JSON, validation,
exclusions and honest counts on a tiny MLP, and the ONNX module's pickling."""

from __future__ import annotations

import io
import json
import pickle

import pytest
import torch
from torch import nn

from quantgate.errors import ConfigError, UnsupportedModel
from quantgate.models.tabular import TabularMLP
from quantgate.quantize.float_backend import Bf16Recipe, CastLinear, Fp16Recipe, cpu_supports
from quantgate.quantize.onnx_backend import OrtDynamicInt8Recipe, OrtModule, OrtStaticInt8Recipe, _scope
from quantgate.quantize.quanto_backend import Int4WeightOnlyRecipe, QuantoInt8Recipe
from quantgate.quantize.recipes import apply_recipe, list_recipes, recipe_from_dict, recipe_to_dict

LINEARS = ["body.0", "body.2", "head"]


@pytest.fixture()
def mlp() -> TabularMLP:
    torch.manual_seed(0)
    return TabularMLP(16).eval()


def _calib() -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(32, 16, generator=g),) for _ in range(4)]


def test_all_backends_registered() -> None:
    types = {s.TYPE for s in list_recipes()}
    assert types >= {
        "fp16",
        "bf16",
        "quanto-int8-weight-only",
        "int4-weight-only",
        "ort-dynamic-int8",
        "ort-static-int8",
    }


def test_static_fields_round_trip_through_json() -> None:
    r = OrtStaticInt8Recipe(
        calibration_method="percentile", percentile=99.9, exclude=("head",), exclude_op_types=("Gemm",)
    )
    back = recipe_from_dict(json.loads(json.dumps(recipe_to_dict(r))))
    assert back == r and isinstance(back.exclude_op_types, tuple) and back.digest == r.digest


def test_unknown_calibration_method_rejected() -> None:
    with pytest.raises(ConfigError, match="calibration_method"):
        OrtStaticInt8Recipe(calibration_method="kl")
    d = recipe_to_dict(OrtStaticInt8Recipe())
    d["_data"]["calibration_method"] = "kl"
    with pytest.raises(ConfigError, match="calibration_method"):
        recipe_from_dict(d)


def test_type_outside_allow_list_rejected() -> None:
    with pytest.raises(ConfigError, match="allow-list"):
        recipe_from_dict({"_type": "ort-dynamic-int4", "_version": 1, "_data": {}})


@pytest.mark.parametrize("spec", [Fp16Recipe, Bf16Recipe, QuantoInt8Recipe, Int4WeightOnlyRecipe])
def test_torch_backends_count_and_exclude(spec: type, mlp: TabularMLP) -> None:
    x = torch.randn(8, 16)
    res = apply_recipe(mlp, spec(exclude=("head",)))
    assert sorted(res.quantized) == ["body.0", "body.2"] and res.kept_float == ["head"]
    with torch.inference_mode():
        out = res.module(x)
    assert out.dtype == torch.float32 and out.shape == (8, 2)
    assert torch.allclose(out, mlp(x), atol=0.1)
    buf = io.BytesIO()
    torch.save(res.module, buf)
    buf.seek(0)
    with torch.inference_mode():
        assert torch.equal(torch.load(buf, weights_only=False)(x), out)


def test_cast_linear_keeps_float32_at_the_boundary() -> None:
    lin = CastLinear(nn.Linear(4, 2), torch.bfloat16)
    assert lin.linear.weight.dtype == torch.bfloat16
    assert lin(torch.randn(3, 4)).dtype == torch.float32
    assert cpu_supports(torch.bfloat16)[0]


@pytest.mark.parametrize(
    "recipe",
    [
        OrtDynamicInt8Recipe(),
        OrtDynamicInt8Recipe(per_channel=False, exclude=("body.0",)),
        OrtStaticInt8Recipe(),
        OrtStaticInt8Recipe(calibration_method="entropy", exclude=("head",)),
        OrtStaticInt8Recipe(calibration_method="percentile"),
    ],
    ids=lambda r: r.label + getattr(r, "calibration_method", ""),
)
def test_ort_recipes_count_from_the_quantized_graph(recipe: object, mlp: TabularMLP) -> None:
    res = apply_recipe(mlp, recipe, _calib())  # type: ignore[arg-type]
    excluded = list(recipe.exclude)  # type: ignore[attr-defined]
    assert sorted(res.kept_float) == excluded
    assert sorted(res.quantized) == [n for n in LINEARS if n not in excluded]
    assert isinstance(res.module, OrtModule)
    x = torch.randn(5, 16)
    with torch.inference_mode():
        assert torch.allclose(res.module(x), mlp(x), atol=0.1)


def test_ort_needs_an_example_batch(mlp: TabularMLP) -> None:
    with pytest.raises(ConfigError, match="needs at least one input batch"):
        apply_recipe(mlp, OrtDynamicInt8Recipe())


def test_ort_op_type_exclusion_that_leaves_nothing_is_unsupported(mlp: TabularMLP) -> None:
    with pytest.raises(UnsupportedModel, match="quantized nothing"):
        apply_recipe(mlp, OrtDynamicInt8Recipe(exclude_op_types=("Gemm",)), _calib())


class _NotExportable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(self.lin(x)).real


def test_export_failure_names_the_module() -> None:
    with pytest.raises(UnsupportedModel, match="_NotExportable"):
        apply_recipe(_NotExportable(), OrtDynamicInt8Recipe(), [(torch.randn(2, 8),)])


def test_ort_module_pickles_without_its_session(mlp: TabularMLP) -> None:
    res = apply_recipe(mlp, OrtDynamicInt8Recipe(), _calib())
    x = torch.randn(3, 16)
    y = res.module(x)
    assert res.module._session is not None
    state = res.module.__getstate__()
    assert state["_session"] is None
    back = pickle.loads(pickle.dumps(res.module))
    assert back._session is None and torch.equal(back(x), y)


def test_scope_maps_nodes_to_module_names() -> None:
    assert _scope("/encoder/encoder/layer.0/output/dense/MatMul") == "encoder.encoder.layer.0.output.dense"
    assert _scope("/body/body.0/Gemm") == "body.0"
    assert _scope("/head/Gemm_MatMul_quant") == "head"
