"""Latency and size, measured on the same batches for baseline and candidate.

Every latency figure in quantgate (the evaluation, the tuner's trials and final pick, and
``quantgate bench``) comes from :func:`forward_latency`: the modules are interleaved call by call
(A/B alternation, the order reversed every round, after a warm-up call), so machine noise on a
shared host hits all of them alike, and the p50 of the per-call times is the figure. A module
whose call is shorter than :data:`SAMPLE_SECONDS` is timed over several calls per sample, and the loop
runs at least ``min_seconds`` (and at least ``rounds * repeats`` rounds).

When several modules are timed, before each sample the process is let go idle (:func:`settle`):
after a call, ONNX Runtime's worker threads spin for tens of milliseconds and
torch's OpenMP threads for a few, so the module timed next would share the 2 cores with the
previous one's spinning threads. Measured on a
2-core AMD EPYC with MiniLM at batch 32, alternating without the wait inflated torch eager from
339 ms alone to 488 ms (and ORT fp32 from 238 to 282 ms), which overstated every speedup vs
eager. A few milliseconds of untimed calls then wake the module's own threads, so a sample
measures back-to-back calls, not a cold start (without them, the adult-income MLP's 0.08 ms
call measured 6 ms). A sample of a fast module lasts :data:`SAMPLE_SECONDS`, so the wait costs
less than the measurement. A module timed alone (the tuner's trials) waits only before its first
sample: nothing else runs in between. (Skipping the wait at the turn of each round, where a module
follows itself, was tried and not kept: with three or more modules only the first and the last
get that turn, so the samples would not all start alike.)

A speed *ratio* is only as good as its spread: :func:`speed_ratio` (pure) takes the per-round
times of two modules and says whether the ratio was measured reliably. A ratio whose per-round
values spread too much (IQR / median above :data:`MAX_RATIO_SPREAD`: the host's load changed
under the measurement) or whose per-call time is below what the timer can resolve is "not
measured reliably": it is reported as NaN (the gate then treats a speed rule as not measured and
the search does not use it) with the raw figure kept alongside for the card.
``torch.utils.benchmark.Timer`` was considered: it times one statement at a time (no alternation)
and defaults to one thread, which would misstate a 2-thread ONNX Runtime session.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from quantgate.models.wrapped import WrappedModel

#: a ratio whose per-round values spread more than this (interquartile range / median) is not
#: measured reliably
MAX_RATIO_SPREAD = 0.5
#: fewer paired rounds than this cannot show a spread
MIN_ROUNDS = 5
#: a per-call time under this many timer ticks (or ten times the cost of reading the timer) is
#: below what the timer resolves
MIN_TIMER_TICKS = 100
#: a sample of a fast module lasts at least this long (several calls timed together), so that
#: the wait before it (:func:`settle`) costs less than the sample itself
SAMPLE_SECONDS = 0.02
#: before each sample, untimed calls of the module for at least this long (none for a module
#: whose call is longer): its own threads wake up, as between a server's back-to-back calls
WARM_SECONDS = 0.005
#: :func:`settle` polls the process's CPU time in steps this long ...
SETTLE_STEP_SECONDS = 0.005
#: ... until a step uses less than this share of one core ...
SETTLE_IDLE_SHARE = 0.1
#: ... or this long has passed
SETTLE_MAX_SECONDS = 0.3


def artifact_size(path: Path) -> int:
    """Bytes on disk of a file or a directory tree."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timer_floor_ms() -> float:
    """The shortest per-call time this host's ``perf_counter`` resolves, in milliseconds."""
    res = time.get_clock_info("perf_counter").resolution
    t0 = time.perf_counter()
    for _ in range(1000):
        time.perf_counter()
    overhead = (time.perf_counter() - t0) / 1000
    return max(MIN_TIMER_TICKS * res, 10 * overhead) * 1000


@dataclass(frozen=True)
class Ratio:
    """``numerator`` p50 / ``denominator`` p50, and whether it was measured reliably."""

    value: float
    """NaN when not measured reliably"""
    measured: float
    """the raw ratio of the medians, reliable or not"""
    spread: float
    """interquartile range / median of the per-round ratios"""
    reliable: bool
    reason: str = ""


def speed_ratio(
    numerator_ms: Sequence[float],
    denominator_ms: Sequence[float],
    *,
    floor_ms: float,
    max_spread: float = MAX_RATIO_SPREAD,
    min_rounds: int = MIN_ROUNDS,
) -> Ratio:
    """How many times faster the denominator ran, from per-round times measured in the same rounds
    (pure). Not reliable when fewer than ``min_rounds`` rounds were paired, when either median
    per-call time is under ``floor_ms`` (the timer cannot resolve it), or when the per-round
    ratios spread more than ``max_spread`` (IQR / median)."""
    a, b = np.asarray(numerator_ms, float), np.asarray(denominator_ms, float)
    n = min(len(a), len(b))
    if n == 0:
        return Ratio(math.nan, math.nan, math.nan, False, "no timed rounds")
    a, b = a[:n], b[:n]
    ma, mb = float(np.median(a)), float(np.median(b))
    measured = ma / mb if mb > 0 else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        per_round = a / b
    finite = per_round[np.isfinite(per_round)]
    med = float(np.median(finite)) if len(finite) else math.nan
    q1, q3 = (float(np.percentile(finite, 25)), float(np.percentile(finite, 75))) if len(finite) else (0.0, 0.0)
    spread = (q3 - q1) / med if med and med > 0 else math.nan
    reasons = []
    if n < min_rounds:
        reasons.append(f"only {n} paired round(s) (< {min_rounds})")
    if min(ma, mb) < floor_ms:
        reasons.append(f"a call takes {min(ma, mb) * 1000:.2f} us, below the timer's {floor_ms * 1000:.2f} us")
    if not math.isfinite(measured) or not math.isfinite(spread):
        reasons.append("a time is zero or undefined")
    elif spread > max_spread:
        reasons.append(f"per-round ratios spread {spread:.2f} (IQR/median) > {max_spread:g}: the host's load changed")
    ok = not reasons
    return Ratio(measured if ok else math.nan, measured, spread, ok, "; ".join(reasons))


def _seconds_per_call(module: nn.Module, batch: tuple[torch.Tensor, ...], calls: int = 1) -> float:
    """Wall seconds of ``calls`` back-to-back calls of ``module`` on ``batch``, divided by ``calls``."""
    t = time.perf_counter()
    for _ in range(calls):
        module(*batch)
    return (time.perf_counter() - t) / calls


def _sample(
    module: nn.Module, batch: tuple[torch.Tensor, ...], calls: int = 1, warm: int = 1, *, wait: bool = True
) -> float:
    """One sample: when ``wait``, wait for the process to go idle (:func:`settle`) and make
    ``warm`` untimed calls (the module's own threads wake up); then :func:`_seconds_per_call`.
    ``wait=False`` is for a module timed alone, after its first sample."""
    if not wait:
        return _seconds_per_call(module, batch, calls)
    settle()
    for _ in range(warm):
        module(*batch)
    return _seconds_per_call(module, batch, calls)


def settle(max_seconds: float = SETTLE_MAX_SECONDS) -> float:
    """Sleep until this process's threads are idle: a :data:`SETTLE_STEP_SECONDS` step in which
    the process used under :data:`SETTLE_IDLE_SHARE` of one core's CPU time (runtime worker
    threads that spin after a call have parked). Returns the seconds waited; stops at
    ``max_seconds`` whatever the threads do."""
    start = time.perf_counter()
    while True:
        cpu = time.process_time()
        time.sleep(SETTLE_STEP_SECONDS)
        if time.process_time() - cpu < SETTLE_IDLE_SHARE * SETTLE_STEP_SECONDS:
            break
        if time.perf_counter() - start >= max_seconds:
            break
    return time.perf_counter() - start


@torch.inference_mode()
def paired_times(
    modules: Mapping[str, nn.Module],
    batch: tuple[torch.Tensor, ...],
    *,
    min_rounds: int = 15,
    min_seconds: float = 0.2,
    max_seconds: float = 60.0,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Per-round milliseconds per call of each module, interleaved call by call.

    Each round runs every module once (several calls for a module faster than
    :data:`SAMPLE_SECONDS`, divided back to one call), in the given order on even rounds and
    reversed on odd ones. When several modules are timed, each sample starts after
    :func:`settle` and :data:`WARM_SECONDS` of untimed calls (a module timed alone needs them only
    before its sizing sample). Rounds continue until both
    ``min_rounds`` and ``min_seconds`` of timed calls are reached, or ``max_seconds`` has passed
    (after at least 3 rounds)."""
    names = list(modules)
    number: dict[str, int] = {}
    warm: dict[str, int] = {}
    for name in names:
        module = modules[name]
        for _ in range(max(0, warmup - 1)):
            module(*batch)
        dt = max(_sample(module, batch), 1e-9)  # the last warm-up call, timed to size the samples
        number[name] = max(1, min(1000, math.ceil(SAMPLE_SECONDS / dt)))
        warm[name] = math.ceil(WARM_SECONDS / dt) if dt < WARM_SECONDS else 0
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    rounds = 0
    timed = 0.0
    wait = len(names) > 1  # alone, a module follows only itself: nothing to wait out
    while True:
        for name in names if rounds % 2 == 0 else reversed(names):
            seconds = _sample(modules[name], batch, number[name], warm[name], wait=wait)
            times[name].append(seconds * 1000)
            timed += seconds * number[name]
        rounds += 1
        if rounds >= min_rounds and timed >= min_seconds:
            break
        if time.perf_counter() - start >= max_seconds and rounds >= 3:
            break
    return times


def forward_latency(
    modules: Mapping[str, nn.Module],
    batch: tuple[torch.Tensor, ...],
    *,
    rounds: int = 5,
    repeats: int = 3,
    warmup: int = 1,
    min_seconds: float = 0.2,
) -> dict[str, dict[str, float]]:
    """Milliseconds per forward call of each module on ``batch``, measured side by side
    (:func:`paired_times` over at least ``rounds * repeats`` rounds). Returns name ->
    ``{"p50_ms", "p95_ms", "n", "spread"}`` (spread: IQR / median of the module's own times)."""
    times = paired_times(
        modules, batch, min_rounds=max(1, rounds) * max(1, repeats), min_seconds=min_seconds, warmup=warmup
    )
    out: dict[str, dict[str, float]] = {}
    for name, t in times.items():
        p50 = float(np.percentile(t, 50))
        iqr = float(np.percentile(t, 75) - np.percentile(t, 25))
        out[name] = {
            "p50_ms": p50,
            "p95_ms": float(np.percentile(t, 95)),
            "n": float(len(t)),
            "spread": iqr / p50 if p50 > 0 else math.nan,
        }
    return out


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
    """Baseline and candidate (and optional references, e.g. ``{"ort_fp32": ...}``) interleaved
    so machine noise hits all of them; ``speedup`` = baseline p50 / candidate p50, and for each
    reference ``<name>_p50_ms`` and ``speedup_vs_<name>`` = reference p50 / candidate p50 (how
    much of the speedup is precision rather than runtime).

    A ratio not measured reliably (see :func:`speed_ratio`) is NaN, with ``<ratio>_measured``
    (the raw figure), ``<ratio>_spread`` and ``<ratio>_reliable`` (1.0 or 0.0) alongside."""
    batch = baseline.batches(df.head(batch_size), batch_size)[0]
    modules = {"baseline": baseline.module, "candidate": candidate.module}
    for name, ref in (references or {}).items():
        modules[name] = ref.module
    times = paired_times(modules, batch, min_rounds=max(1, rounds) * 3, min_seconds=0.5)
    floor = timer_floor_ms()
    cand = times["candidate"]
    out: dict[str, float] = {
        "baseline_p50_ms": float(np.median(times["baseline"])),
        "candidate_p50_ms": float(np.median(cand)),
        "batch_size": float(batch_size),
        "timer_floor_ms": floor,
    }
    pairs = {"speedup": "baseline", **{f"speedup_vs_{name}": name for name in references or {}}}
    for key, name in pairs.items():
        if name != "baseline":
            out[f"{name}_p50_ms"] = float(np.median(times[name]))
        r = speed_ratio(times[name], cand, floor_ms=floor)
        out[key] = r.value
        out[f"{key}_measured"] = r.measured
        out[f"{key}_spread"] = r.spread
        out[f"{key}_reliable"] = 1.0 if r.reliable else 0.0
    return out


def unreliable_ratios(runtime: Mapping[str, float]) -> list[str]:
    """The ratios of a :func:`side_by_side_latency` result that were not measured reliably."""
    return [k.removesuffix("_reliable") for k, v in runtime.items() if k.endswith("_reliable") and not v]
