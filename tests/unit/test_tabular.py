"""TabularPreprocessor on a small frame, model references, and environment-driven Settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from quantgate.models.tabular import TabularMLP, TabularPreprocessor
from quantgate.registry.contract import parse_model_ref, quantized_name
from quantgate.settings import Settings, get_settings, reset_settings


@pytest.fixture()
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20.0, 30.0, 40.0, 50.0],
            "hours": [40, 40, 40, 40],  # constant: std 0 -> 1
            "sex": ["F", "M", "F", "M"],
            "city": ["Oslo", "Rome", "Lima", None],
            "y": [0, 1, 0, 1],
        }
    )


@pytest.fixture()
def pre(frame: pd.DataFrame) -> TabularPreprocessor:
    return TabularPreprocessor.fit(frame, numeric=["age", "hours"], categorical=["sex", "city"])


def test_fit(pre: TabularPreprocessor, frame: pd.DataFrame) -> None:
    assert pre.means == {"age": 35.0, "hours": 40.0}
    assert pre.stds["age"] == pytest.approx(frame["age"].std())
    assert pre.stds["hours"] == 1.0
    assert pre.vocab == {"sex": ["F", "M"], "city": ["Lima", "Oslo", "Rome"]}  # sorted, no NaN
    assert pre.columns == ["age", "hours", "sex", "city"]
    assert pre.n_features == 2 + 2 + 3
    assert pre.feature_names() == [
        "age",
        "hours",
        "sex=F",
        "sex=M",
        "city=Lima",
        "city=Oslo",
        "city=Rome",
    ]


def test_transform_shape_and_values(pre: TabularPreprocessor, frame: pd.DataFrame) -> None:
    x = pre.transform(frame)
    assert x.shape == (4, pre.n_features) and x.dtype == np.float32
    assert x[:, 0] == pytest.approx((frame["age"] - 35.0) / frame["age"].std())
    assert np.all(x[:, 1] == 0.0)
    # sex one-hot
    assert x[:, 2:4].tolist() == [[1, 0], [0, 1], [1, 0], [0, 1]]
    # city one-hot; the missing city is all zeros
    assert x[:, 4:7].tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]]


def test_transform_unknown_category_is_all_zero(pre: TabularPreprocessor) -> None:
    df = pd.DataFrame({"age": [35.0], "hours": [40], "sex": ["X"], "city": ["Paris"]})
    x = pre.transform(df)
    assert x.shape == (1, 7)
    assert np.all(x[0, 2:] == 0.0)
    assert x[0, 0] == 0.0


def test_transform_ignores_extra_columns_and_order(pre: TabularPreprocessor, frame: pd.DataFrame) -> None:
    shuffled = frame[["city", "y", "sex", "hours", "age"]].assign(extra=1)
    assert np.array_equal(pre.transform(shuffled), pre.transform(frame))


def test_transform_missing_numeric_becomes_zero(pre: TabularPreprocessor) -> None:
    df = pd.DataFrame({"age": [np.nan], "hours": [40], "sex": ["F"], "city": ["Oslo"]})
    assert pre.transform(df)[0, 0] == 0.0


def test_transform_missing_column(pre: TabularPreprocessor, frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="missing column\\(s\\): city"):
        pre.transform(frame.drop(columns=["city"]))
    with pytest.raises(ValueError, match="age, sex"):
        pre.transform(frame.drop(columns=["age", "sex"]))


def test_to_dict_round_trip(pre: TabularPreprocessor, frame: pd.DataFrame) -> None:
    d = pre.to_dict()
    assert set(d) == {"numeric", "categorical", "means", "stds", "vocab"}
    back = TabularPreprocessor.from_dict(json.loads(json.dumps(d)))  # through JSON, as logged
    assert back == pre
    assert np.array_equal(back.transform(frame), pre.transform(frame))


def test_numeric_categories_are_stringified() -> None:
    df = pd.DataFrame({"n": [1.0, 2.0], "grade": [1, 2]})
    pre = TabularPreprocessor.fit(df, numeric=["n"], categorical=["grade"])
    assert pre.vocab == {"grade": ["1", "2"]}
    assert pre.transform(df)[:, 1:].tolist() == [[1, 0], [0, 1]]


def test_mlp_output_shape(pre: TabularPreprocessor, frame: pd.DataFrame) -> None:
    torch.manual_seed(0)
    model = TabularMLP(pre.n_features, hidden=(8,), n_classes=3).eval()
    out = model(torch.from_numpy(pre.transform(frame)))
    assert out.shape == (4, 3)


# --- model references ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("adult-income", ("adult-income", None, None)),
        ("adult-income/3", ("adult-income", "3", None)),
        ("adult-income@champion", ("adult-income", None, "champion")),
        ("adult-income-quantized@candidate", ("adult-income-quantized", None, "candidate")),
        ("team/model/7", ("team/model", "7", None)),  # the version is after the last slash
        ("a@b@c", ("a", None, "b@c")),  # alias after the first @
        ("team/model@champion", ("team/model", None, "champion")),
    ],
)
def test_parse_model_ref(ref: str, expected: tuple[str, str | None, str | None]) -> None:
    assert parse_model_ref(ref) == expected


def test_quantized_name() -> None:
    assert quantized_name("adult-income") == "adult-income-quantized"


# --- settings -----------------------------------------------------------------------------


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path.resolve() / "qg-home"
    monkeypatch.setenv("QUANTGATE_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    reset_settings()
    yield home
    reset_settings()


def test_default_tracking_uri_is_sqlite_under_home(env: Path) -> None:
    s = get_settings()
    assert s.home_abs == env
    assert s.tracking_uri == f"sqlite:///{env / 'mlflow.db'}"
    assert s.registry_uri == s.tracking_uri
    assert s.embedded_mlflow
    assert s.artifacts_dir == env / "artifacts"
    assert s.data_dir == env / "data"
    assert not env.exists()  # reading settings creates nothing


def test_mlflow_tracking_uri_env_overrides(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings()  # cached before the change...
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert get_settings().tracking_uri.startswith("sqlite:")  # ...until reset
    reset_settings()
    s = get_settings()
    assert s.tracking_uri == "http://mlflow.example:5000"
    assert s.registry_uri == "http://mlflow.example:5000"
    assert not s.embedded_mlflow
    assert s.artifacts_dir == env / "artifacts"  # artifacts location does not follow the server


def test_registry_uri_env_overrides(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "postgresql://db/registry")
    reset_settings()
    s = get_settings()
    assert s.registry_uri == "postgresql://db/registry"
    assert s.tracking_uri.startswith("sqlite:")


def test_sqlite_tracking_uri_counts_as_embedded(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    reset_settings()
    assert get_settings().embedded_mlflow


def test_settings_from_env(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("QUANTGATE_TORCH_THREADS", "4")
    reset_settings()
    s = get_settings()
    assert s.project_dir == tmp_path and s.torch_threads == 4
    assert s.path("policies/default.yaml") == (tmp_path / "policies" / "default.yaml").resolve()
    assert s.path("/abs/p.yaml") == Path("/abs/p.yaml")


def test_settings_reject_bad_values(env: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(torch_threads=0)
