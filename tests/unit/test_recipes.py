"""Recipes: the JSON envelope (round trip, allow-list, versions, fields), digests, and applying
the registered recipes to a tiny torch MLP."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError

import pytest
import torch
from torch import nn

from quantgate.errors import ConfigError, UnsupportedModel
from quantgate.models.tabular import TabularMLP
from quantgate.quantize.recipes import (
    DynamicInt8Recipe,
    Int8WeightOnlyRecipe,
    Recipe,
    apply_recipe,
    get_recipe,
    list_recipes,
    recipe_from_dict,
    recipe_to_dict,
)

RECIPES = list_recipes()
LINEARS = ["body.0", "body.2", "head"]


def test_registry_lists_both_recipes() -> None:
    assert {spec.TYPE for spec in RECIPES} >= {"dynamic-int8", "int8-weight-only"}
    for spec in RECIPES:
        assert spec.BACKEND and spec.SUMMARY
        assert get_recipe(spec.TYPE) == spec()


# --- envelope -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", RECIPES, ids=lambda s: s.TYPE)
@pytest.mark.parametrize("exclude", [(), ("head",), ("body.0", "head")])
def test_round_trip(spec: type[Recipe], exclude: tuple[str, ...]) -> None:
    recipe = spec(exclude=exclude)
    d = recipe_to_dict(recipe)
    assert d["_type"] == spec.TYPE and d["_version"] == spec.VERSION
    assert d["_data"]["exclude"] == list(exclude)
    assert recipe_from_dict(d) == recipe
    # and through real JSON text (what provenance stores)
    back = recipe_from_dict(json.loads(json.dumps(d)))
    assert back == recipe and isinstance(back.exclude, tuple) and type(back) is spec
    assert back.digest == recipe.digest


def test_dynamic_int8_fields_round_trip() -> None:
    r = DynamicInt8Recipe(per_channel=False, exclude=("head",))
    d = recipe_to_dict(r)
    assert d["_data"] == {"exclude": ["head"], "per_channel": False, "target": "auto"}
    assert recipe_from_dict(d) == r


def test_from_dict_defaults_when_data_missing() -> None:
    assert recipe_from_dict({"_type": "dynamic-int8", "_version": 1}) == DynamicInt8Recipe()


def test_digest_stable_and_sensitive_to_exclude() -> None:
    a = DynamicInt8Recipe()
    assert a.digest == DynamicInt8Recipe().digest
    assert a.digest.startswith("sha256:") and len(a.digest) == len("sha256:") + 64
    assert DynamicInt8Recipe(exclude=("head",)).digest != a.digest
    assert DynamicInt8Recipe(exclude=("head",)).digest == DynamicInt8Recipe(exclude=("head",)).digest
    assert DynamicInt8Recipe(per_channel=False).digest != a.digest
    assert Int8WeightOnlyRecipe().digest != a.digest  # type is part of the digest


def test_label() -> None:
    assert DynamicInt8Recipe().label == "dynamic-int8"
    assert DynamicInt8Recipe(exclude=("a", "b")).label == "dynamic-int8(exclude=2)"


def test_type_outside_allow_list_rejected() -> None:
    with pytest.raises(ConfigError, match="not on the allow-list") as exc:
        recipe_from_dict({"_type": "os.system", "_version": 1, "_data": {}})
    assert "dynamic-int8" in str(exc.value)  # the hint lists the known types
    with pytest.raises(ConfigError, match="allow-list"):
        recipe_from_dict({"_version": 1, "_data": {}})


def test_wrong_version_rejected() -> None:
    d = recipe_to_dict(DynamicInt8Recipe())
    with pytest.raises(ConfigError, match="version 2 is not supported"):
        recipe_from_dict({**d, "_version": 2})
    with pytest.raises(ConfigError, match="version"):
        recipe_from_dict({k: v for k, v in d.items() if k != "_version"})


def test_unknown_field_rejected() -> None:
    d = recipe_to_dict(Int8WeightOnlyRecipe())
    with pytest.raises(ConfigError, match=r"unknown field\(s\) per_channel"):
        recipe_from_dict({**d, "_data": {"exclude": [], "per_channel": True}})
    with pytest.raises(ConfigError, match="TYPE"):  # class variables are not fields
        recipe_from_dict({**d, "_data": {"TYPE": "dynamic-int8"}})


def test_get_recipe() -> None:
    r = get_recipe("dynamic-int8", exclude=("head",))
    assert r == DynamicInt8Recipe(exclude=("head",))
    with pytest.raises(ConfigError, match="unknown recipe 'gptq'") as exc:
        get_recipe("gptq")
    assert "int8-weight-only" in str(exc.value)


def test_recipes_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        DynamicInt8Recipe().exclude = ("x",)  # type: ignore[misc]


# --- applying to a tiny MLP -----------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp() -> TabularMLP:
    torch.manual_seed(0)
    return TabularMLP(10).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(64, 10, generator=torch.Generator().manual_seed(1))


def _max_softmax_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a(x).softmax(-1) - b(x).softmax(-1)).abs().max())


def test_dynamic_int8_quantizes_every_linear(mlp: TabularMLP, x: torch.Tensor) -> None:
    n_linear = sum(isinstance(m, nn.Linear) for m in mlp.modules())
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    res = apply_recipe(mlp, DynamicInt8Recipe())
    assert res.n_quantized == n_linear == 3
    assert sorted(res.quantized) == LINEARS
    assert res.kept_float == []
    assert res.recipe == DynamicInt8Recipe()
    assert res.module is not mlp
    assert isinstance(res.module.head, torch.ao.nn.quantized.dynamic.Linear)
    # the source model is left as it was
    assert isinstance(mlp.head, nn.Linear) and type(mlp.head) is nn.Linear
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
    assert _max_softmax_diff(mlp, res.module, x) < 0.05


def test_dynamic_int8_per_tensor(mlp: TabularMLP, x: torch.Tensor) -> None:
    res = apply_recipe(mlp, DynamicInt8Recipe(per_channel=False))
    assert res.n_quantized == 3
    assert _max_softmax_diff(mlp, res.module, x) < 0.05


def test_dynamic_int8_exclude_head(mlp: TabularMLP, x: torch.Tensor) -> None:
    res = apply_recipe(mlp, DynamicInt8Recipe(exclude=("head",)))
    assert sorted(res.quantized) == ["body.0", "body.2"]
    assert res.kept_float == ["head"]
    assert type(res.module.head) is nn.Linear
    assert _max_softmax_diff(mlp, res.module, x) < 0.05


def test_dynamic_int8_exclude_by_prefix(mlp: TabularMLP) -> None:
    res = apply_recipe(mlp, DynamicInt8Recipe(exclude=("body",)))
    assert res.quantized == ["head"]
    assert sorted(res.kept_float) == ["body.0", "body.2"]
    # a prefix only matches whole dotted components
    res = apply_recipe(mlp, DynamicInt8Recipe(exclude=("bod", "hea")))
    assert res.n_quantized == 3 and res.kept_float == []


def test_excluding_every_linear_is_unsupported(mlp: TabularMLP) -> None:
    with pytest.raises(UnsupportedModel, match="quantized nothing") as exc:
        apply_recipe(mlp, DynamicInt8Recipe(exclude=("body", "head")))
    assert "3 Linear" in str(exc.value)


def test_module_without_linear_is_unsupported() -> None:
    with pytest.raises(UnsupportedModel, match=r"found no nn\.Linear") as exc:
        apply_recipe(nn.Sequential(nn.ReLU()), DynamicInt8Recipe())
    assert "layers present: ReLU" in str(exc.value)
    with pytest.raises(UnsupportedModel) as exc:
        apply_recipe(nn.Sequential(nn.Conv1d(1, 1, 3), nn.ReLU()), Int8WeightOnlyRecipe())
    assert "Conv1d" in str(exc.value) and "ReLU" in str(exc.value)


def test_dynamic_int8_on_a_bare_linear() -> None:
    res = apply_recipe(nn.Linear(4, 2), DynamicInt8Recipe())
    assert res.n_quantized == 1


def test_int8_weight_only_on_a_bare_linear() -> None:
    assert apply_recipe(nn.Linear(4, 2), Int8WeightOnlyRecipe()).n_quantized == 1


def test_int8_weight_only(mlp: TabularMLP, x: torch.Tensor) -> None:
    res = apply_recipe(mlp, Int8WeightOnlyRecipe())
    assert res.n_quantized > 0
    assert sorted(res.quantized) == LINEARS and res.kept_float == []
    assert type(mlp.head.weight).__name__ == "Parameter"  # source untouched
    assert _max_softmax_diff(mlp, res.module, x) < 0.05


def test_int8_weight_only_exclude(mlp: TabularMLP) -> None:
    res = apply_recipe(mlp, Int8WeightOnlyRecipe(exclude=("head",)))
    assert sorted(res.quantized) == ["body.0", "body.2"] and res.kept_float == ["head"]
    with pytest.raises(UnsupportedModel, match="quantized nothing"):
        apply_recipe(mlp, Int8WeightOnlyRecipe(exclude=("body", "head")))
