"""The MLflow pyfunc that serves a governed causal language model: prompts in, greedy text out.

Served by MLflow's scoring server (``quantgate serve``): ``/invocations`` with a ``prompt`` column
(``dataframe_records``, ``dataframe_split``, ``inputs``, ``instances``) answers ``generated_text``
with ``prompt_tokens`` and ``output_tokens`` per prompt. How many tokens to generate is the MLflow
param ``max_new_tokens`` (in the signature, default the evaluation's ``new_tokens``), bounded:
a request over :data:`MAX_NEW_TOKENS`, over the model's context, with more than
:data:`MAX_PROMPTS` prompts or with an empty prompt is an ``INVALID_PARAMETER_VALUE``, which
MLflow's server answers with a 400 and this module's one-line message.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import mlflow.pyfunc
import pandas as pd

from quantgate.models.causal_lm import PROMPT_COLUMN, CausalLM

#: the MLflow param naming how many tokens to generate per prompt
MAX_NEW_TOKENS_PARAM = "max_new_tokens"
#: the most tokens one prompt may ask for (greedy decoding on CPU: ~ms per token per prompt)
MAX_NEW_TOKENS = 256
#: the most prompts one request may carry (they are generated one after the other)
MAX_PROMPTS = 64


class QuantgateLMPyfunc(mlflow.pyfunc.PythonModel):
    """Loads ``config/``, ``weights.pt``, ``tokenizer/`` and ``spec.json`` (:meth:`CausalLM.load`)."""

    def load_context(self, context: Any) -> None:
        self.lm = CausalLM.load(dict(context.artifacts))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        new_tokens = generation_length(self.lm, model_input, params)
        return self.lm.predict(model_input, new_tokens=new_tokens)


def _refuse(message: str) -> Exception:
    from mlflow.exceptions import MlflowException

    return MlflowException.invalid_parameter_value(message)


def generation_length(lm: CausalLM, prompts: pd.DataFrame, params: dict[str, Any] | None) -> int:
    """The tokens to generate per prompt for this request, or an ``INVALID_PARAMETER_VALUE``
    naming the bound that was crossed (a 400 from MLflow's scoring server)."""
    raw = (params or {}).get(MAX_NEW_TOKENS_PARAM)
    n = lm.default_new_tokens if raw is None else raw
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise _refuse(f"{MAX_NEW_TOKENS_PARAM} must be a whole number, got {raw!r}")
    n = int(n)
    if not 1 <= n <= MAX_NEW_TOKENS:
        raise _refuse(f"{MAX_NEW_TOKENS_PARAM}={n} is outside 1..{MAX_NEW_TOKENS}: ask for at most {MAX_NEW_TOKENS}")
    if PROMPT_COLUMN not in prompts.columns:
        raise _refuse(f"the request has no '{PROMPT_COLUMN}' column")
    if len(prompts) > MAX_PROMPTS:
        raise _refuse(f"{len(prompts)} prompts in one request; at most {MAX_PROMPTS}: split them over requests")
    context = lm.context_length
    for i, value in enumerate(prompts[PROMPT_COLUMN]):
        if value is None or not str(value).strip():
            raise _refuse(f"prompt {i} is empty: there is no token to continue from")
        if context is not None:
            used = len(lm.tokenizer(str(value))["input_ids"])
            if used + n > context:
                raise _refuse(
                    f"prompt {i} has {used} tokens; with {MAX_NEW_TOKENS_PARAM}={n} that is over the model's "
                    f"context of {context} tokens: shorten the prompt or ask for fewer tokens"
                )
    return n


def log_causal_lm(lm: CausalLM, artifacts: dict[str, str], prompts: list[str]) -> Any:
    """Log ``lm`` as quantgate's LM pyfunc in the active run (signature from a few prompts and
    their continuations, with the ``max_new_tokens`` param; pinned requirements). Returns
    mlflow's ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    from quantgate.environment import requirements

    example = pd.DataFrame({PROMPT_COLUMN: prompts})
    with warnings.catch_warnings():  # token counts are never missing: MLflow's integer-column hint does not apply
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
        signature = infer_signature(example, lm.predict(example), params={MAX_NEW_TOKENS_PARAM: lm.default_new_tokens})
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=QuantgateLMPyfunc(),
        artifacts=artifacts,
        signature=signature,
        input_example=example,
        pip_requirements=requirements(),
    )
