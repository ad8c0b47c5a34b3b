"""The search's fallback order: one forward pass, each Linear's output error under simulated
dynamic int8. A layer whose weights hold one large outlier (per-tensor int8 then rounds every other
weight to a few levels) must rank above a well-conditioned layer of the same shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from quantgate.models.wrapped import WrappedModel
from quantgate.quantize.tuner import layer_sensitivity


def _model(outlier_in: str) -> tuple[WrappedModel, pd.DataFrame]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    with torch.no_grad():
        getattr(net, outlier_in).weight[0, 0] = 200.0
    cols = [f"f{i}" for i in range(8)]
    df = pd.DataFrame(np.random.default_rng(0).normal(size=(256, 8)).astype("float32"), columns=cols)
    return WrappedModel(net, {"task": "tensor-classification", "feature_columns": cols, "classes": [0, 1]}), df


def test_the_layer_with_an_outlier_weight_ranks_first() -> None:
    for layer in ("0", "2"):
        model, df = _model(layer)
        ranked = layer_sensitivity(model, df)
        assert set(ranked) == {"0", "2", "4"}
        assert next(iter(ranked)) == layer, ranked
        assert all(v >= 0 for v in ranked.values())


def test_hooks_are_removed_and_the_model_is_unchanged() -> None:
    model, df = _model("2")
    before = model.predict_proba(df)
    layer_sensitivity(model, df)
    assert all(not m._forward_hooks for m in model.module.modules())
    np.testing.assert_array_equal(model.predict_proba(df), before)
