"""MLflow's ``transformers`` flavor with task ``text-generation``: a causal language model and its
tokenizer, loaded as components from the logged artifact (offline: ``HF_HUB_OFFLINE=1``, never a hub).

The model is read as a :class:`~quantgate.models.causal_lm.CausalLM` in fp32, not a
:class:`~quantgate.models.wrapped.WrappedModel`: a language model has no classes to read, and the
language-model sub-flow (``quantgate.flows.quantize_lm``) governs it. Onboarded with another task
it is refused by name. Its faithful-reading check is :func:`check_lm_faithful`: the next-token
distributions of quantgate's reading equal those of the model of the pipeline MLflow loads.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from quantgate.errors import ConfigError, UnfaithfulReading, UnsupportedModel
from quantgate.models.causal_lm import CausalLM
from quantgate.sources.base import SourceContext, register_source

TASKS = ("text-generation",)
#: how far quantgate's next-token log-probabilities may be from the pipeline model's
MAX_LOGPROB_DIFF = 1e-4


def is_text_generation(meta: Any) -> bool:
    return "transformers" in meta.flavors and meta.flavors["transformers"].get("task", "") in TASKS


@register_source("text_generation", is_text_generation)
def load_text_generation(ctx: SourceContext) -> CausalLM:  # type: ignore[return-value]
    import mlflow.transformers
    from mlflow.exceptions import MlflowException

    task = getattr(ctx.config, "task", None)
    if ctx.config is not None and task != "text-generation":
        raise ConfigError(
            f"{ctx.ref} is a transformers text-generation model, onboarded with task: {task}",
            f"set task: text-generation in registry/models/{ctx.version.name}.yaml",
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hint = (
        'log it with mlflow.transformers.log_model(transformers_model={"model": model, "tokenizer": tokenizer}, '
        'task="text-generation", ...)'
    )
    if "tokenizer" not in (ctx.meta.flavors["transformers"].get("components") or []):
        raise UnsupportedModel(f"{ctx.ref} has no tokenizer among its logged components", hint)
    try:
        parts: dict[str, Any] = mlflow.transformers.load_model(ctx.uri, return_type="components")
    except (OSError, ValueError, KeyError, MlflowException) as exc:  # a component's files missing or unreadable offline
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModel(
            f"{ctx.ref}'s logged model and tokenizer cannot be loaded from its artifact (offline): {line}", hint
        ) from None
    model, tokenizer = parts["model"], parts.get("tokenizer")
    if tokenizer is None:
        raise UnsupportedModel(f"{ctx.ref} has no tokenizer among its logged components", hint)
    if not hasattr(model, "get_input_embeddings") or not hasattr(model, "generate"):
        raise UnsupportedModel(
            f"{ctx.ref}'s model is a {type(model).__name__}, not a causal language model",
            "log a *ForCausalLM (transformers) with task text-generation",
        )
    model = model.to(torch.float32).eval()
    spec = {
        "task": "text-generation",
        "text_column": str(ctx.onboarding("text_column", "text")),
        "source_kind": "text_generation",
        "model_class": type(model).__name__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "vocabulary": int(model.get_input_embeddings().num_embeddings),
    }
    return CausalLM(model, tokenizer, spec)


def check_lm_faithful(uri: str, lm: CausalLM, texts: list[str], what: str, max_tokens: int = 32) -> dict[str, Any]:
    """Compare quantgate's reading with the model of the pipeline MLflow loads for ``uri``
    (``mlflow.transformers.load_model``, its own tokenizer): token ids and next-token
    log-probabilities on each sample text. Raises UnfaithfulReading naming the first difference."""
    import mlflow.transformers

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pipe = mlflow.transformers.load_model(uri)
    ref = CausalLM(pipe.model.to(torch.float32).eval(), pipe.tokenizer, {"task": "text-generation"})
    return compare_next_tokens(ref, lm, texts, what, max_tokens)


def compare_next_tokens(
    ref: CausalLM, lm: CausalLM, texts: list[str], what: str, max_tokens: int = 32
) -> dict[str, Any]:
    worst = 0.0
    positions = 0
    for i, text in enumerate(texts):
        a = ref.tokenizer(text)["input_ids"][:max_tokens]
        b = lm.tokenizer(text)["input_ids"][:max_tokens]
        if list(a) != list(b):
            raise UnfaithfulReading(
                f"{what}: quantgate's tokenizer reads sample text {i} differently from the model's own "
                f"({len(b)} vs {len(a)} tokens, first ids {list(b)[:5]} vs {list(a)[:5]})",
                "nothing was judged or registered; log the tokenizer the model was trained with",
            )
        (pa,) = ref.next_token_log_probs([text], max_tokens)
        (pb,) = lm.next_token_log_probs([text], max_tokens)
        diff = float(np.max(np.abs(pa - pb))) if pa.size else 0.0
        positions += len(pa)
        if not diff <= MAX_LOGPROB_DIFF:
            raise UnfaithfulReading(
                f"{what}: quantgate's next-token log-probabilities differ from the model's own by {diff:.2e} "
                f"(> {MAX_LOGPROB_DIFF:g}) on sample text {i}",
                "nothing was judged or registered; report this model's class and configuration to quantgate",
            )
        worst = max(worst, diff)
    return {"texts": len(texts), "positions": positions, "max_logprob_diff": worst, "bound": MAX_LOGPROB_DIFF}
