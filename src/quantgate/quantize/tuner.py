"""Accuracy-aware tuning: the fastest (or smallest) recipe whose accuracy loss stays within the
policy's tolerances, overall and per group.

Anchor: Intel Neural Compressor's tolerable-loss tuning (try recipes from most aggressive to
safest; when one fails, fall back the ops that hurt most to fp32 until the loss is tolerable).
Beyond it: the loss is checked per group as well as overall, every recipe in the budget is
tried rather than stopping at the first pass (the objective then picks among the passing ones,
re-measured side by side), per-layer sensitivity is measured once and reused across backends,
and every trial (recipe JSON, metrics, pass/fail, seconds, reason) is kept for the model card,
a trial that crashed included (its reason is the error's line: one broken recipe is a result,
not the end of the search).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from quantgate.errors import ConfigError, QuantgateError
from quantgate.evaluate.runtime import forward_latency, paired_times, speed_ratio, timer_floor_ms
from quantgate.models.wrapped import WrappedModel
from quantgate.quantize.base import (
    COMPUTE_KINDS,
    Calibration,
    QuantizationResult,
    Recipe,
    heaviest_kind,
    linear_names,
    pickled_size,
    recipe_to_dict,
)
from quantgate.quantize.recipes import apply_recipe
from quantgate.quantize.torch_backend import DynamicInt8Recipe, Int8WeightOnlyRecipe

Objective = Literal["latency", "size"]
log = logging.getLogger(__name__)

#: ``judge(y, baseline_proba, candidate_proba, rows, candidate) -> (passed, reason, served)``: how a
#: trial is judged on the search rows when the search anticipates the gate
#: (``steps.quantize.gate_judge`` applies the policy's own rules, paired-bootstrap bounds included,
#: to a comparison on those rows, and scores the trial's ``candidate`` model at the policy's served
#: batch sizes: ``served`` is that batching record, or None when none was scored)
Judge = Callable[
    [np.ndarray, np.ndarray, np.ndarray, pd.DataFrame, WrappedModel], tuple[bool, str, dict[str, Any] | None]
]


@dataclass
class Trial:
    """One tried recipe: what it was, what it measured, and why it passed or failed."""

    recipe: dict[str, Any]
    label: str
    metrics: dict[str, float | None]
    passed: bool
    seconds: float
    reason: str
    quantized: int = 0
    kept_float: int = 0
    group_check: str = "not requested"
    """"passed", "failed", "not requested" (no group tolerance or no group column), or
    "not run (no group with >= N rows)": a group check that did not run is never a pass."""
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)
    served: dict[str, Any] = field(default_factory=dict)
    """the trial at the policy's served batch sizes, as the judge scored it
    (:meth:`quantgate.evaluate.batching.ServedBatching.to_dict`); empty when not scored"""
    pick: str = ""
    """where the pick ranked this passing trial and why (see :func:`rank_passing`), and, once the flow
    has certified it on the evaluation rows, the gate's outcome there; empty for a trial that failed"""
    error: str = ""
    """the error that ended the trial, one line (``"RuntimeError: ..."``: its type and the first
    line of its message); empty for a trial that was measured. Its ``reason`` is ``"error: " + error``."""

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
    heaviest_kind: str = ""
    chosen_because: str = ""
    ranked: list[tuple[Recipe, QuantizationResult, Trial]] = field(default_factory=list)
    """every passing trial in the pick's order (:func:`rank_passing`), ``best`` first: the order in
    which the flow certifies them on the evaluation rows"""

    def trace_dicts(self) -> list[dict[str, Any]]:
        return [t.to_dict() for t in self.trace]

    @property
    def group_check(self) -> str:
        """The chosen trial's group check ("passed", "not run (...)", ...), or "" without a choice."""
        chosen = [t for t in self.trace if t.passed and self.best is not None and t.recipe == recipe_to_dict(self.best)]
        return chosen[-1].group_check if chosen else ""

    @property
    def group_check_not_run(self) -> bool:
        return self.group_check.startswith("not run")


#: how much of an error's first line a trial keeps (ONNX Runtime's lines run to kilobytes)
ERROR_LINE_CHARS = 400


def error_line(exc: BaseException) -> str:
    """An error as one line: its type and the first line of its message, at most
    :data:`ERROR_LINE_CHARS` characters."""
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    line = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return line if len(line) <= ERROR_LINE_CHARS else line[: ERROR_LINE_CHARS - 3] + "..."


def default_candidates(
    objective: Objective, calibration: Calibration | None, module: nn.Module | None = None, target: str = "auto"
) -> list[Recipe]:
    """Lossless runtime change first (latency), then fastest (or smallest) first, safest last;
    ONNX recipes only when there is an example batch. Recipes that cannot quantize the model's
    heaviest layer kind (e.g. the convolutions of a CNN) are moved behind those that can."""
    from quantgate.quantize.float_backend import Bf16Recipe
    from quantgate.quantize.onnx_backend import OrtDynamicInt8Recipe, OrtFp32Recipe, OrtStaticInt8Recipe
    from quantgate.quantize.quanto_backend import Int4WeightOnlyRecipe

    kinds = COMPUTE_KINDS if objective == "latency" else (*COMPUTE_KINDS, "Embedding")
    torch_source = module is not None and getattr(module, "onnx_bytes", None) is None
    heavy = heaviest_kind(module, kinds) if torch_source and module is not None else ""
    conv_heavy = heavy in ("Conv1d", "Conv2d")
    if objective == "size":
        out: list[Recipe] = [Int4WeightOnlyRecipe(), DynamicInt8Recipe(), Int8WeightOnlyRecipe(), Bf16Recipe()]
        if calibration:
            out.insert(1, OrtDynamicInt8Recipe(quantize_embeddings=heavy == "Embedding"))
    else:
        ort: list[Recipe] = []
        if calibration:
            ort = [OrtFp32Recipe(), OrtDynamicInt8Recipe()]
            if conv_heavy:  # QDQ / FX static Conv run on int8 kernels; ConvInteger often does not pay off
                from quantgate.quantize.torch_static_backend import TorchStaticInt8Recipe

                ort[1:1] = [OrtStaticInt8Recipe(), TorchStaticInt8Recipe()]
        out = [*ort, DynamicInt8Recipe(), Bf16Recipe(), Int8WeightOnlyRecipe()]
    if heavy and heavy != "other":
        covers = [r for r in out if r.LOSSLESS or heavy in _kinds(r)]
        out = covers + [r for r in out if r not in covers]
    return [replace(r, target=target) if hasattr(r, "target") else r for r in out]


def _kinds(recipe: Recipe) -> tuple[str, ...]:
    return (*recipe.LAYER_KINDS, *(("Embedding",) if getattr(recipe, "quantize_embeddings", False) else ()))


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


def _p50(module: nn.Module, batch: tuple[torch.Tensor, ...], repeats: int = 5) -> float:
    return forward_latency({"m": module}, batch, rounds=repeats, repeats=1)["m"]["p50_ms"]


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


def layer_sensitivity(baseline: WrappedModel, df: pd.DataFrame) -> dict[str, float]:
    """The fallback order: each Linear's relative output error under simulated dynamic int8, from
    one forward pass over ``df``, most sensitive first.

    A forward hook on every Linear recomputes its output from fake-quantized inputs (per tensor,
    asymmetric 8-bit with this call's min/max: what dynamic quantization does per batch) and
    fake-quantized weights (per tensor, symmetric int8), and averages ``mean|y_q - y| / mean|y|``
    over the calls. One pass instead of one quantized copy and one scoring per layer (38 for
    MiniLM, minutes on 2 cores, which used to eat the search's budget before any fallback ran);
    the ranking is local to each layer, and every fallback trial is still judged on the whole
    model's predictions."""
    errors: dict[str, list[float]] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[Any, ...], torch.Tensor], None]:
        def measure(mod: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            x, w = inputs[0].detach().float(), mod.weight.detach().float()  # type: ignore[union-attr]
            lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
            x_scale = max((hi - lo) / 255.0, 1e-12)
            xq = torch.fake_quantize_per_tensor_affine(x, x_scale, round(-lo / x_scale), 0, 255)
            w_scale = max(float(w.abs().max()) / 127.0, 1e-12)
            wq = torch.fake_quantize_per_tensor_affine(w, w_scale, 0, -128, 127)
            y = output.detach().float()
            yq = nn.functional.linear(xq, wq, None if mod.bias is None else mod.bias.detach().float())  # type: ignore[arg-type]
            errors.setdefault(name, []).append(float((yq - y).abs().mean() / (y.abs().mean() + 1e-12)))

        return measure

    modules = dict(baseline.module.named_modules())
    handles = [modules[n].register_forward_hook(hook(n)) for n in linear_names(baseline.module)]
    try:
        with torch.no_grad():
            baseline.predict_proba(df)
    finally:
        for h in handles:
            h.remove()
    out = {name: float(np.mean(v)) for name, v in errors.items()}
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
    min_speedup: float | None = None,
    min_param_share: float = 0.5,
    target: str = "auto",
    judge: Judge | None = None,
    group_estimate_blocks: bool = True,
    pick_timer: Callable[..., dict[str, list[float]]] = paired_times,
) -> TuneResult:
    """Search recipes under the tolerances; returns the best passing one (or None) and the trace.

    ``tolerance_*`` are maximum accuracy drops (fp32 minus candidate, as fractions: 0.005 is
    half a point); ``max_flip_rate`` optionally bounds the share of predictions that change.
    Every candidate is tried once first; then each that failed on accuracy, in order, gets its
    fallback: the most sensitive Linear layers (see :func:`layer_sensitivity`) are excluded, 1,
    2, 3, 4, 6, 9, ... at a time, until the recipe passes or the budget runs out.

    ``min_speedup`` (the policy's speed objective, e.g. its minimum-speedup rule): a lossless
    recipe (``ort-fp32``, tried first) that passes and reaches it ends the search, since no
    accuracy needs to be spent. Among passing trials the pick prefers lossless ones and those
    that quantized at least ``min_param_share`` of the heavy layers' parameters (matmul/conv
    weights for latency, all parameters for size); a trial below that share is chosen only
    when nothing else passed. ``target`` (a :mod:`quantgate.hardware` ISA, or ``auto``) is set
    on the default candidates that take one.

    ``judge`` (see :data:`Judge`): when given, a trial must also pass it: the gate's rules, e.g.
    the upper bound of the paired-bootstrap interval of the drop against the tolerance, where
    ``tolerance_*`` checks only the point estimates (kept: they are what applies when the policy
    has no blocking accuracy rule). The judge gets the trial's model too, so it can score it at
    the served batch sizes (the worst batching decides, as in the gate); what it scored there is
    kept in the trial (``Trial.served``).
    A speedup not measured reliably (see :func:`quantgate.evaluate.runtime.speed_ratio`) is NaN
    and never meets ``min_speedup``. ``group_estimate_blocks=False``: a group whose drop estimate
    exceeds ``tolerance_group`` does not fail the trial (the check says so); the judge applies the
    policy's own group rule instead (``judge_on: significant`` blocks only a drop the rows can tell
    from 0, where a group of a few dozen rows swings by points on the estimate alone).

    The passing trials are ranked by :func:`rank_passing` (``TuneResult.ranked``, ``best`` first;
    each trial's ``pick`` says where it ranked and why): the flow certifies them in that order on
    the evaluation rows. ``pick_timer`` times the passing modules side by side for the pick
    (:func:`~quantgate.evaluate.runtime.paired_times`'s signature; a test passes one that ties).

    A trial that raises (the recipe cannot be built for this model, or its candidate fails to
    run or be scored: an ONNX export that breaks inside ONNX Runtime at another batch size, say)
    is a failed trial: its reason is ``error: <type>: <first line>`` (:attr:`Trial.error`), it gets
    no fallback, and the search goes on with the next recipe. When every trial fails, ``best`` is
    None and the trace says why each did.
    """
    if objective not in ("latency", "size"):
        raise ConfigError(f"objective {objective!r} is not 'latency' or 'size'")
    t0 = time.perf_counter()
    group_cols = [g for g in (group_cols or []) if g in eval_df.columns]
    base_proba = baseline.predict_proba(eval_df)
    classes = list(baseline.spec.get("classes") or range(base_proba.shape[1]))
    y = eval_df[label_col].map({c: i for i, c in enumerate(classes)}).to_numpy()
    if pd.isna(y).any():
        raise ConfigError(f"labels in {label_col!r} are not all among the model's classes {classes}")
    y = y.astype(int)
    sens_df = eval_df.head(sensitivity_rows)
    lat_batch = baseline.batches(eval_df.head(latency_batch), latency_batch)[0]
    floor_ms = timer_floor_ms()
    base_ms = _p50(baseline.module, lat_batch)
    base_acc = _accuracy(base_proba, y)
    result = TuneResult(
        None, None, None, baseline={"accuracy": base_acc, "p50_ms": base_ms, "bytes": pickled_size(baseline.module)}
    )
    queue = (
        list(candidates)
        if candidates is not None
        else default_candidates(objective, calibration, baseline.module, target)
    )
    if getattr(baseline.module, "onnx_bytes", None) is None:
        kinds = COMPUTE_KINDS if objective == "latency" else (*COMPUTE_KINDS, "Embedding")
        result.heaviest_kind = heaviest_kind(baseline.module, kinds)
    passing: list[tuple[Recipe, QuantizationResult, Trial]] = []
    failed: list[Recipe] = []
    sensitivity: dict[str, float] | None = None

    def out_of_budget() -> bool:
        return len(result.trace) >= budget_trials or time.perf_counter() - t0 >= budget_seconds

    def run(recipe: Recipe) -> tuple[Trial, QuantizationResult | None]:
        """One trial; a recipe that cannot be built, run or scored on this model (a backend that
        refuses it, an export that fails inside ONNX Runtime at another batch size, ...) is a
        failed trial with its error's line, never the end of the search."""
        start = time.perf_counter()
        try:
            return measure(recipe, start)
        except Exception as exc:
            line = error_line(exc)
            log.debug("trial %s failed: %s", recipe.label, line, exc_info=not isinstance(exc, QuantgateError))
            trial = Trial(
                recipe_to_dict(recipe), recipe.label, {}, False, time.perf_counter() - start, f"error: {line}"
            )
            trial.error = line
            return trial, None

    def measure(recipe: Recipe, start: float) -> tuple[Trial, QuantizationResult | None]:
        res = apply_recipe(baseline.module, recipe, calibration)
        trial_model = baseline.with_module(res.module)
        proba = trial_model.predict_proba(eval_df)
        drops = _group_drops(base_proba, proba, y, eval_df, group_cols, min_group_rows)
        worst = max(drops, key=lambda k: drops[k]) if drops else ""
        m: dict[str, Any] = {
            "accuracy": _accuracy(proba, y),
            "accuracy_drop": base_acc - _accuracy(proba, y),
            "worst_group_drop": drops[worst] if worst else None,
            "param_share": res.quantized_param_share,
            "compute_param_share": res.compute_param_share,
            "agreement": float((proba.argmax(1) == base_proba.argmax(1)).mean()),
            "max_prob_diff": float(np.abs(proba - base_proba).max()),
            "bytes": float(pickled_size(res.module)),
        }
        # baseline and candidate interleaved call by call, so load on a shared host hits both
        times = paired_times({"baseline": baseline.module, "candidate": res.module}, lat_batch, min_rounds=6)
        ratio = speed_ratio(times["baseline"], times["candidate"], floor_ms=floor_ms)
        m["p50_ms"], m["baseline_p50_ms"] = float(np.median(times["candidate"])), float(np.median(times["baseline"]))
        m["speedup"] = ratio.value  # NaN when not measured reliably
        m["speedup_measured"], m["speedup_reliable"] = ratio.measured, ratio.reliable
        reasons = []
        gate_ok, gate_why, served = (
            judge(y, base_proba, proba, eval_df, trial_model) if judge is not None else (True, "", None)
        )
        if m["accuracy_drop"] > tolerance_overall:
            reasons.append(f"accuracy drop {m['accuracy_drop']:.4f} > {tolerance_overall:.4f}")
        if not gate_ok:
            reasons.append(gate_why)
        if tolerance_group is None or not group_cols:
            group_check = "not requested"
        elif not drops:
            group_check = f"not run (no group with >= {min_group_rows} rows)"
        elif drops[worst] > tolerance_group and group_estimate_blocks:
            group_check = "failed"
            reasons.append(f"group {worst} drop {drops[worst]:.4f} > {tolerance_group:.4f}")
        elif drops[worst] > tolerance_group:
            group_check = (
                f"estimate over tolerance ({worst} {drops[worst]:.4f} > {tolerance_group:.4f}): "
                "left to the policy's group rule"
            )
        else:
            group_check = "passed"
        if max_flip_rate is not None and 1.0 - m["agreement"] > max_flip_rate:
            reasons.append(f"flip rate {1.0 - m['agreement']:.4f} > {max_flip_rate:.4f}")
        passed = not reasons
        reason = (
            "; ".join(reasons)
            if reasons
            else (
                (f"{gate_why}; " if judge is not None else "")
                + f"within tolerance (drop {m['accuracy_drop']:.4f}, "
                + (f"worst group {drops[worst]:.4f}" if group_check == "passed" else f"group check {group_check}")
                + f"), {_speed(ratio)}, {int(m['bytes'])} bytes, "
                f"{res.quantized_param_share:.0%} of parameters quantized"
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
            group_check,
            res.coverage,
            res.hardware,
            served or {},
        )
        if res.resolved is not None:
            trial.recipe = recipe_to_dict(res.resolved)
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
                passing.append((res.resolved or recipe, res, trial))
                speedup = trial.metrics.get("speedup") or 0.0
                if recipe.LOSSLESS and min_speedup is not None and speedup >= min_speedup:
                    result.best, result.result, result.module = res.resolved or recipe, res, res.module
                    result.chosen_because = trial.pick = (
                        f"#1: {recipe.label} reached the speed objective ({speedup:.2f}x >= {min_speedup:.2f}x) "
                        "without quantizing: no accuracy spent"
                    )
                    result.ranked = [passing[-1]]
                    return result
                continue
            if res is not None:  # failed on accuracy: a fallback may pass (an unsupported recipe has none)
                failed.append(recipe)
        # every recipe once before any fallback: one recipe's ladder of fallbacks must not use up
        # the budget before a later recipe (bf16 on a host with bf16 kernels, say) is tried at all
        for recipe in failed:
            if out_of_budget():
                break
            if sensitivity is None:
                progress.update(task, description="per-layer sensitivity")
                sensitivity = layer_sensitivity(baseline, sens_df)
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
                    passing.append((res.resolved or fb, res, trial))
                    break
    if not passing:
        return result
    result.ranked = _rank_trials(passing, objective, lat_batch, min_param_share, floor_ms, pick_timer)
    best = result.ranked[0]
    result.best, result.result, result.module = best[0], best[1], best[1].module
    result.chosen_because = best[2].pick
    return result


def _speed(ratio: Any) -> str:
    return f"{ratio.value:.2f}x" if ratio.reliable else f"speed not measured reliably ({ratio.reason})"


def _fields(recipe: Recipe) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(recipe, f.name) for f in fields(recipe)}


#: two speeds differ only when the median per-round ratio exceeds 1 by more than this, and by
#: more than the per-round ratios' spread (IQR / median): under it, timing cannot tell them apart
SPEED_MARGIN = 0.10


@dataclass(frozen=True)
class Contender:
    """A passing trial as the pick sees it (pure values): what it is, what it stores quantized,
    its size, and its per-round times measured side by side with the other contenders."""

    label: str
    lossless: bool
    share: float
    """quantized share of the parameters, as the objective counts it (matmul/conv weights for
    latency, all parameters for size)"""
    bytes: float
    times_ms: tuple[float, ...] = ()


def speed_separated(slower: Contender, faster: Contender, floor_ms: float) -> tuple[bool, str]:
    """Whether ``faster`` is faster than ``slower`` beyond the timing noise (pure): the ratio of
    their per-round times is reliable (:func:`~quantgate.evaluate.runtime.speed_ratio`) and exceeds
    1 by more than :data:`SPEED_MARGIN` and by more than its own spread. Returns the answer and
    the figure that decided it."""
    r = speed_ratio(slower.times_ms, faster.times_ms, floor_ms=floor_ms)
    if not r.reliable:
        return False, f"timing could not separate it from {faster.label} ({r.reason or 'not measured'})"
    margin = max(SPEED_MARGIN, r.spread)
    if r.value > 1.0 + margin:
        return True, f"{faster.label} {r.value:.2f}x faster (beyond the timing noise, {margin:.2f})"
    return False, f"within the timing noise of {faster.label} ({r.value:.2f}x, noise {margin:.2f})"


def rank_passing(
    contenders: list[Contender], objective: Objective, floor_ms: float, min_param_share: float = 0.5
) -> list[tuple[int, str]]:
    """The pick's order of the passing trials (pure): ``(index into contenders, why)``, best first.

    Lexicographic, among what is left at each step:

    1. trials that cover the heavy layers (lossless, or at least ``min_param_share`` quantized)
       before those that do not;
    2. ``latency``: speed, only where timing can separate it (:func:`speed_separated`): the
       contenders whose speed is tied with the fastest one left form the front tier; ``size``:
       no speed step;
    3. smaller size (bytes);
    4. higher quantized share; then the search's own order.

    So a quantized recipe as fast as ``ort-fp32`` within the noise (or not timed reliably) wins
    over it by size, and ``ort-fp32`` wins only when it is measurably faster."""
    covered = [i for i, c in enumerate(contenders) if c.lossless or c.share >= min_param_share]
    rest = [i for i in range(len(contenders)) if i not in covered]

    def median(i: int) -> float:
        t = contenders[i].times_ms
        return float(np.median(t)) if len(t) else float("inf")

    def smaller(i: int) -> tuple[float, float, int]:
        return (contenders[i].bytes, -contenders[i].share, i)

    order: list[tuple[int, str]] = []
    for tier, note in (
        (covered, ""),
        (rest, f"; quantized < {min_param_share:.0%} of the parameters: ranked after those that cover them"),
    ):
        left = list(tier)
        while left:
            if objective == "size" or len(left) == 1:
                pick = min(left, key=smaller)
                why = (
                    "the only passing trial"
                    if len(contenders) == 1
                    else ("the last left in its tier" if len(left) == 1 else "smallest")
                )
            else:
                fastest = min(left, key=lambda i: (median(i), i))
                verdicts = {j: speed_separated(contenders[j], contenders[fastest], floor_ms) for j in left}
                tied = [fastest] + [j for j in left if j != fastest and not verdicts[j][0]]
                pick = min(tied, key=smaller)
                others = [j for j in tied if j != pick]
                if not others:
                    rest_left = [j for j in left if j != pick]
                    second = min(rest_left, key=lambda j: (median(j), j)) if rest_left else None
                    why = "fastest" + (
                        f" ({contenders[second].label}: {verdicts[second][1]})" if second is not None else ""
                    )
                else:
                    c = contenders[pick]
                    ties = ", ".join(
                        f"{o.label} ({_size_text(o.bytes)}, {o.share:.0%} quantized)"
                        for o in (contenders[j] for j in others)
                    )
                    speed = (
                        f"the fastest; {', '.join(contenders[j].label for j in others)} within its timing noise"
                        if pick == fastest
                        else verdicts[pick][1]
                    )
                    why = (
                        f"speed tied ({speed}): smallest, {_size_text(c.bytes)} and {c.share:.0%} quantized, vs {ties}"
                    )
            order.append((pick, f"{why}{note}"))
            left.remove(pick)
    return [(i, f"#{k + 1}: {contenders[i].label}, {why}") for k, (i, why) in enumerate(order)]


def _size_text(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def _rank_trials(
    passing: list[tuple[Recipe, QuantizationResult, Trial]],
    objective: Objective,
    batch: tuple[torch.Tensor, ...],
    min_param_share: float,
    floor_ms: float,
    timer: Callable[..., dict[str, list[float]]] = paired_times,
) -> list[tuple[Recipe, QuantizationResult, Trial]]:
    """The passing trials in the pick's order (:func:`rank_passing`), their modules re-timed side by
    side (interleaved call by call) for a latency objective; each trial's ``pick`` says why."""

    def share(res: QuantizationResult) -> float:
        return res.compute_param_share if objective == "latency" else res.quantized_param_share

    times: dict[str, list[float]] = {}
    if objective == "latency" and len(passing) > 1:
        times = timer({str(i): p[1].module for i, p in enumerate(passing)}, batch, min_rounds=6)
    contenders = [
        Contender(
            t.label,
            bool(r.LOSSLESS),
            share(res),
            float(t.metrics.get("bytes") or 0.0),
            tuple(times.get(str(i), ())),
        )
        for i, (r, res, t) in enumerate(passing)
    ]
    for c, (_, _, t) in zip(contenders, passing, strict=True):
        if c.times_ms:
            t.metrics["p50_ms_final"] = float(np.median(c.times_ms))
    ranked = []
    for i, why in rank_passing(contenders, objective, floor_ms, min_param_share):
        passing[i][2].pick = why
        ranked.append(passing[i])
    return ranked
