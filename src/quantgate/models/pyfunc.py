"""The MLflow pyfunc that serves a WrappedModel: raw rows in, label/score/probability out."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from quantgate.models.wrapped import WrappedModel


class QuantgatePyfunc(mlflow.pyfunc.PythonModel):
    """Loads ``module.pt`` + ``spec.json`` (+ ``tokenizer/``) from the model's artifacts."""

    def load_context(self, context: Any) -> None:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.wrapped = WrappedModel.load(dict(context.artifacts))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.wrapped.predict(model_input)


def log_wrapped_model(
    wrapped: WrappedModel, artifacts: dict[str, str], example: pd.DataFrame, registered_model_name: str | None = None
) -> Any:
    """Log ``wrapped`` as quantgate's pyfunc in the active run: signature inferred from
    ``example`` (raw rows) and its predictions, the example itself, pinned requirements.
    Returns mlflow's ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    from quantgate.environment import requirements

    return mlflow.pyfunc.log_model(
        name="model",
        python_model=QuantgatePyfunc(),
        artifacts=artifacts,
        signature=infer_signature(example, wrapped.predict(example)),
        input_example=example,
        pip_requirements=requirements(),
        registered_model_name=registered_model_name,
    )
