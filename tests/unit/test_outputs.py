"""How a model's classes are inferred from its output width and the data's labels, and what a
probe that returns NaN scores is told (pure)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from quantgate.errors import DataError, UnsupportedModel
from quantgate.models.outputs import infer_classes
from quantgate.sources.base import SourceContext
from quantgate.sources.layout import resolve_outputs


def test_one_score_is_binary_over_the_two_label_values() -> None:
    assert infer_classes(1, "logits", ["no", "yes", "no"], None) == ["no", "yes"]
    assert infer_classes(1, "logits", [1, 1, 1], None) == [0, 1]


def test_declared_classes_win() -> None:
    assert infer_classes(1, "logits", [3.5, 7.25, 9.0], ["low", "high"]) == ["low", "high"]


def test_k_scores_with_ids_as_labels() -> None:
    assert infer_classes(10, "logits", [0, 3, 9], None) == list(range(10))


def test_a_regression_target_is_named_not_taken_for_classes() -> None:
    """sklearn's diabetes target (integers stored as floats) read by a one-output model."""
    labels = [151.0, 75.0, 141.0, 206.0, 135.0, 97.0, 138.0]
    with pytest.raises(UnsupportedModel) as info:
        infer_classes(1, "logits", labels, None)
    msg = info.value.one_line()
    assert "7 distinct values (75.0, 97.0, 135.0, 138.0, 141.0, ...)" in msg
    assert "one score per row" in msg and "regression" in msg and "label:" in msg


def test_fractional_labels_for_k_scores_are_named_as_regression() -> None:
    with pytest.raises(UnsupportedModel, match="3 scores per row: a regression model"):
        infer_classes(3, "logits", [0.5, 1.25, 2.0, 3.0], None)


def test_k_scores_and_other_class_names_ask_for_classes() -> None:
    with pytest.raises(DataError, match="set classes:") as info:
        infer_classes(3, "logits", ["cat", "dog"], None)
    assert not isinstance(info.value, UnsupportedModel)


def _ctx(sample: pd.DataFrame) -> SourceContext:
    return SourceContext(
        version=SimpleNamespace(name="m", version="1"),  # type: ignore[arg-type]
        meta=None,  # type: ignore[arg-type]
        config=SimpleNamespace(label="y"),  # type: ignore[arg-type]
        sample=sample,
        labels=[0, 1],
    )


def _linear(df: pd.DataFrame) -> np.ndarray:
    """A model that does not impute: a missing input gives a NaN score."""
    return (df["a"] - df["b"]).to_numpy()[:, None]


def test_nan_scores_from_missing_inputs_name_the_columns() -> None:
    sample = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [0.5, 1.0, np.nan, 2.0], "y": [1, 0, 1, np.nan]})
    with pytest.raises(DataError) as info:
        resolve_outputs(_ctx(sample), _linear)
    msg = info.value.one_line()
    assert "on 2 of the 4 evaluation rows" in msg and "column(s) a, b" in msg and "impute" in msg


def test_nan_scores_without_missing_inputs_blame_the_model() -> None:
    sample = pd.DataFrame({"a": [1.0, 2.0], "b": [0.5, 1.0], "y": [1, 0]})
    with pytest.raises(DataError) as info:
        resolve_outputs(_ctx(sample), lambda df: np.array([[np.inf], [0.1]]))
    assert "on 1 of the 2 evaluation rows" in str(info.value) and "check the model" in str(info.value)
    assert "missing" not in str(info.value)


def test_score_columns_named_by_class_give_the_order() -> None:
    """A PythonModel answering ``pd.DataFrame(proba, columns=classes)``: the columns name the
    classes, in their order, so nothing is guessed (sorted, they would be the other way round)."""
    sample = pd.DataFrame({"a": [0.1, 0.9, 0.4], "y": ["yes", "no", "no"]})
    ctx = _ctx(sample)
    ctx.labels = ["yes", "no", "no"]

    def probe(df: pd.DataFrame) -> pd.DataFrame:
        p = df["a"].to_numpy()
        return pd.DataFrame({"yes": 1 - p, "no": p})

    spec = resolve_outputs(ctx, probe)
    assert spec["classes"] == ["yes", "no"] and spec["classes_from"] == "model"
    ctx.labels = ["yes", "maybe"]  # a label the columns do not name: back to the checked guess
    spec = resolve_outputs(ctx, probe)
    assert spec["classes"] == ["maybe", "yes"] and spec["classes_from"] == "sorted labels"
