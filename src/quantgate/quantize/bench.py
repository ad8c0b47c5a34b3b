"""``run_bench``: both demo models, side by side in one run, fp32 vs the naive int8 recipes vs
the tuner's choice; writes ``docs/benchmarks.md`` and a Pareto plot (latency vs accuracy).

Latency comes from :func:`quantgate.evaluate.runtime.forward_latency` (alternating rounds, every
config once per round, so machine noise hits all of them alike); batch 1 and 32,
``torch.set_num_threads(2)`` (ORT uses the same count). ``ort-fp32`` is measured alongside, so the
table separates the runtime's share of a speedup from the precision's: every config's speedup is
reported against torch eager fp32 and against ORT fp32, both from the same alternating rounds.

Batch dependence: each int8 config also scores every evaluation row as a server would at batch 1
and at batch 32 (:func:`quantgate.evaluate.batching.served_batching`, the gate's own code), so the
report shows the accuracy at each batching and the share of predictions that change between them.
The host (CPU model, detected ISA, threads) and the load average before and after the run are
recorded with the command that produced the report.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from quantgate.evaluate.runtime import forward_latency
from quantgate.models.wrapped import WrappedModel
from quantgate.quantize.base import Recipe, pickled_size
from quantgate.quantize.recipes import apply_recipe
from quantgate.quantize.torch_backend import DynamicInt8Recipe, Int8WeightOnlyRecipe


@dataclass
class BenchRow:
    model: str
    config: str
    accuracy: float
    worst_group_accuracy: float
    worst_group: str
    latency: dict[str, float] = field(default_factory=dict)
    throughput_rows_s: float = 0.0
    size_bytes: int = 0
    quantized: int = 0
    kept_float: int = 0
    param_share: float = 0.0
    served: dict[str, Any] = field(default_factory=dict)
    """accuracy at batch 1 and 32 (served order) and the share of predictions that changed"""


def _models(quick: bool) -> dict[str, dict[str, Any]]:
    from quantgate.data.datasets import (
        ADULT_CATEGORICAL,
        ADULT_LABEL,
        ADULT_NUMERIC,
        add_text_slices,
        load_adult,
        load_rotten_tomatoes,
    )
    from quantgate.models.tabular import TabularPreprocessor, train_mlp
    from quantgate.models.text import SentenceClassifier, embed_texts, load_encoder, train_head

    train, test = load_adult()
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(train))
    calib, train = train.iloc[perm[:2000]], train.iloc[perm[2000:]]
    if quick:
        train, test = train.iloc[:6000], test.sample(2000, random_state=0)
    pre = TabularPreprocessor.fit(train, ADULT_NUMERIC, ADULT_CATEGORICAL)
    mlp = train_mlp(pre.transform(train), train[ADULT_LABEL].to_numpy(), seed=0)
    adult = WrappedModel(mlp, {"task": "tabular-classification", "preprocessor": pre.to_dict(), "classes": [0, 1]})

    rt = load_rotten_tomatoes().sample(frac=1.0, random_state=0).reset_index(drop=True)
    n_train, n_cal, n_eval = (600, 200, 400) if quick else (4000, 1000, 2000)
    rt_train, rt_cal = rt.iloc[:n_train], rt.iloc[n_train : n_train + n_cal]
    rt_eval = add_text_slices(rt.iloc[n_train + n_cal : n_train + n_cal + n_eval])
    encoder, tok = load_encoder()
    sc = SentenceClassifier(encoder)
    train_head(sc, embed_texts(sc, tok, rt_train["text"].tolist()), rt_train["label"].to_numpy(), seed=0)
    spec = {"task": "text-classification", "text_column": "text", "max_length": 128, "classes": [0, 1]}
    text = WrappedModel(sc, spec, tok)
    return {
        "adult-income": {
            "model": adult,
            "eval": test,
            "label": ADULT_LABEL,
            "groups": ["sex", "race"],
            "calibration": adult.batches(calib.head(1024), 64),
            "tune": calib,
        },
        "rt-sentiment": {
            "model": text,
            "eval": rt_eval,
            "label": "label",
            "groups": ["length_bucket", "has_negation"],
            "calibration": text.batches(rt_cal.head(128), 32),
            "tune": add_text_slices(rt_cal),
        },
    }


def _accuracy(model: WrappedModel, df: pd.DataFrame, label: str, groups: list[str]) -> tuple[float, float, str]:
    pred = model.predict(df)["label"].to_numpy()
    y = df[label].to_numpy()
    acc = float((pred == y).mean())
    worst, worst_name = 1.0, ""
    for g in groups:
        for v, idx in df.groupby(g).indices.items():
            if len(idx) >= 30:
                a = float((pred[idx] == y[idx]).mean())
                if a < worst:
                    worst, worst_name = a, f"{g}={v}"
    return acc, worst, worst_name


SERVED_BATCH_SIZES = [1, 32]


def _served(base: WrappedModel, module: nn.Module, df: pd.DataFrame, label: str) -> dict[str, Any]:
    """Accuracy at each served batch size on every evaluation row and the share of predictions
    that change between batch 1 and 32, through the gate's batching code."""
    from quantgate.evaluate.batching import served_batching
    from quantgate.models.outputs import class_index

    y = class_index(df[label], base.classes, what=f"evaluation labels (column '{label}')")
    base_proba = base.predict_proba(df)

    def compare(yy: Any, b: Any, c: Any, pos: Any) -> dict[str, float]:
        return {"accuracy": float((c.argmax(1) == yy).mean()), "fp32_accuracy": float((b.argmax(1) == yy).mean())}

    sb = served_batching(
        base.with_module(module),
        df,
        y,
        base_proba,
        batch_sizes=SERVED_BATCH_SIZES,
        max_rows=None,
        seed=0,
        compare=compare,
    )
    return {
        "rows": sb.rows,
        "accuracy": {b: c["accuracy"] for b, c in sb.comparisons.items()},
        "changed_share": sb.changed_share,
        "max_proba_change": sb.max_proba_change,
    }


def load_average() -> tuple[float, float, float] | None:
    """The host's 1/5/15-minute load average (None where the OS has none)."""
    try:
        import os

        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def run_bench(
    out_md: Path,
    out_png: Path,
    quick: bool = True,
    tolerance: float = 0.005,
    command: str | None = None,
) -> list[BenchRow]:
    """Measure, write the Markdown table and the Pareto PNG; returns the rows. ``command`` is
    written into the report as the way to reproduce it."""
    from quantgate.quantize.onnx_backend import OrtDynamicInt8Recipe, OrtFp32Recipe
    from quantgate.quantize.tuner import tune

    torch.set_num_threads(2)
    load_before = load_average()
    t0 = time.perf_counter()
    rows: list[BenchRow] = []
    notes: list[str] = []
    for name, case in _models(quick).items():
        base: WrappedModel = case["model"]
        configs: dict[str, tuple[nn.Module, int, int, float]] = {"fp32": (base.module, 0, 0, 0.0)}
        recipes: list[tuple[str, Recipe]] = [
            ("ort-fp32", OrtFp32Recipe()),
            ("dynamic-int8 (all layers)", DynamicInt8Recipe()),
            ("ort-dynamic-int8", OrtDynamicInt8Recipe()),
            ("ort-dynamic-int8 + embeddings", OrtDynamicInt8Recipe(quantize_embeddings=True)),
            ("int8-weight-only", Int8WeightOnlyRecipe()),
        ]
        for label, recipe in recipes:
            res = apply_recipe(base.module, recipe, case["calibration"])
            configs[label] = (res.module, res.n_quantized, len(res.kept_float), res.quantized_param_share)
        # the tuner chooses on the labelled calibration split, never on the rows reported below
        tuned = tune(
            base,
            case["tune"],
            case["label"],
            case["groups"],
            tolerance_overall=tolerance,
            tolerance_group=2 * tolerance,
            calibration=case["calibration"],
            budget_trials=6 if quick else 12,
            budget_seconds=240 if quick else 900,
        )
        if tuned.best is not None and tuned.result is not None:
            configs[f"tuner: {tuned.best.label}"] = (
                tuned.result.module,
                tuned.result.n_quantized,
                len(tuned.result.kept_float),
                tuned.result.quantized_param_share,
            )
        notes.append(
            f"- `{name}` tuner trace: "
            + "; ".join(f"{t.label} {'pass' if t.passed else 'fail'} ({t.reason})" for t in tuned.trace)
        )
        batches = {bs: base.batches(case["eval"].head(bs), bs)[0] for bs in (1, 32)}
        modules = {c: cfg[0] for c, cfg in configs.items()}
        times = {
            bs: forward_latency(modules, batch, rounds=3 if quick else 7, repeats=5 if bs == 1 else 3)
            for bs, batch in batches.items()
        }
        for c, (module, nq, nk, share) in configs.items():
            acc, worst, worst_name = _accuracy(base.with_module(module), case["eval"], case["label"], case["groups"])
            lat = {f"p{p}_b{bs}_ms": times[bs][c][f"p{p}_ms"] for bs in (1, 32) for p in (50, 95)}
            row = BenchRow(
                name, c, acc, worst, worst_name, lat, 32000.0 / lat["p50_b32_ms"], pickled_size(module), nq, nk, share
            )
            # quantized activations: does a prediction depend on the other rows of its batch? (weight-only
            # recipes quantize no activation, so they are not scored one row per call: the report says so)
            if nq and "weight-only" not in c:
                row.served = _served(base, module, case["eval"], case["label"])
            rows.append(row)
    load = {"before": load_before, "after": load_average()}
    cmd = command or f".venv/bin/python scripts/bench.py{' --quick' if quick else ''}"
    _write_md(out_md, rows, notes, quick, time.perf_counter() - t0, tolerance, load, cmd)
    _plot(out_png, rows)
    return rows


def _load(la: tuple[float, float, float] | None) -> str:
    return "not available" if la is None else " / ".join(f"{x:.2f}" for x in la)


def _write_md(
    path: Path,
    rows: list[BenchRow],
    notes: list[str],
    quick: bool,
    seconds: float,
    tol: float,
    load: dict[str, tuple[float, float, float] | None] | None = None,
    command: str = ".venv/bin/python scripts/bench.py",
) -> None:
    from datetime import datetime

    import onnxruntime

    from quantgate.hardware import host_info

    host = host_info()
    load = load or {}
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` ({'quick' if quick else 'full'} mode) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {seconds:.0f} s.",
        "",
        f"Host: {platform.machine()}, {host['cpu_model']}, ISA {host['isa']} (detected; torch CPU capability "
        f"{host['torch_cpu_capability'] or 'unknown'}, VNNI {'yes' if host['vnni'] else 'no'}), "
        f"{host['cpu_count']} CPUs, {torch.get_num_threads()} torch threads (ORT the same), torch "
        f"{torch.__version__}, onnxruntime {onnxruntime.__version__}. Load average (1/5/15 min) before the run "
        f"{_load(load.get('before'))}, after it {_load(load.get('after'))}: on a shared, loaded host the "
        "absolute milliseconds are inflated; the ratios, measured side by side in the same rounds, are what "
        "counts.",
        "",
        "Latency: the module's forward on one preprocessed batch (tokenization excluded), all configs "
        "in alternating rounds; speedup is fp32 p50 / config p50 at batch 32, and vs ORT fp32 the "
        "ort-fp32 p50 / config p50 (the precision's share, without the runtime's). Tuner tolerance: "
        f"{tol * 100:.1f} pt overall, {2 * tol * 100:.1f} pt per group.",
        "",
        "| model | config | quantized / float layers | params quantized | accuracy | worst group | p50/p95 ms b1 | "
        "p50/p95 ms b32 | speedup b32 | vs ORT fp32 b32 | rows/s b32 | size MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(b for b in rows if b.model == r.model and b.config == "fp32")
        ort = next((b for b in rows if b.model == r.model and b.config == "ort-fp32"), base)
        lat = r.latency
        lines.append(
            f"| {r.model} | {r.config} | {r.quantized} / {r.kept_float} | {r.param_share:.0%} | {r.accuracy:.4f} | "
            f"{r.worst_group_accuracy:.4f} ({r.worst_group}) | {lat['p50_b1_ms']:.2f} / {lat['p95_b1_ms']:.2f} | "
            f"{lat['p50_b32_ms']:.2f} / {lat['p95_b32_ms']:.2f} | "
            f"{base.latency['p50_b32_ms'] / lat['p50_b32_ms']:.2f}x | "
            f"{ort.latency['p50_b32_ms'] / lat['p50_b32_ms']:.2f}x | {r.throughput_rows_s:.0f} | "
            f"{r.size_bytes / 1e6:.2f} |"
        )
    served = [r for r in rows if r.served]
    if served:
        lines += [
            "",
            "## Batch dependence",
            "",
            "Every evaluation row scored as a server would, in row order, at batch 1 (one call per row) and "
            "at batch 32 (`quantgate.evaluate.batching.served_batching`, the gate's code). Dynamic int8 "
            "computes activation scales per batch, so a prediction can depend on the other rows in its batch. "
            "Weight-only configs quantize no activation and are not scored here (batch 1 is one call per row).",
            "",
            "| model | config | rows | accuracy b1 | accuracy b32 | predictions changed b1 vs b32 | "
            "largest probability change |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in served:
            sv = r.served
            lines.append(
                f"| {r.model} | {r.config} | {sv['rows']} | {sv['accuracy'][1]:.4f} | {sv['accuracy'][32]:.4f} | "
                f"{100 * sv['changed_share']:.2f}% | {sv['max_proba_change']:.4f} |"
            )
    lines += ["", "## Tuner traces", "", *notes, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    # sections other scripts write between markers (scripts/bench_search_gate.py) are kept
    import re

    old = path.read_text() if path.exists() else ""
    pattern = r"<!-- ([a-z0-9-]+):start -->.*?<!-- \1:end -->"
    lines += [m.group(0) + "\n" for m in re.finditer(pattern, old, re.S)]
    path.write_text("\n".join(lines))


def _plot(path: Path, rows: list[BenchRow]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r.model for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5))
    for ax, model in zip(np.atleast_1d(axes), models, strict=True):
        pts = [r for r in rows if r.model == model]
        for r in pts:
            ax.scatter(r.latency["p50_b32_ms"], r.accuracy)
            ax.annotate(r.config, (r.latency["p50_b32_ms"], r.accuracy), fontsize=7)
        ax.set_title(f"{model} (batch 32, 2 threads)")
        ax.set_xlabel("p50 latency, ms (lower is better)")
        ax.set_ylabel("accuracy")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
