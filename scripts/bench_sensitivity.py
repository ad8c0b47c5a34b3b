"""Benchmark: the search's per-layer sensitivity on a MiniLM classifier, 256 Rotten Tomatoes rows.

Times ``quantgate.quantize.tuner.layer_sensitivity`` (one forward pass, each Linear's output error
under simulated dynamic int8) against the end-to-end measure it replaced (each Linear alone
dynamic-int8 in a quantized copy, the model's probabilities re-scored), side by side in one run,
and prints how closely the two rankings agree (Spearman) and their top layers. The classifier is
built as the rt-sentiment demo model is (all-MiniLM-L6-v2 + a head on 1,000 snippets).

    .venv/bin/python scripts/bench_sensitivity.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.stats import spearmanr

from quantgate.data.datasets import load_rotten_tomatoes
from quantgate.models.text import SentenceClassifier, embed_texts, load_encoder, train_head
from quantgate.models.wrapped import WrappedModel
from quantgate.quantize.base import linear_names
from quantgate.quantize.recipes import apply_recipe
from quantgate.quantize.torch_backend import DynamicInt8Recipe
from quantgate.quantize.tuner import layer_sensitivity


def per_layer_end_to_end(model: WrappedModel, rows) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The former measure: mean max |Δ probability| with only that Linear dynamic-int8."""
    base = model.predict_proba(rows)
    names = linear_names(model.module)
    out = {}
    for name in names:
        res = apply_recipe(model.module, DynamicInt8Recipe(exclude=tuple(n for n in names if n != name)))
        out[name] = float(np.abs(model.with_module(res.module).predict_proba(rows) - base).max(axis=1).mean())
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    df = load_rotten_tomatoes().sample(1256, random_state=0)
    train, rows = df.head(1000), df.tail(256)
    encoder, tokenizer = load_encoder()
    net = SentenceClassifier(encoder)
    train_head(net, embed_texts(net, tokenizer, train["text"].tolist()), train["label"].to_numpy(), seed=0)
    spec = {"task": "text-classification", "text_column": "text", "max_length": 128, "classes": [0, 1]}
    model = WrappedModel(net, spec, tokenizer)

    t = time.perf_counter()
    one_pass = layer_sensitivity(model, rows)
    t_one = time.perf_counter() - t
    t = time.perf_counter()
    end_to_end = per_layer_end_to_end(model, rows)
    t_e2e = time.perf_counter() - t

    names = list(one_pass)
    rho = spearmanr([one_pass[n] for n in names], [end_to_end[n] for n in names]).statistic
    print(f"{len(names)} Linear layers, {len(rows)} rows, {torch.get_num_threads()} threads")
    print(f"one pass: {t_one:.1f} s; per layer end to end: {t_e2e:.1f} s; ratio {t_e2e / t_one:.1f}x")
    print(f"Spearman rank correlation of the two rankings: {rho:.2f}")
    print("top 3, one pass:   ", names[:3])
    print("top 3, end to end: ", list(end_to_end)[:3])


if __name__ == "__main__":
    main()
