"""Benchmark: govern 100,000 Adult-shaped calibration rows (GX suite + policy checks + Evidently).

Issue #3 sets the bar: validating 100,000 Adult-shaped rows takes at most 15 s on 2 cores.
The rows are drawn with replacement from the real UCI Adult training file; ``fnlwgt`` (a census
sampling weight) gets a small seeded jitter so the draws are distinct rows rather than 58%
repeats, which keeps the run on the passing path (the path that renders every report).

Run from the repository root::

    .venv/bin/python scripts/bench_validate.py            # 100,000 rows, cold + warm run
    .venv/bin/python scripts/bench_validate.py --rows 20000 --runs 3 --out /tmp/validation

The first run pays the one-off imports of Great Expectations and Evidently (a fresh worker
pays them once); later runs are what a long-lived worker sees. Both are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def adult_shaped(train: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` draws from ``train`` with replacement, made distinct by jittering fnlwgt by up to 2%."""
    rng = np.random.default_rng(seed)
    out = train.iloc[rng.integers(0, len(train), rows)].reset_index(drop=True)
    jitter = rng.uniform(-0.02, 0.02, rows)
    out["fnlwgt"] = np.maximum(1, np.round(out["fnlwgt"].to_numpy() * (1.0 + jitter))).astype("int64")
    return out


def load_conditions() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unavailable"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="calibration rows (default 100,000)")
    parser.add_argument("--runs", type=int, default=2, help="runs in this process; the first is cold (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-html", action="store_true", help="skip rendering GX Data Docs")
    parser.add_argument("--out", type=Path, default=None, help="also write the artifacts of the last run here")
    parser.add_argument(
        "--expectations",
        type=Path,
        default=ROOT / "policies" / "expectations" / "adult-income.yaml",
        help="expectations override file (default: the shipped adult-income one)",
    )
    args = parser.parse_args(argv)

    from quantgate.data.datasets import ADULT_SENSITIVE, load_adult
    from quantgate.validate.governance import CalibrationPolicy, govern_calibration

    cpus = os.cpu_count()
    print(f"python {platform.python_version()} on {platform.machine()}, {cpus} CPUs visible, {load_conditions()}")
    t = time.perf_counter()
    train, test = load_adult()
    calibration = adult_shaped(train, args.rows, args.seed)
    print(
        f"data: reference adult.data {len(train):,} rows, evaluation adult.test {len(test):,} rows, "
        f"calibration {len(calibration):,} Adult-shaped rows (prepared in {time.perf_counter() - t:.2f} s, not timed)"
    )

    policy = CalibrationPolicy()
    report = None
    for run in range(1, args.runs + 1):
        start = time.perf_counter()
        report = govern_calibration(
            calibration,
            train,
            evaluation=test,
            label="income",
            sensitive_attributes=ADULT_SENSITIVE,
            text_columns=[],
            policy=policy,
            model_name="adult-income",
            expectations_file=args.expectations,
            render_html=not args.no_html,
        )
        wall = time.perf_counter() - start
        t_ = report.timings_s
        kind = "cold: includes importing GX and Evidently" if run == 1 else "warm"
        print(
            f"run {run} ({kind}): profile {t_['profile']:.2f} s | expectations file {t_['expectations']:.2f} s | "
            f"GX suite {t_['gx']:.2f} s | "
            f"policy checks {t_['policy']:.2f} s | representativeness {t_['representativeness']:.2f} s | "
            f"total {wall:.2f} s  -> {'PASS' if report.passed else 'FAIL'} ({len(report.checks)} checks)"
        )
    assert report is not None
    if not report.passed:
        print(report.summary())
    if args.out is not None:
        t = time.perf_counter()
        paths = report.write_artifacts(args.out)
        sizes = ", ".join(f"{name} {p.stat().st_size / 1e6:.1f} MB" for name, p in paths.items())
        print(f"artifacts written in {time.perf_counter() - t:.2f} s: {sizes}")
    print(load_conditions())
    return 0 if report.passed else 3


if __name__ == "__main__":
    sys.exit(main())
