"""A trial that fails is a result, not a crash (issue 28).

A real small torch model whose ONNX export bakes the example's batch size into its graph (a
Python ``int`` of the batch dimension, as a recurrent net's initial state often is): the export
reproduces torch at the export batch only; the export check (batch 1 and twice the export's)
refuses it, naming the batch, before any trial is scored. The search records each ``ort-*`` trial
with the error's line and picks a torch recipe. A test-only
recipe, registered through the real handler registry, fails while being built. When every trial
fails, the search ends with GateFailed (exit 3) naming each recipe and its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from torch import nn

from quantgate.errors import GateFailed
from quantgate.models.wrapped import WrappedModel
from quantgate.onboarding import ModelConfig
from quantgate.policy.schema import parse_policy
from quantgate.quantize.base import REGISTRY, Recipe, register_handler
from quantgate.quantize.onnx_backend import OrtDynamicInt8Recipe, OrtFp32Recipe
from quantgate.steps.context import Datasets
from quantgate.steps.quantize import search_recipe

pytestmark = pytest.mark.integration

POLICY = """name: trials
rules:
  - id: accuracy-drop
    kind: max_drop
    metric: accuracy
    threshold: 0.05
    severity: block
search:
  budget_trials: 6
  budget_seconds: 300
"""
FEATURES = [f"f{i}" for i in range(8)]
#: what the export check says of the baked graph: at batch 1 it still answers the export's 32 rows
BAKED_AT_1 = (
    "the ONNX export of BakedBatch answers shape (32, 2) at batch 1 where torch answers (1, 2) (exported at batch 32)"
)


class BakedBatch(nn.Module):
    """An MLP with a zero "state" sized by ``int(x.shape[0])``: the tracer records the export
    batch as a constant, so the ONNX graph only runs at that batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 32)
        self.out = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = torch.zeros(int(x.shape[0]), 32)
        return self.out(torch.relu(self.inp(x) + state))


@dataclass(frozen=True)
class BrokenRecipe(Recipe):
    """Test-only: a backend whose kernel is missing on this host."""

    TYPE: ClassVar[str] = "test-broken"
    BACKEND: ClassVar[str] = "test"


@pytest.fixture()
def broken_recipe() -> Iterator[type[BrokenRecipe]]:
    @register_handler(BrokenRecipe)
    def _build(module: nn.Module, recipe: Any, calibration: Any) -> Any:
        raise RuntimeError("no int3 kernel on this host\n  (a second line that the trace must not carry)")

    try:
        yield BrokenRecipe
    finally:
        REGISTRY.pop(BrokenRecipe.TYPE, None)


def _world() -> tuple[ModelConfig, Any, WrappedModel, Datasets]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    module = BakedBatch()
    opt = torch.optim.Adam(module.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(module(torch.from_numpy(x[:400])), torch.from_numpy(y[:400])).backward()
        opt.step()
    df = pd.DataFrame(x, columns=FEATURES).assign(y=y)
    model = WrappedModel(module, {"task": "tensor-classification", "feature_columns": FEATURES, "classes": [0, 1]})
    cfg = ModelConfig(name="baked", task="tensor-classification", label="y", calibration_data="c", evaluation_data="e")
    data = Datasets(calibration=df.iloc[:300], evaluation=df.iloc[300:], reference=df.iloc[:400])
    return cfg, parse_policy(POLICY, "trials.yaml"), model, data


def test_failed_trials_are_recorded_and_the_search_picks_another(broken_recipe: type[BrokenRecipe]) -> None:
    from quantgate.cards.card import _search
    from quantgate.quantize.torch_backend import DynamicInt8Recipe

    cfg, policy, model, data = _world()
    found = search_recipe(
        cfg,
        policy,
        model,
        data,
        candidates=[OrtFp32Recipe(), broken_recipe(), OrtDynamicInt8Recipe(), DynamicInt8Recipe()],
    )
    by_label = {t["label"]: t for t in found.trace}
    assert list(by_label) == ["ort-fp32", "test-broken", "ort-dynamic-int8", "dynamic-int8"]
    for label in ("ort-fp32", "ort-dynamic-int8"):  # exported at batch 32, refused at batch 1
        t = by_label[label]
        assert not t["passed"] and t["metrics"] == {}
        assert t["error"].startswith(f"UnsupportedModel: {BAKED_AT_1}") and t["reason"] == f"error: {t['error']}"
    broken = by_label["test-broken"]
    assert broken["error"] == "RuntimeError: no int3 kernel on this host"  # type and first line only
    assert broken["reason"] == "error: RuntimeError: no int3 kernel on this host"
    # the search went on and picked the recipe that runs
    assert found.recipe.TYPE == "dynamic-int8" and by_label["dynamic-int8"]["passed"]
    assert found.candidate.spec["quantization"]["search"]["trace"] == found.trace
    assert found.candidate.predict_proba(data.evaluation).shape == (300, 2)
    # the card's search table shows each failed trial with its reason
    table = _search({"search_trace": found.trace})
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["rows"]]
    failed = {r["recipe"]: r for r in rows if r["result"] == "fail"}
    assert set(failed) == {"ort-fp32", "test-broken", "ort-dynamic-int8"}
    assert failed["test-broken"]["reason"] == "error: RuntimeError: no int3 kernel on this host"
    assert BAKED_AT_1 in failed["ort-fp32"]["reason"]


def test_when_every_trial_fails_the_run_ends_with_each_reason_exit_3(broken_recipe: type[BrokenRecipe]) -> None:
    from quantgate.cli_base import EXIT_GATE, run

    cfg, policy, model, data = _world()
    candidates: list[Recipe] = [OrtFp32Recipe(), broken_recipe(), OrtDynamicInt8Recipe()]
    with pytest.raises(GateFailed) as info:
        search_recipe(cfg, policy, model, data, candidates=candidates)
    msg = info.value.one_line()
    assert "\n" not in msg
    assert msg.startswith("no recipe for 'baked' could be tried: all 3 trial(s) failed with an error: ")
    assert "test-broken: error: RuntimeError: no int3 kernel on this host" in msg
    assert msg.count(BAKED_AT_1) == 2
    assert f"ort-fp32: error: UnsupportedModel: {BAKED_AT_1}" in msg and "ort-dynamic-int8: error:" in msg
    assert "--recipe" in msg
    # the CLI turns it into one line and exit 3 (a gate outcome, not a crash)
    with pytest.raises(typer.Exit) as code:
        run(lambda: search_recipe(cfg, policy, model, data, candidates=candidates), configure=False)
    assert code.value.exit_code == EXIT_GATE == 3


def test_a_fixed_recipe_that_fails_ends_with_one_line_exit_2(broken_recipe: type[BrokenRecipe]) -> None:
    """``--recipe NAME`` that cannot be built, or whose candidate cannot run, on this model: one line
    naming the recipe and the error, exit 2 (bad input), never a traceback."""
    from quantgate.cli_base import EXIT_USER, run
    from quantgate.errors import UnsupportedModel
    from quantgate.steps.quantize import quantize_candidate

    _, _, model, data = _world()
    with pytest.raises(UnsupportedModel) as info:
        quantize_candidate(model, broken_recipe(), data)
    msg = info.value.one_line()
    assert "\n" not in msg
    assert msg.startswith("recipe 'test-broken' failed on this model: RuntimeError: no int3 kernel on this host — ")
    # exported, then refused at another batch size than the export's
    with pytest.raises(UnsupportedModel) as exported:
        quantize_candidate(model, OrtDynamicInt8Recipe(), data)
    assert exported.value.one_line().startswith(BAKED_AT_1)
    assert "use a torch-eager recipe (dynamic-int8)" in exported.value.one_line()
    with pytest.raises(typer.Exit) as code:
        run(lambda: quantize_candidate(model, broken_recipe(), data), configure=False)
    assert code.value.exit_code == EXIT_USER == 2


def test_the_flow_with_a_failing_fixed_recipe_leaves_the_registry_unchanged(
    broken_recipe: type[BrokenRecipe], prefect_harness: None, demo_sources: dict[str, str], settings: Any, tmp_path: Any
) -> None:
    import json

    from helpers import snapshot

    from quantgate.errors import UnsupportedModel
    from quantgate.flows.quantize import quantize_model
    from quantgate.quantize.base import recipe_to_dict

    spec = tmp_path / "broken.json"
    spec.write_text(json.dumps(recipe_to_dict(broken_recipe())))
    before = snapshot()
    with pytest.raises(UnsupportedModel, match=r"^recipe 'test-broken' failed on this model: RuntimeError: no int3"):
        quantize_model(demo_sources["adult-income"], recipe=str(spec))
    assert snapshot() == before
