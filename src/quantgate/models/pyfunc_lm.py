"""The MLflow pyfunc that serves a governed causal language model: prompts in, greedy text out."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from quantgate.models.causal_lm import PROMPT_COLUMN, CausalLM


class QuantgateLMPyfunc(mlflow.pyfunc.PythonModel):
    """Loads ``config/``, ``weights.pt``, ``tokenizer/`` and ``spec.json`` (:meth:`CausalLM.load`)."""

    def load_context(self, context: Any) -> None:
        self.lm = CausalLM.load(dict(context.artifacts))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.lm.predict(model_input)


def log_causal_lm(lm: CausalLM, artifacts: dict[str, str], prompts: list[str]) -> Any:
    """Log ``lm`` as quantgate's LM pyfunc in the active run (signature from a few prompts and
    their continuations, pinned requirements). Returns mlflow's ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    from quantgate.environment import requirements

    example = pd.DataFrame({PROMPT_COLUMN: prompts})
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=QuantgateLMPyfunc(),
        artifacts=artifacts,
        signature=infer_signature(example, lm.predict(example)),
        input_example=example,
        pip_requirements=requirements(),
    )
