"""Latency and size, measured on the same batches for baseline and candidate."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from quantgate.models.wrapped import WrappedModel


def artifact_size(path: Path) -> int:
    """Bytes on disk of a file or a directory tree."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@torch.inference_mode()
def latency_ms(
    model: WrappedModel, df: pd.DataFrame, *, batch_size: int = 32, repeats: int = 7, warmup: int = 2
) -> dict[str, float]:
    """p50/p95 milliseconds for one batch of ``batch_size`` raw rows, preprocessing excluded."""
    batch = model.batches(df.head(batch_size), batch_size)[0]
    for _ in range(warmup):
        model.module(*batch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.module(*batch)
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def side_by_side_latency(
    baseline: WrappedModel, candidate: WrappedModel, df: pd.DataFrame, *, batch_size: int = 32, rounds: int = 5
) -> dict[str, float]:
    """Alternate baseline and candidate so machine noise hits both; speedup = p50 ratio."""
    b, c = [], []
    for _ in range(rounds):
        b.append(latency_ms(baseline, df, batch_size=batch_size, repeats=3, warmup=1)["p50_ms"])
        c.append(latency_ms(candidate, df, batch_size=batch_size, repeats=3, warmup=1)["p50_ms"])
    bp, cp = float(np.median(b)), float(np.median(c))
    return {"baseline_p50_ms": bp, "candidate_p50_ms": cp, "speedup": bp / cp if cp > 0 else float("nan")}
