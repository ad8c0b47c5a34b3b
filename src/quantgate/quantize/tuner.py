"""Accuracy-aware tuning: the fastest (or smallest) recipe whose accuracy loss stays within the
policy's tolerances, overall and per group.

Anchor: Intel Neural Compressor's tolerable-loss tuning (try recipes from most aggressive to
safest; when one fails, fall back the ops that hurt most to fp32 until the loss is tolerable).
Beyond it: the loss is checked per group as well as overall, every recipe in the budget is
tried rather than stopping at the first pass (the objective then picks among the passing ones,
re-measured side by side), per-layer sensitivity is measured once and reused across backends,
and every trial (recipe JSON, metrics, pass/fail, seconds, reason) is kept for the model card.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from quantgate.errors import ConfigError, QuantgateError
from quantgate.models.wrapped import WrappedModel
from quantgate.quantize.base import Calibration, QuantizationResult, Recipe, linear_names, recipe_to_dict
from quantgate.quantize.recipes import apply_recipe
from quantgate.quantize.torch_backend import DynamicInt8Recipe, Int8WeightOnlyRecipe

Objective = Literal["latency", "size"]


@dataclass
class Trial:
    """One tried recipe: what it was, what it measured, and why it passed or failed."""

    recipe: dict[str, Any]
    label: str
    metrics: dict[str, float]
    passed: bool
    seconds: float
    reason: str
    quantized: int = 0
    kept_float: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TuneResult:
    best: Recipe | None
    module: nn.Module | None
    result: QuantizationResult | None
    trace: list[Trial] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)

    def trace_dicts(self) -> list[dict[str, Any]]:
        return [t.to_dict() for t in self.trace]


def default_candidates(objective: Objective, calibration: Calibration | None) -> list[Recipe]:
    """Fastest (or smallest) first, safest last; ONNX recipes only when there is an example batch."""
    from quantgate.quantize.float_backend import Bf16Recipe
    from quantgate.quantize.onnx_backend import OrtDynamicInt8Recipe
    from quantgate.quantize.quanto_backend import Int4WeightOnlyRecipe

    if objective == "size":
        return [Int4WeightOnlyRecipe(), DynamicInt8Recipe(), Int8WeightOnlyRecipe(), Bf16Recipe()]
    out: list[Recipe] = [OrtDynamicInt8Recipe()] if calibration else []
    return [*out, DynamicInt8Recipe(), Bf16Recipe(), Int8WeightOnlyRecipe()]


def _accuracy(proba: np.ndarray, y: np.ndarray) -> float:
    return float((proba.argmax(1) == y).mean()) if len(y) else float("nan")


def _group_drops(
    base: np.ndarray, cand: np.ndarray, y: np.ndarray, df: pd.DataFrame, group_cols: list[str], min_rows: int
) -> dict[str, float]:
    drops: dict[str, float] = {}
    for col in group_cols:
        values = df[col].astype(str).to_numpy()
        for v in np.unique(values):
            idx = values == v
            if idx.sum() >= min_rows:
                drops[f"{col}={v}"] = _accuracy(base[idx], y[idx]) - _accuracy(cand[idx], y[idx])
    return drops


def _size(module: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(module, buf)
    return buf.tell()


@torch.inference_mode()
def _p50(module: nn.Module, batch: tuple[torch.Tensor, ...], repeats: int = 5) -> float:
    module(*batch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        module(*batch)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


@contextmanager
def _progress(total: int) -> Iterator[Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]tune[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} trials"),
        TimeElapsedColumn(),
        disable=not sys.stderr.isatty(),
        transient=False,
    ) as progress:
        yield progress, progress.add_task("starting", total=total)


def layer_sensitivity(baseline: WrappedModel, df: pd.DataFrame, base_proba: np.ndarray) -> dict[str, float]:
    """Mean |Δ probability| when only that Linear is dynamic-int8: the fallback order."""
    linears = linear_names(baseline.module)
    out: dict[str, float] = {}
    for name in linears:
        others = tuple(n for n in linears if n != name)
        try:
            res = apply_recipe(baseline.module, DynamicInt8Recipe(exclude=others))
        except QuantgateError:
            continue
        proba = baseline.with_module(res.module).predict_proba(df)
        out[name] = float(np.abs(proba - base_proba).max(axis=1).mean())
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _fallback_sizes(n: int) -> Iterator[int]:
    k = 1
    while k < n:
        yield k
        k = max(k + 1, int(k * 1.5))


def tune(
    baseline: WrappedModel,
    eval_df: pd.DataFrame,
    label_col: str,
    group_cols: list[str] | None = None,
    *,
    tolerance_overall: float,
    tolerance_group: float | None = None,
    max_flip_rate: float | None = None,
    objective: Objective = "latency",
    budget_trials: int = 12,
    budget_seconds: float = 600.0,
    candidates: list[Recipe] | None = None,
    calibration: Calibration | None = None,
    sensitivity_rows: int = 256,
    min_group_rows: int = 30,
    latency_batch: int = 32,
) -> TuneResult:
    """Search recipes under the tolerances; returns the best passing one (or None) and the trace.

    ``tolerance_*`` are maximum accuracy drops (fp32 minus candidate, as fractions: 0.005 is
    half a point); ``max_flip_rate`` optionally bounds the share of predictions that change.
    Trials that fail on accuracy trigger the fallback: the most sensitive
    Linear layers (see :func:`layer_sensitivity`) are excluded, 1, 2, 3, 4, 6, 9, ... at a
    time, until the recipe passes or the budget runs out.
    """
    if objective not in ("latency", "size"):
        raise ConfigError(f"objective {objective!r} is not 'latency' or 'size'")
    t0 = time.perf_counter()
    group_cols = [g for g in (group_cols or []) if g in eval_df.columns]
    classes = list(baseline.spec.get("classes", [0, 1]))
    y = eval_df[label_col].map({c: i for i, c in enumerate(classes)}).to_numpy()
    if pd.isna(y).any():
        raise ConfigError(f"labels in {label_col!r} are not all among the model's classes {classes}")
    y = y.astype(int)
    base_proba = baseline.predict_proba(eval_df)
    sens_df = eval_df.head(sensitivity_rows)
    lat_batch = baseline.batches(eval_df.head(latency_batch), latency_batch)[0]
    base_ms = _p50(baseline.module, lat_batch)
    base_acc = _accuracy(base_proba, y)
    result = TuneResult(
        None, None, None, baseline={"accuracy": base_acc, "p50_ms": base_ms, "bytes": _size(baseline.module)}
    )
    queue = list(candidates) if candidates is not None else default_candidates(objective, calibration)
    passing: list[tuple[Recipe, QuantizationResult, Trial]] = []
    sensitivity: dict[str, float] | None = None

    def out_of_budget() -> bool:
        return len(result.trace) >= budget_trials or time.perf_counter() - t0 >= budget_seconds

    def run(recipe: Recipe) -> tuple[Trial, QuantizationResult | None]:
        start = time.perf_counter()
        try:
            res = apply_recipe(baseline.module, recipe, calibration)
        except QuantgateError as exc:
            trial = Trial(recipe_to_dict(recipe), recipe.label, {}, False, time.perf_counter() - start, f"error: {exc}")
            return trial, None
        proba = baseline.with_module(res.module).predict_proba(eval_df)
        drops = _group_drops(base_proba, proba, y, eval_df, group_cols, min_group_rows)
        worst = max(drops, key=lambda k: drops[k]) if drops else ""
        m = {
            "accuracy": _accuracy(proba, y),
            "accuracy_drop": base_acc - _accuracy(proba, y),
            "worst_group_drop": drops[worst] if worst else 0.0,
            "agreement": float((proba.argmax(1) == base_proba.argmax(1)).mean()),
            "max_prob_diff": float(np.abs(proba - base_proba).max()),
            "p50_ms": _p50(res.module, lat_batch),
            "bytes": float(_size(res.module)),
        }
        m["speedup"] = base_ms / m["p50_ms"] if m["p50_ms"] > 0 else float("nan")
        reasons = []
        if m["accuracy_drop"] > tolerance_overall:
            reasons.append(f"accuracy drop {m['accuracy_drop']:.4f} > {tolerance_overall:.4f}")
        if tolerance_group is not None and m["worst_group_drop"] > tolerance_group:
            reasons.append(f"group {worst} drop {m['worst_group_drop']:.4f} > {tolerance_group:.4f}")
        if max_flip_rate is not None and 1.0 - m["agreement"] > max_flip_rate:
            reasons.append(f"flip rate {1.0 - m['agreement']:.4f} > {max_flip_rate:.4f}")
        passed = not reasons
        reason = (
            "; ".join(reasons)
            if reasons
            else (
                f"within tolerance (drop {m['accuracy_drop']:.4f}, worst group {m['worst_group_drop']:.4f}), "
                f"{m['speedup']:.2f}x, {int(m['bytes'])} bytes"
            )
        )
        trial = Trial(
            recipe_to_dict(recipe),
            recipe.label,
            m,
            passed,
            time.perf_counter() - start,
            reason,
            len(res.quantized),
            len(res.kept_float),
        )
        return trial, res

    with _progress(budget_trials) as (progress, task):
        for recipe in queue:
            if out_of_budget():
                break
            progress.update(task, description=recipe.label)
            trial, res = run(recipe)
            result.trace.append(trial)
            progress.advance(task)
            if trial.passed and res is not None:
                passing.append((recipe, res, trial))
                continue
            if res is None:  # unsupported: nothing to fall back from
                continue
            if sensitivity is None:
                progress.update(task, description="per-layer sensitivity")
                sensitivity = layer_sensitivity(baseline, sens_df, base_proba[: len(sens_df)])
                result.sensitivity = sensitivity
            ranked = [n for n in sensitivity if n not in recipe.exclude]
            for k in _fallback_sizes(len(ranked)):
                if out_of_budget():
                    break
                fb = type(recipe)(**{**_fields(recipe), "exclude": (*recipe.exclude, *ranked[:k])})
                progress.update(task, description=fb.label)
                trial, res = run(fb)
                trial.reason = f"fallback of {k} most sensitive: " + trial.reason
                result.trace.append(trial)
                progress.advance(task)
                if trial.passed and res is not None:
                    passing.append((fb, res, trial))
                    break
    if not passing:
        return result
    best = _pick(passing, objective, lat_batch)
    result.best, result.result, result.module = best[0], best[1], best[1].module
    return result


def _fields(recipe: Recipe) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(recipe, f.name) for f in fields(recipe)}


def _pick(
    passing: list[tuple[Recipe, QuantizationResult, Trial]], objective: Objective, batch: tuple[torch.Tensor, ...]
) -> tuple[Recipe, QuantizationResult, Trial]:
    """Smallest by bytes, or fastest re-measured side by side (alternating rounds) to beat noise."""
    if objective == "size" or len(passing) == 1:
        return min(passing, key=lambda p: p[2].metrics["bytes"])
    times: list[list[float]] = [[] for _ in passing]
    for _ in range(3):
        for i, (_, res, _) in enumerate(passing):
            times[i].append(_p50(res.module, batch, repeats=3))
    medians = [float(np.median(t)) for t in times]
    for (_, _, trial), med in zip(passing, medians, strict=True):
        trial.metrics["p50_ms_final"] = med
    return passing[int(np.argmin(medians))]
