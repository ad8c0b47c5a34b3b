"""MLflow's ``transformers`` flavor: a text-classification pipeline, governed through its model
and tokenizer (loaded as components, never from a hub).

The sequence-classification model is wrapped so that it answers ``(input_ids, attention_mask) ->
logits`` like the demo text model; its classes are the pipeline's labels (``config.id2label``), or
the data's labels when these are the positions 0..k-1. Candidates are logged as quantgate's
pyfunc with the same tokenizer (raw text in, label and score out).
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import torch
from torch import nn

from quantgate.errors import ConfigError, UnsupportedModel
from quantgate.models.outputs import classes_origin, infer_classes
from quantgate.models.wrapped import WrappedModel
from quantgate.sources.base import SourceContext, register_source


class SequenceClassifier(nn.Module):
    """A Hugging Face ``*ForSequenceClassification`` model answering logits for token tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _text_column(ctx: SourceContext) -> str:
    declared = ctx.onboarding("input_columns", []) or []
    if declared:
        return str(declared[0])
    label = getattr(ctx.config, "label", None)
    sample = ctx.sample if ctx.sample is not None else pd.DataFrame()
    texts = [c for c in sample.columns if c != label and pd.api.types.is_string_dtype(sample[c])]
    if len(texts) != 1:
        raise ConfigError(
            f"{ctx.ref} reads one text column; the data has {len(texts)} text columns ({', '.join(texts) or 'none'})",
            "set input_columns: [<text column>] in the onboarding",
        )
    return texts[0]


@register_source("transformers", lambda meta: "transformers" in meta.flavors)
def load_transformers(ctx: SourceContext) -> WrappedModel:
    import mlflow.transformers

    task = ctx.meta.flavors["transformers"].get("task", "")
    if task not in ("text-classification", "sentiment-analysis"):
        raise UnsupportedModel(
            f"{ctx.ref} is a transformers '{task}' pipeline", "quantgate governs text-classification pipelines"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parts: dict[str, Any] = mlflow.transformers.load_model(ctx.uri, return_type="components")
    model, tokenizer = parts["model"].eval(), parts.get("tokenizer")
    if tokenizer is None:
        raise UnsupportedModel(
            f"{ctx.ref} has no tokenizer among its components", "log the pipeline with its tokenizer"
        )
    id2label = getattr(model.config, "id2label", None) or {}
    k = int(getattr(model.config, "num_labels", len(id2label)))
    names = [str(id2label.get(i, f"LABEL_{i}")) for i in range(k)]
    seen = {str(v) for v in ctx.labels}
    declared = ctx.onboarding("classes")
    if not declared and seen <= set(names):
        classes, origin = names, "model"  # the pipeline's own labels
    else:
        classes = list(declared) if declared else infer_classes(k, "logits", ctx.labels, None)
        origin = classes_origin(classes, "logits", declared)
    spec = {
        "task": "text-classification",
        "text_column": _text_column(ctx),
        "max_length": int(min(getattr(tokenizer, "model_max_length", 128) or 128, 128)),
        "classes": classes,
        "classes_from": origin,
        "label_names": names,  # what the pipeline answers, position by position
        "output": "logits",
        "output_width": k,
        "output_note": f"{k} logits per row (the pipeline's labels {names})",
    }
    return WrappedModel(SequenceClassifier(model), spec, tokenizer)
