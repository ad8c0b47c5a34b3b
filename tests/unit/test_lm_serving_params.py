"""What a served language model generates per request: ``max_new_tokens`` (an MLflow param),
its default and bounds; every refusal an ``INVALID_PARAMETER_VALUE`` (a 400 from MLflow's server)
whose message names the bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from quantgate.models.pyfunc_lm import MAX_NEW_TOKENS, MAX_PROMPTS, generation_length


@dataclass
class FakeLM:
    default_new_tokens: int = 16
    context_length: int | None = 64

    def tokenizer(self, text: str) -> dict[str, Any]:
        return {"input_ids": text.split()}


def _prompts(*texts: str) -> pd.DataFrame:
    return pd.DataFrame({"prompt": list(texts)})


def test_default_and_requested_lengths() -> None:
    lm: Any = FakeLM()
    assert generation_length(lm, _prompts("To be"), None) == 16
    assert generation_length(lm, _prompts("To be"), {}) == 16
    assert generation_length(lm, _prompts("To be", "or not"), {"max_new_tokens": 4}) == 4
    assert generation_length(lm, _prompts("To be"), {"max_new_tokens": np.int64(5)}) == 5
    assert (
        generation_length(FakeLM(context_length=None), _prompts("x " * 1000), {"max_new_tokens": MAX_NEW_TOKENS})
        == MAX_NEW_TOKENS
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prompts", "params", "expected"),
    [
        (_prompts("To be"), {"max_new_tokens": MAX_NEW_TOKENS + 1}, f"is outside 1..{MAX_NEW_TOKENS}"),
        (_prompts("To be"), {"max_new_tokens": 0}, "is outside 1.."),
        (_prompts("To be"), {"max_new_tokens": "many"}, "must be a whole number"),
        (_prompts("To be"), {"max_new_tokens": True}, "must be a whole number"),
        (pd.DataFrame({"text": ["To be"]}), None, "no 'prompt' column"),
        (_prompts("To be", " "), None, "prompt 1 is empty"),
        (_prompts("word " * 60), {"max_new_tokens": 8}, "over the model's context of 64 tokens"),
        (_prompts(*["To be"] * (MAX_PROMPTS + 1)), None, f"at most {MAX_PROMPTS}"),
    ],
)
def test_refusals_name_the_bound(prompts: pd.DataFrame, params: dict[str, Any] | None, expected: str) -> None:
    with pytest.raises(MlflowException) as err:
        generation_length(FakeLM(), prompts, params)  # type: ignore[arg-type]
    assert err.value.get_http_status_code() == 400
    assert expected in err.value.message and "\n" not in err.value.message
