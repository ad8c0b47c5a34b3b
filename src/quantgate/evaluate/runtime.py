"""Latency and size, measured on the same batches for baseline and candidate.

Every latency figure in quantgate (the evaluation, the tuner's trials and final pick, and
``quantgate bench``) comes from :func:`forward_latency`: the modules run in alternating rounds
(each once per round, after a warm-up call), so machine noise on a shared host hits all of
them alike, and the p50 of the per-call times is the figure. ``torch.utils.benchmark.Timer``
was considered: it times one statement at a time (no alternation) and defaults to one thread,
which would misstate a 2-thread ONNX Runtime session; the alternating loop is kept, in one place.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from quantgate.models.wrapped import WrappedModel


def artifact_size(path: Path) -> int:
    """Bytes on disk of a file or a directory tree."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@torch.inference_mode()
def forward_latency(
    modules: Mapping[str, nn.Module],
    batch: tuple[torch.Tensor, ...],
    *,
    rounds: int = 5,
    repeats: int = 3,
    warmup: int = 1,
) -> dict[str, dict[str, float]]:
    """Milliseconds per forward call of each module on ``batch``, measured side by side.

    Each module is warmed up ``warmup`` times, then in each of ``rounds`` rounds every module
    runs ``repeats`` timed calls in turn. Returns name -> ``{"p50_ms", "p95_ms", "n"}``.
    """
    for module in modules.values():
        for _ in range(warmup):
            module(*batch)
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(max(1, rounds)):
        for name, module in modules.items():
            for _ in range(max(1, repeats)):
                t = time.perf_counter()
                module(*batch)
                times[name].append((time.perf_counter() - t) * 1000)
    return {
        name: {"p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)), "n": float(len(t))}
        for name, t in times.items()
    }


def latency_ms(
    model: WrappedModel, df: pd.DataFrame, *, batch_size: int = 32, repeats: int = 7, warmup: int = 2
) -> dict[str, float]:
    """p50/p95 milliseconds for one batch of ``batch_size`` raw rows, preprocessing excluded."""
    batch = model.batches(df.head(batch_size), batch_size)[0]
    out = forward_latency({"model": model.module}, batch, rounds=repeats, repeats=1, warmup=warmup)["model"]
    return {"p50_ms": out["p50_ms"], "p95_ms": out["p95_ms"]}


def side_by_side_latency(
    baseline: WrappedModel,
    candidate: WrappedModel,
    df: pd.DataFrame,
    *,
    batch_size: int = 32,
    rounds: int = 5,
    references: Mapping[str, WrappedModel] | None = None,
) -> dict[str, float]:
    """Baseline and candidate (and optional references, e.g. ``{"ort_fp32": ...}``) alternated
    so machine noise hits all of them; ``speedup`` = baseline p50 / candidate p50, and for each
    reference ``<name>_p50_ms`` and ``speedup_vs_<name>`` = reference p50 / candidate p50 (how
    much of the speedup is precision rather than runtime)."""
    batch = baseline.batches(df.head(batch_size), batch_size)[0]
    modules = {"baseline": baseline.module, "candidate": candidate.module}
    for name, ref in (references or {}).items():
        modules[name] = ref.module
    lat = forward_latency(modules, batch, rounds=rounds, repeats=3, warmup=1)
    bp, cp = lat["baseline"]["p50_ms"], lat["candidate"]["p50_ms"]
    out = {
        "baseline_p50_ms": bp,
        "candidate_p50_ms": cp,
        "speedup": bp / cp if cp > 0 else float("nan"),
        "batch_size": float(batch_size),
    }
    for name in references or {}:
        rp = lat[name]["p50_ms"]
        out[f"{name}_p50_ms"] = rp
        out[f"speedup_vs_{name}"] = rp / cp if cp > 0 else float("nan")
    return out
