"""A model whose output does not name its classes, read in the sorted order of string labels:
where the order came from, the order that agrees best with the labels, and the step's verdict
(a mis-ordered reading is refused with the order to declare; a right one is a card warning)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.entities.model_registry import ModelVersion
from torch import nn

from quantgate.errors import ConfigError
from quantgate.models.outputs import best_class_order, classes_origin
from quantgate.models.wrapped import WrappedModel
from quantgate.onboarding import ModelConfig
from quantgate.steps.context import Datasets, Source
from quantgate.steps.source import check_class_order


def test_where_the_order_came_from() -> None:
    assert classes_origin(["b", "a"], "logits", ["b", "a"]) == "declared"
    assert classes_origin(["no", "yes"], "labels", None) == "model"
    assert classes_origin([0, 1, 2], "logits", None) == "positions"
    assert classes_origin(["0", "1"], "probabilities", None) == "positions"
    assert classes_origin([0.0, 1.0], "logits", None) == classes_origin([False, True], "logits", None) == "positions"
    assert classes_origin(["benign", "malignant"], "logits", None) == "sorted labels"
    assert classes_origin([1, 2], "logits", None) == "sorted labels"  # 1/2 labels for a one-logit model


def test_best_order_of_a_swapped_binary_reading() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    proba = np.eye(2)[1 - y]  # the model is right, but its outputs are read the other way round
    proba[0] = proba[0][::-1]  # one real mistake
    order = best_class_order(y, proba, ["benign", "malignant"])
    assert order.best == ["malignant", "benign"]
    assert order.accuracy == pytest.approx(1 / 8) and order.best_accuracy == pytest.approx(7 / 8)


def test_best_order_of_a_permuted_three_class_reading() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    perm = np.array([2, 0, 1])  # true class t comes out at position perm[t]
    proba = np.eye(3)[perm[y]]
    order = best_class_order(y, proba, ["a", "b", "c"])
    assert order.best == ["b", "c", "a"] and order.best_accuracy == 1.0 and order.accuracy < 0.5


def test_a_right_order_is_its_own_best() -> None:
    y = np.array([0, 1, 1, 0, 1])
    order = best_class_order(y, np.eye(2)[y], ["cancer", "healthy"])
    assert order.best == ["cancer", "healthy"] and order.accuracy == order.best_accuracy == 1.0


def _world(labels: list[str], classes: list[str]) -> tuple[Source, WrappedModel, Datasets]:
    """A one-logit linear model, positive for x > 0; its label for x > 0 is labels[1]."""
    x = np.linspace(-1, 1, 200, dtype=np.float32)
    ev = pd.DataFrame({"x": x, "y": np.where(x > 0, labels[1], labels[0])})
    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(10.0)
        lin.bias.zero_()
    spec = {"task": "tensor-classification", "feature_columns": ["x"], "classes": classes}
    model = WrappedModel(lin, {**spec, "output": "logits", "classes_from": "sorted labels"})
    cfg = ModelConfig(name="m", label="y", calibration_data="c", evaluation_data="e")
    version = ModelVersion(name="m", version="1", creation_timestamp=0)
    return Source(version, cfg), model, Datasets(ev, ev, ev)


def test_a_mis_ordered_reading_is_refused_with_the_order_to_declare() -> None:
    source, model, data = _world(["malignant", "benign"], ["benign", "malignant"])
    with pytest.raises(ConfigError) as info:
        check_class_order(source, model, data)
    msg = info.value.one_line()
    assert "read in the sorted order of the labels ['benign', 'malignant'], it is right on 0.0% of 200" in msg
    assert "set classes: [malignant, benign] in registry/models/m.yaml" in msg


def test_a_right_guess_is_a_warning_and_a_declared_order_is_not_checked() -> None:
    source, model, data = _world(["cancer", "healthy"], ["cancer", "healthy"])
    warning = check_class_order(source, model, data)
    assert warning is not None and "label values in sorted order" in warning and "declare classes:" in warning
    model.spec["classes_from"] = "declared"
    assert check_class_order(source, model, data) is None
