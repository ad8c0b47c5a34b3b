"""Checks on the text a language model is calibrated and evaluated on.

What runs:

- **Great Expectations** (GX Core 1.x, ephemeral context, the same runner as the tabular suite)
  on each text table: the text column exists, holds no missing value, and no empty passage
  (``ExpectColumnValueLengthsToBeBetween``, min 1 character); every slice column exists.
- **quantgate, in Python**, where GX has no expectation: every passage is a string that encodes
  as UTF-8 (a Parquet ``bytes`` value or a lone surrogate does not), and, with the model's
  tokenizer, every evaluation passage has at least 2 tokens (one to predict from, one to
  predict) and at least one is long enough for a generation prompt; calibration passages that
  also appear in the evaluation text (exact duplicates, a leak) are counted.

What does not run (listed as ``not_run`` in the report, never dropped): representativeness of
the calibration text against a reference (text drift descriptors are not implemented for
language models yet) and a stored reference profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from quantgate.validate.report import CheckResult

MIN_TOKENS = 2


def _check(name: str, column: str | None, ok: bool, observed: str, expected: str, required: bool = True) -> CheckResult:
    return CheckResult(
        name=name,
        column=column,
        status="passed" if ok else "failed",
        observed=observed,
        expected=expected,
        required=required,
    )


def gx_text_checks(frame: pd.DataFrame, role: str, text_column: str, slices: Sequence[str]) -> list[CheckResult]:
    """The GX expectations on one text table, each read back as a CheckResult (column = role)."""
    from quantgate.validate._gx import import_gx
    from quantgate.validate.gx_run import _run_gx

    gx = import_gx()
    exps = [
        gx.expectations.ExpectColumnToExist(column=text_column, meta={"qg": f"text column '{text_column}' exists"}),
        gx.expectations.ExpectColumnValuesToNotBeNull(
            column=text_column, meta={"qg": f"no missing passage in '{text_column}'"}
        ),
        gx.expectations.ExpectColumnValueLengthsToBeBetween(
            column=text_column, min_value=1, meta={"qg": f"no empty passage in '{text_column}'"}
        ),
        *[gx.expectations.ExpectColumnToExist(column=s, meta={"qg": f"slice column '{s}' exists"}) for s in slices],
    ]
    # GX's string-length expectation needs object strings (pyarrow-backed strings are not accepted)
    table = frame.copy()
    if text_column in table.columns:
        table[text_column] = table[text_column].astype(object)
    result = _run_gx(table, exps, f"quantgate-lm-{role}")
    out = []
    for r in result.results:
        name = str(r.expectation_config.meta["qg"])
        res = r.result or {}
        observed = (
            f"{res.get('unexpected_count')} of {res.get('element_count')} rows unexpected"
            if "unexpected_count" in res
            else ("present" if r.success else "missing")
        )
        out.append(
            _check(
                f"GX: {name}", role, bool(r.success), observed, "all rows" if "unexpected_count" in res else "present"
            )
        )
    return out


def utf8_check(frame: pd.DataFrame, role: str, text_column: str) -> tuple[CheckResult, list[int]]:
    """Every passage is a ``str`` that encodes as UTF-8; returns the check and the bad rows."""
    bad: list[int] = []
    for i, v in enumerate(frame[text_column].tolist()):
        if v is None or (isinstance(v, float) and v != v):
            continue  # reported by GX's null check
        if not isinstance(v, str):
            if isinstance(v, bytes):
                try:
                    v.decode("utf-8")
                    continue
                except UnicodeDecodeError:
                    pass
            bad.append(i)
            continue
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(i)
    return _check(
        f"passages in '{text_column}' are UTF-8 text",
        role,
        not bad,
        f"{len(bad)} of {len(frame)} rows are not",
        "every row",
    ), bad


def token_checks(
    lengths: Sequence[int], role: str, prompt_tokens: int, need_prompts: bool
) -> tuple[list[CheckResult], list[int]]:
    """Evaluation passages long enough to score (``MIN_TOKENS``) and, when prompts are cut from
    them, at least one longer than ``prompt_tokens``. Returns the checks and the too-short rows."""
    short = [i for i, n in enumerate(lengths) if n < MIN_TOKENS]
    checks = [
        _check(
            f"passages have at least {MIN_TOKENS} tokens",
            role,
            not short,
            f"{len(short)} of {len(lengths)} shorter",
            "every passage",
        )
    ]
    if need_prompts:
        long_enough = sum(n > prompt_tokens for n in lengths)
        checks.append(
            _check(
                f"passages longer than the prompt ({prompt_tokens} tokens)",
                role,
                long_enough > 0,
                f"{long_enough} of {len(lengths)}",
                "at least one",
            )
        )
    return checks, short


def overlap_check(calibration: pd.DataFrame, evaluation: pd.DataFrame, text_column: str) -> CheckResult:
    cal = set(calibration[text_column].astype(str))
    shared = int(evaluation[text_column].astype(str).isin(cal).sum())
    return _check(
        "calibration passages not in the evaluation text",
        "calibration",
        shared == 0,
        f"{shared} of {len(evaluation)} evaluation passages also in the calibration text",
        "none (warning only: the weight-only recipes do not calibrate)",
        required=False,
    )


def not_run() -> list[CheckResult]:
    why = "not implemented for language models yet"
    return [
        CheckResult(
            name="representativeness of the calibration text (drift vs a reference)",
            column="calibration",
            status="not_run",
            observed=why,
            expected="no drift",
            required=False,
        ),
        CheckResult(
            name="stored reference profile",
            column="reference",
            status="not_run",
            observed=why,
            expected="the model's columns",
            required=False,
        ),
    ]


def summary(checks: Sequence[CheckResult]) -> dict[str, Any]:
    counts = {s: sum(c.status == s for c in checks) for s in ("passed", "failed", "not_run")}
    return {
        "passed": not any(c.status == "failed" and c.required for c in checks),
        "counts": counts,
        "summary": f"{counts['passed']} checks passed, {counts['failed']} failed, {counts['not_run']} not run",
        "checks": [c.model_dump() for c in checks],
    }
