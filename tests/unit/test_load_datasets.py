"""The data step refuses evaluation data it cannot score against (files in tmp, no store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantgate.errors import DataError
from quantgate.onboarding import ModelConfig
from quantgate.steps.data import load_datasets


def _cfg(tmp_path: Path, evaluation: pd.DataFrame) -> ModelConfig:
    frame = pd.DataFrame({"x": np.arange(10.0), "y": [0, 1] * 5})
    frame.to_parquet(tmp_path / "cal.parquet")
    evaluation.to_parquet(tmp_path / "ev.parquet")
    return ModelConfig(
        name="m",
        task="tensor-classification",
        label="y",
        calibration_data=str(tmp_path / "cal.parquet"),
        evaluation_data=str(tmp_path / "ev.parquet"),
    )


def test_rows_without_a_label_are_named(tmp_path: Path) -> None:
    ev = pd.DataFrame({"x": np.arange(8.0), "y": [0, 1, None, 1, 0, None, 1, 0]})
    with pytest.raises(DataError) as info:
        load_datasets(_cfg(tmp_path, ev))
    msg = info.value.one_line()
    assert "has 2 of 8 rows with no label in column 'y' (rows 2, 5)" in msg and "drop those rows" in msg


def test_labelled_data_loads(tmp_path: Path) -> None:
    ev = pd.DataFrame({"x": np.arange(8.0), "y": [0, 1] * 4})
    data = load_datasets(_cfg(tmp_path, ev))
    assert len(data.evaluation) == 8 and data.reference.equals(data.calibration)
