"""An MLflow onnx-flavor source model is governed like any other: quantized as it is by the ONNX
Runtime recipes, refused by name by the torch ones.

The model is onboarded through tags only, as a user would: its data files live inside a project
directory (a copy of this one) and the tags name them relative to it, the only paths a tag may name.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import project_with_alerts
from torch import nn

pytestmark = pytest.mark.integration
NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]


class _Standardised(nn.Module):
    """Raw numeric columns in, logits out: the scaling is part of the exported graph."""

    def __init__(self, mlp: nn.Module, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.mlp = mlp
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp((x - self.mean) / self.std)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project (policies/, registry/, quantgate.yaml) the source's data files go into."""
    return project_with_alerts(tmp_path_factory.mktemp("onnx-project"))


@pytest.fixture(scope="module")
def onnx_source(prefect_harness: None, qg_home: Any, project: Path) -> str:
    import mlflow
    import mlflow.onnx
    import onnx
    from mlflow.models import infer_signature

    from quantgate.data.datasets import load_adult
    from quantgate.models.tabular import train_mlp
    from quantgate.registry.mlflow_registry import client, ensure_experiment
    from quantgate.settings import get_settings, reset_settings

    reset_settings()
    settings = get_settings()
    train_all, test = load_adult()
    cols = [*NUMERIC, "income", "sex"]
    train = train_all.sample(5000, random_state=0)[cols]
    calib = train_all.drop(train.index).sample(600, random_state=1)[cols]
    evaluation = test.sample(2000, random_state=2)[cols]
    reference = train_all.drop(calib.index)[cols]
    x = train[NUMERIC].to_numpy(np.float32)
    mean, std = x.mean(0), x.std(0) + 1e-6
    mlp = train_mlp((x - mean) / std, train["income"].to_numpy(), seed=0)
    module = _Standardised(mlp, mean, std).eval()
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        (torch.from_numpy(x[:8]),),
        buf,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    onx = onnx.load_from_string(buf.getvalue())
    d = project / "data" / "adult-onnx"
    d.mkdir(parents=True)
    for name, frame in {"calibration": calib, "evaluation": evaluation, "reference": reference}.items():
        frame.to_parquet(d / f"{name}.parquet", index=False)
    example = evaluation[NUMERIC].astype(np.float32).head(5)
    ensure_experiment("tests-onnx-sources", settings)
    with mlflow.start_run():
        info = mlflow.onnx.log_model(
            onx,
            name="model",
            registered_model_name="adult-onnx",
            signature=infer_signature(example, module(torch.from_numpy(example.to_numpy())).detach().numpy()),
        )
    version = str(info.registered_model_version)
    tags = {
        "quantgate.task": "tensor-classification",
        "quantgate.label": "income",
        "quantgate.calibration_data": "data/adult-onnx/calibration.parquet",  # relative to the project
        "quantgate.evaluation_data": "data/adult-onnx/evaluation.parquet",
        "quantgate.reference_data": "data/adult-onnx/reference.parquet",
        "quantgate.sensitive_attributes": "sex",
    }
    for k, v in tags.items():
        client(settings).set_model_version_tag("adult-onnx", version, k, v)
    return f"adult-onnx/{version}"


def _flow() -> Any:

    from quantgate.flows.quantize import quantize_model

    return quantize_model


def test_onnx_source_quantized_by_ort(onnx_source: str, in_project: Any) -> None:
    from quantgate import pipeline
    from quantgate.registry.mlflow_registry import client, load_wrapped

    src = pipeline.discover_source(onnx_source)  # a tensor source is read with its onboarding and data
    source = pipeline.load_source_model(src, pipeline.load_datasets(src.config))
    assert type(source.module).__name__ == "OrtModule" and source.spec["feature_columns"] == NUMERIC
    r = _flow()(onnx_source, recipe="ort-dynamic-int8")
    mv = client(in_project).get_model_version(*r["registered"].split("/"))
    params = client(in_project).get_run(mv.run_id).data.params
    assert int(params["n_quantized"]) == 3 and int(params["n_kept_float"]) == 0  # the MLP's three Gemm nodes
    cand = load_wrapped(mv)
    rows = pd.DataFrame(np.random.default_rng(0).uniform(0, 60, (64, 6)), columns=NUMERIC)
    agree = (cand.predict(rows)["label"].to_numpy() == source.predict(rows)["label"].to_numpy()).mean()
    assert agree >= 0.9
    assert r["verdict"] == "pass" and abs(r["accuracy_fp32"] - r["accuracy_quantized"]) < 0.01
    assert cand.spec["quantization"]["recipe"]["_type"] == "ort-dynamic-int8"


def test_torch_recipe_on_onnx_source_is_refused_by_name(onnx_source: str, in_project: Any) -> None:
    from helpers import snapshot

    from quantgate.errors import UnsupportedModel

    before = snapshot()
    with pytest.raises(UnsupportedModel, match="dynamic-int8 quantizes torch modules; this source is an ONNX model"):
        _flow()(onnx_source, recipe="dynamic-int8")
    assert snapshot() == before
