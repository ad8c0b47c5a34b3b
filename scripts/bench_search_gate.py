"""Search/gate agreement on a demo model: how often does the gate accept the recipe the search chose?

adult-income (default): the demo MLP is trained once as ``make demo`` trains it (``train_mlp``, seed 0,
on adult.data minus the demo's calibration rows). For each seed, adult.test (never trained on) is
shuffled with that seed and split into calibration rows (the search's) and evaluation rows (the gate's).

rt-sentiment (``--model rt-sentiment``): MiniLM with the linear head trained as ``make demo`` trains
it (its first 4,000 shuffled snippets); per seed, the snippets it was not trained on are shuffled
with that seed and split into the demo's 1,000 calibration and 2,000 evaluation rows. The search
(``quantgate.quantize.tuner.tune`` under the policy's tolerances, default candidates) runs twice per
seed: judging each trial by the point estimate against the tolerance (how the search judged before),
and by the gate's own rules on the calibration rows (``steps.quantize.gate_judge``: the upper bound of
the paired-bootstrap interval). The chosen candidate is then judged by the gate's blocking rules on
predictions on the evaluation rows (speed and size rules are left out: they are not what the search
anticipates). A tolerance of ``--tolerance`` (default: the policy's, plus a tight 0.002) replaces the
threshold of the policy's blocking accuracy max_drop rule, to stress the agreement.

    .venv/bin/python scripts/bench_search_gate.py --seeds 0 1 2 3 4 [--write docs/benchmarks.md]
    .venv/bin/python scripts/bench_search_gate.py --model rt-sentiment --tolerance --modes gate [--write ...]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
INT8_ONLY = ("ort-dynamic-int8", "dynamic-int8", "int8-weight-only")


def _host() -> str:
    from quantgate.hardware import host_info

    h = host_info()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = str(h["cpu_model"])
    return f"{model}, ISA {h['isa']} (detected), {h['cpu_count']} CPUs, {h['torch_threads']} torch threads"


def _model(train_rows: int | None) -> Any:
    import torch

    from quantgate.data.datasets import ADULT_CATEGORICAL, ADULT_LABEL, ADULT_NUMERIC, ADULT_SENSITIVE, load_adult
    from quantgate.data.demo_models import SEED
    from quantgate.models.tabular import TabularPreprocessor, train_mlp
    from quantgate.models.wrapped import WrappedModel
    from quantgate.validate.sampling import sample_calibration

    torch.set_num_threads(2)
    train_all, test = load_adult()
    calib = sample_calibration(
        train_all,
        2000,
        sensitive_attributes=ADULT_SENSITIVE,
        min_group_rows=30,
        exclude=test,
        feature_columns=[c for c in train_all.columns if c != ADULT_LABEL],
        seed=SEED,
    )
    train = train_all.drop(calib.index).sample(frac=1.0, random_state=SEED)
    train = train if train_rows is None else train.iloc[:train_rows]
    pre = TabularPreprocessor.fit(train, ADULT_NUMERIC, ADULT_CATEGORICAL)
    module = train_mlp(pre.transform(train), train[ADULT_LABEL].to_numpy(), seed=SEED)
    spec = {"task": "tabular-classification", "preprocessor": pre.to_dict(), "classes": [0, 1]}
    return WrappedModel(module, spec), test


def _rt_model() -> tuple[Any, pd.DataFrame]:
    """MiniLM + the head as the demo trains it; returns it and the snippets it was not trained on."""
    import torch

    from quantgate.data.datasets import load_rotten_tomatoes
    from quantgate.data.demo_models import SEED, DemoSize
    from quantgate.models.text import SentenceClassifier, embed_texts, load_encoder, train_head
    from quantgate.models.wrapped import WrappedModel

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    df = load_rotten_tomatoes().sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    n_train = DemoSize().rt_train
    train, held_out = df.iloc[:n_train], df.iloc[n_train:]
    encoder, tokenizer = load_encoder()
    module = SentenceClassifier(encoder)
    train_head(module, embed_texts(module, tokenizer, train["text"].tolist()), train["label"].to_numpy(), seed=SEED)
    spec = {"task": "text-classification", "text_column": "text", "max_length": 128, "classes": [0, 1]}
    return WrappedModel(module, spec, tokenizer), held_out


def _cached_model(train_rows: int | None, cache: Path | None) -> Any:
    import torch

    from quantgate.data.datasets import load_adult
    from quantgate.models.wrapped import WrappedModel

    torch.set_num_threads(2)
    if cache is not None and (cache / "module.pt").exists():
        arts = {"module": str(cache / "module.pt"), "spec": str(cache / "spec.json")}
        return WrappedModel.load(arts), load_adult()[1]
    model, test = _model(train_rows)
    if cache is not None:
        model.save(cache)
    return model, test


def _with_threshold(policy: Any, model: str, threshold: float | None) -> tuple[Any, str]:
    """The policy with its blocking accuracy max_drop rule set to ``threshold`` (None: as shipped)."""
    from quantgate.policy.schema import RuleOverride

    rule = next(
        (
            r
            for r in policy.rules_for(model)
            if r.kind == "max_drop" and r.metric == "accuracy" and r.severity == "block"
        ),
        None,
    )
    if rule is None:
        sys.exit(f"policy {policy.name} has no blocking accuracy max_drop rule to compare the search with")
    if threshold is None:
        return policy, f"{rule.threshold:g} (policy)"
    over = {**policy.overrides, model: {**policy.overrides.get(model, {}), rule.id: RuleOverride(threshold=threshold)}}
    return policy.model_copy(update={"overrides": over}), f"{threshold:g}"


def _gate(cfg: Any, policy: Any, baseline: Any, candidate: Any, rows: pd.DataFrame) -> tuple[bool, str]:
    from quantgate.models.outputs import class_index
    from quantgate.steps.quantize import gate_judge

    y = class_index(rows[cfg.label], baseline.classes, what="labels")
    # the candidate model too: the accuracy rules are judged at the policy's served batch sizes as well
    ok, why, _ = gate_judge(cfg, policy, correct_for_search=False)(
        y, baseline.predict_proba(rows), candidate.predict_proba(rows), rows, candidate
    )
    return ok, why.replace("on the search rows", "on the evaluation rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["adult-income", "rt-sentiment"], default="adult-income")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument(
        "--modes",
        nargs="+",
        choices=["point", "gate"],
        default=["point", "gate"],
        help="how the search judges its trials: point estimate, gate rule (the search's own, today)",
    )
    ap.add_argument("--policy", type=Path, default=ROOT / "policies" / "default.yaml")
    ap.add_argument(
        "--calibration-rows", type=int, default=None, help="default: the demo's (adult 2,000; rt-sentiment 1,000)"
    )
    ap.add_argument(
        "--evaluation-rows", type=int, default=None, help="default: the demo's (adult: the rest; rt-sentiment 2,000)"
    )
    ap.add_argument("--tolerance", type=float, nargs="*", default=[0.002], help="extra thresholds to try")
    ap.add_argument("--train-rows", type=int, default=None, help="train on fewer rows (default: as the demo)")
    ap.add_argument("--budget-trials", type=int, default=None, help="default: the policy's search budget")
    ap.add_argument("--write", type=Path, default=None, help="put the table into this Markdown file")
    ap.add_argument(
        "--int8-only",
        action="store_true",
        help=f"search only {', '.join(INT8_ONLY)} (no lossless or float recipe to fall back on)",
    )
    ap.add_argument("--model-cache", type=Path, default=None, help="reuse (or save) the trained demo MLP here")
    args = ap.parse_args()

    import yaml

    from quantgate.onboarding import ModelConfig
    from quantgate.policy import load_policy
    from quantgate.quantize.recipes import get_recipe
    from quantgate.quantize.tuner import tune
    from quantgate.steps.quantize import gate_judge

    t0 = time.perf_counter()
    from quantgate.data.demo_models import DemoSize

    cfg = ModelConfig.model_validate(yaml.safe_load((ROOT / f"registry/models/{args.model}.yaml").read_text()))
    shipped = load_policy(args.policy)
    if args.model == "rt-sentiment":
        model, test = _rt_model()
        args.calibration_rows = args.calibration_rows or DemoSize().rt_calibration
        args.evaluation_rows = args.evaluation_rows or DemoSize().rt_evaluation
    else:
        model, test = _cached_model(args.train_rows, args.model_cache)
        args.calibration_rows = args.calibration_rows or DemoSize().adult_calibration
    print(f"trained the demo {args.model} model in {time.perf_counter() - t0:.0f} s", flush=True)
    modes = {"point": "point estimate", "gate": "gate rule"}
    rows: list[dict[str, Any]] = []
    for thr in [None, *args.tolerance]:
        policy, thr_label = _with_threshold(shipped, cfg.name, thr)
        tol_overall, tol_group = policy.search_tolerances(cfg.name)
        for seed in args.seeds:
            shuffled = test.sample(frac=1.0, random_state=seed)
            n_cal = args.calibration_rows
            calib = shuffled.iloc[:n_cal]
            evaluation = shuffled.iloc[n_cal : n_cal + args.evaluation_rows if args.evaluation_rows else None]
            batches = model.batches(calib, 32)[:8]
            for m in args.modes:
                mode, judge = modes[m], (gate_judge(cfg, policy) if m == "gate" else None)
                t_run = time.perf_counter()
                res = tune(
                    model,
                    calib,
                    cfg.label,
                    cfg.group_columns,
                    tolerance_overall=tol_overall,
                    tolerance_group=tol_group,
                    objective=policy.search.objective,
                    budget_trials=args.budget_trials or policy.search.budget_trials,
                    budget_seconds=policy.search.budget_seconds,
                    calibration=batches,
                    min_group_rows=policy.min_group_size,
                    judge=judge,
                    candidates=[get_recipe(r) for r in INT8_ONLY] if args.int8_only else None,
                )
                if res.best is None or res.module is None:
                    rows.append({"threshold": thr_label, "seed": seed, "search": mode, "chosen": "(none)"})
                    continue
                chosen = next(t for t in reversed(res.trace) if t.passed and t.label == res.best.label)
                ok, why = _gate(cfg, policy, model, model.with_module(res.module), evaluation)
                rows.append(
                    {
                        "threshold": thr_label,
                        "seed": seed,
                        "search": mode,
                        "chosen": res.best.label,
                        "trials": len(res.trace),
                        "trace": ", ".join(f"{t.label} {'pass' if t.passed else 'fail'}" for t in res.trace),
                        "search_drop": chosen.metrics.get("accuracy_drop"),
                        "gate": "accept" if ok else "refuse",
                        "gate_evidence": why,
                    }
                )
                rows[-1]["seconds"] = round(time.perf_counter() - t_run, 1)
                print(rows[-1], flush=True)
    seconds = time.perf_counter() - t0
    table = _markdown(rows, args, seconds)
    print(table)
    if args.write:
        _write(args.write, table, *_markers(args))


def _markers(args: argparse.Namespace) -> tuple[str, str]:
    name = "search-gate-int8" if args.int8_only else "search-gate"
    name += "" if args.model == "adult-income" else f"-{args.model}"
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _markdown(rows: list[dict[str, Any]], args: argparse.Namespace, seconds: float) -> str:
    df = pd.DataFrame(rows)
    start, end = _markers(args)
    which = f"int8 recipes only: {', '.join(INT8_ONLY)}" if args.int8_only else "the default candidates"
    lines = [
        start,
        f"## Search/gate agreement ({args.model}, {which})",
        "",
        "Command: `.venv/bin/python scripts/bench_search_gate.py"
        + ("" if args.model == "adult-income" else f" --model {args.model}")
        + f" --seeds {' '.join(map(str, args.seeds))}"
        + (f" --tolerance {' '.join(map(str, args.tolerance))}" if args.tolerance else " --tolerance")
        + ("" if args.modes == ["point", "gate"] else f" --modes {' '.join(args.modes)}")
        + (" --int8-only" if args.int8_only else "")
        + f"` ({seconds:.0f} s). Host: {_host()}; Python {platform.python_version()}.",
        "",
        (
            "The demo MLP, trained as `make demo` trains it; per seed, adult.test shuffled with that seed and split "
            f"into {args.calibration_rows} calibration rows (the search's) and the rest as evaluation rows (the "
            "gate's)."
            if args.model == "adult-income"
            else "MiniLM with the head trained as `make demo` trains it; per seed, the snippets it was not trained "
            f"on shuffled with that seed and split into {args.calibration_rows} calibration rows (the search's) "
            f"and {args.evaluation_rows} evaluation rows (the gate's)."
        )
        + " Each search judged its trials either by the point estimate of the accuracy drop against "
        "the tolerance, or by the gate's own blocking rules on the calibration rows (upper bound of the "
        "paired-bootstrap interval), at the policy's confidence and at a Bonferroni-corrected one over the "
        "search's trial budget, both required (as `quantgate` searches). The gate column judges the chosen "
        "candidate by the policy's blocking rules on predictions, at the policy's confidence, on the "
        "evaluation rows.",
        "",
        "| accuracy-drop threshold | search judged on | seeds | gate accepted the choice | choices |",
        "|---|---|---|---|---|",
    ]
    for (thr, mode), g in df.groupby(["threshold", "search"], sort=False):
        chose = g["chosen"].value_counts().to_dict()
        accepted = int((g.get("gate") == "accept").sum()) if "gate" in g else 0
        choices = ", ".join(f"{k} x{v}" for k, v in chose.items())
        lines.append(f"| {thr} | {mode} | {len(g)} | {accepted} / {len(g)} | {choices} |")
    lines += [
        "",
        "Per seed:",
        "",
        "| threshold | seed | search judged on | trials | chosen | drop on calibration rows | gate |",
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        drop = r.get("search_drop")
        shown = f"{drop:+.4f}" if isinstance(drop, float) and np.isfinite(drop) else "n/a"
        lines.append(
            f"| {r['threshold']} | {r['seed']} | {r['search']} | {r.get('trace', '')} | {r['chosen']} | {shown} "
            f"| {r.get('gate', 'n/a')} |"
        )
    lines.append(end)
    return "\n".join(lines)


def _write(path: Path, table: str, start: str, end: str) -> None:
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        text = text[: text.index(start)] + table + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + table + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
