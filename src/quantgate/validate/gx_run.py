"""Run the derived GX suite on a frame and read the results back as quantgate checks.

What runs where:

- Great Expectations (GX Core 1.x, ephemeral context, pandas data source) runs the suite from
  :mod:`quantgate.validate.gx_suite`; each result is read through the quantgate ``meta`` its
  expectation carries (check name, kind, expected text), never by guessing from GX's names.
- Plain pandas/numpy (vectorised), because GX does not cover them reliably: duplicate column
  names, NaN/±inf in numeric columns (``ExpectColumnValuesToBeBetween`` skips NaN), and
  "text columns hold strings" (GX's type check does not accept pyarrow-backed strings).
- An expectation on a column that is missing, or whose dtype is already reported wrong, cannot
  run: it is listed as *not run*, naming the check that reports the cause (``blocked_by``), so
  the problem is named once and nothing is silently dropped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from quantgate.errors import DataError, first_rows
from quantgate.validate._gx import import_gx
from quantgate.validate.checks import pct
from quantgate.validate.columns import STRING_KINDS, is_number
from quantgate.validate.data_docs import data_docs_html
from quantgate.validate.gx_suite import (
    KIND_RANK,
    META_COLUMN,
    META_EXPECTED,
    META_KIND,
    META_NAME,
    apply_overrides,
    derive_expectations,
)
from quantgate.validate.report import CheckResult, ValidationReport, all_pass, settle_blocked_by
from quantgate.validate.report import clip as _clip

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation import Expectation

    from quantgate.validate.expectations import ExpectationOverrides
    from quantgate.validate.profile import ColumnProfile, DataProfile

log = logging.getLogger(__name__)


def _examples(res: dict[str, Any], k: int = 5) -> str:
    counts = res.get("partial_unexpected_counts") or []
    if counts:
        items = [f"{_clip(repr(_py(c['value'])), 40)} x{c['count']}" for c in counts[:k]]
    else:
        items = [_clip(repr(_py(v)), 40) for v in (res.get("partial_unexpected_list") or [])[:k]]
    return f", e.g. {', '.join(items)}" if items else ""


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _exception_message(r: ExpectationValidationResult) -> str | None:
    info = r.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "error")
    for v in info.values():
        if isinstance(v, dict) and v.get("raised_exception"):
            return str(v.get("exception_message") or "error")
    return None


def _observed(kind: str, r: ExpectationValidationResult) -> str:
    err = _exception_message(r)
    if err is not None:
        return "error: " + _clip(err.strip().splitlines()[0] if err.strip() else err, 200)
    res: dict[str, Any] = dict(r.result or {})
    if kind == "row_count":
        return f"{res.get('observed_value')} rows"
    if kind == "columns":
        mismatched = (res.get("details") or {}).get("mismatched") or {}
        parts = []
        if mismatched.get("missing"):
            parts.append("missing: " + ", ".join(map(str, mismatched["missing"])))
        if mismatched.get("unexpected"):
            parts.append("unexpected: " + ", ".join(map(str, mismatched["unexpected"])))
        return "; ".join(parts) if parts else f"the {len(res.get('observed_value') or [])} reference columns"
    if kind == "type" and "observed_value" in res:
        return f"dtype {res['observed_value']}"
    if kind == "custom" and "observed_value" in res and "element_count" not in res:
        return "observed " + _clip(repr(_py(res["observed_value"])), 200)
    n = int(res.get("element_count") or 0)
    bad = int(res.get("unexpected_count") or 0)
    nonnull = n - int(res.get("missing_count") or 0)
    if kind == "not_null":
        return f"{bad} nulls in {n} rows"
    share = f" ({pct(bad / nonnull)})" if nonnull and bad else ""
    what = {
        "type": "non-numeric",
        "range": "outside the range",
        "in_set": "unseen",
        "length": "with length out of range",
    }.get(kind, "unexpected")
    return f"{bad} of {nonnull} non-null values {what}{share}{_examples(res) if bad else ''}"


def _to_check(r: ExpectationValidationResult) -> tuple[int, CheckResult]:
    """A GX result as (rank of its kind within the column, readable check).

    An expectation that raised inside GX did not judge the data: it is a required check that
    could not run, with GX's message as the reason.
    """
    meta = r.expectation_config.meta or {}
    kind = str(meta.get(META_KIND, r.expectation_config.type))
    column = meta.get(META_COLUMN)
    name = str(meta.get(META_NAME, r.expectation_config.type))
    expected = str(meta.get(META_EXPECTED, ""))
    if _exception_message(r) is not None:
        check = CheckResult.could_not_run(name, _observed(kind, r), expected, column)
    else:
        check = CheckResult.judged(name, bool(r.success), _observed(kind, r), expected, column)
    return KIND_RANK.get(kind, 99), check


def _name_non_numbers(check: CheckResult, r: ExpectationValidationResult, frame: pd.DataFrame) -> CheckResult:
    """A failed numeric-type check on a column read as text: GX counts every value (each is a
    string), so its count and examples point at valid numbers. Name the values that are not numbers
    instead (what the user must fix), e.g. 'forty' among 660 ages."""
    meta = r.expectation_config.meta or {}
    col = meta.get(META_COLUMN)
    if check.passed or meta.get(META_KIND) != "type" or col not in frame.columns or is_number(frame[col]):
        return check
    values = frame[col].dropna()
    words = values[pd.to_numeric(values, errors="coerce").isna()]
    if words.empty:
        return check
    examples = list(dict.fromkeys(map(str, words.tolist())))[:3]
    shown = ", ".join(repr(v) for v in examples) + (", ..." if words.nunique() > len(examples) else "")
    observed = (
        f"{len(words)} of {len(values)} non-null values are not numbers, e.g. {shown} (rows "
        f"{first_rows(words.index)}); so the column is read as text (dtype {frame[col].dtype})"
    )
    return CheckResult.judged(check.name, False, observed, check.expected, check.column)


def _finite_check(s: pd.Series, c: ColumnProfile) -> CheckResult:
    """NaN/±inf in a numeric column: inf always fails; NaN fails unless the reference had NaN."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu":  # numpy ints hold no NaN/inf
        n_nan = n_inf = 0
    else:
        arr = s.to_numpy(dtype="float64", na_value=np.nan)
        nan_mask = np.isnan(arr)
        n_nan, n_inf = int(nan_mask.sum()), int(np.isinf(arr).sum())
    nan_ok = c.null_fraction > 0.0
    return CheckResult.judged(
        f"{c.name}: finite",
        n_inf == 0 and (nan_ok or n_nan == 0),
        f"{n_nan} NaN, {n_inf} +/-inf",
        _finite_expected(c),
        c.name,
    )


def _finite_expected(c: ColumnProfile) -> str:
    return "no +/-inf (NaN allowed: reference has nulls)" if c.null_fraction > 0.0 else "no NaN or +/-inf"


def _string_check(s: pd.Series, c: ColumnProfile) -> CheckResult:
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    return CheckResult.judged(
        f"{c.name}: string values",
        inferred in STRING_KINDS,
        f"{inferred} values (dtype {s.dtype})",
        "strings",
        c.name,
    )


def _not_runnable(
    e: Expectation, frame: pd.DataFrame, skip: dict[tuple[str, str], tuple[str, str]]
) -> CheckResult | None:
    """A not-run check for an expectation that cannot run on ``frame`` (None when it can).

    ``skip`` maps (column, kind) to (reason, name of the check that reports the cause).
    """
    meta = e.meta or {}
    col, kind = meta.get(META_COLUMN), str(meta.get(META_KIND))
    if col is None:
        return None
    if col not in frame.columns:
        reason, cause = "column missing from the calibration data", "columns match"
    elif (col, kind) in skip:
        reason, cause = skip[(col, kind)]
    else:
        return None
    name, expected = str(meta.get(META_NAME)), str(meta.get(META_EXPECTED, ""))
    return CheckResult.could_not_run(name, reason, expected, col, blocked_by=cause)


def _run_gx(frame: pd.DataFrame, expectations: list[Expectation], suite_name: str) -> ExpectationSuiteValidationResult:
    gx_mod = import_gx()
    ctx = gx_mod.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:  # cosmetic only
        log.debug("could not disable GX progress bars", exc_info=True)
    batch_def = (
        ctx.data_sources.add_pandas("quantgate")
        .add_dataframe_asset(name="frame")
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    suite = ctx.suites.add(gx_mod.ExpectationSuite(name=suite_name, expectations=expectations))
    vd = ctx.validation_definitions.add(gx_mod.ValidationDefinition(name=suite_name, data=batch_def, suite=suite))
    return vd.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")


def validate_frame(
    df: pd.DataFrame,
    profile: DataProfile,
    *,
    min_rows: int = 1,
    range_tolerance: float = 0.1,
    max_unseen_share: float = 0.01,
    suite_name: str = "calibration",
    render_html: bool = True,
    overrides: ExpectationOverrides | None = None,
) -> ValidationReport:
    """Check ``df`` (calibration data) against the reference ``profile``; never raises on bad data.

    A bad ``overrides`` file is a :class:`ConfigError` (config, not data).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame to validate, got {type(df).__name__}")
    expectations = derive_expectations(
        profile,
        range_tolerance=range_tolerance,
        max_unseen_share=max_unseen_share,
        min_rows=min_rows,
    )
    removed: set[str] = set()
    if overrides is not None:
        expectations, removed = apply_overrides(expectations, profile, overrides)
    order = {name: i for i, name in enumerate(profile.column_names)}
    extra: list[tuple[tuple[int, int], CheckResult]] = []

    # GX needs unique string column names; duplicates are a failure of their own
    frame = df.copy(deep=False)
    frame.columns = [str(c) for c in frame.columns]
    dup = frame.columns.duplicated()
    if dup.any():
        names = sorted(set(frame.columns[dup]))
        extra.append(
            (
                (-1, KIND_RANK["unique_columns"]),
                CheckResult.judged("unique column names", False, "duplicated: " + ", ".join(names), "each column once"),
            )
        )
        frame = frame.loc[:, ~dup]

    skip: dict[tuple[str, str], tuple[str, str]] = {}
    type_check = {
        str((e.meta or {}).get(META_COLUMN)): str((e.meta or {}).get(META_NAME))
        for e in expectations
        if (e.meta or {}).get(META_KIND) == "type"
    }
    for c in profile.columns:
        finite_name, string_name = f"{c.name}: finite", f"{c.name}: string values"
        if c.name not in frame.columns:  # its GX checks are listed as not run below
            missing = "column missing from the calibration data"
            if c.kind == "numeric" and finite_name not in removed:
                check = CheckResult.could_not_run(
                    finite_name, missing, _finite_expected(c), c.name, blocked_by="columns match"
                )
                extra.append(((order[c.name], KIND_RANK["finite"]), check))
            elif c.kind == "text" and string_name not in removed:
                check = CheckResult.could_not_run(string_name, missing, "strings", c.name, blocked_by="columns match")
                extra.append(((order[c.name], KIND_RANK["type"]), check))
            continue
        s = frame[c.name]
        key = (order[c.name], KIND_RANK["finite"])
        if c.kind == "numeric":
            if is_number(s):
                if finite_name not in removed:
                    extra.append((key, _finite_check(s, c)))
            else:  # the type check reports it; a range on strings is only a GX error
                why = f"dtype {s.dtype} is not numeric"
                skip[(c.name, "range")] = (why, type_check.get(c.name, f"{c.name}: numeric type"))
                if finite_name not in removed:
                    check = CheckResult.could_not_run(
                        finite_name, why, _finite_expected(c), c.name, blocked_by=type_check.get(c.name)
                    )
                    extra.append((key, check))
        elif c.kind == "text":
            check = _string_check(s, c)
            if check.name not in removed:
                extra.append(((order[c.name], KIND_RANK["type"]), check))
            if not check.passed:
                skip[(c.name, "length")] = ("the column does not hold strings", check.name)

    to_run: list[Expectation] = []
    for e in expectations:
        not_run = _not_runnable(e, frame, skip)
        if not_run is None:
            to_run.append(e)
        else:
            kind = str((e.meta or {}).get(META_KIND))
            extra.append(((order.get(str(not_run.column), -1), KIND_RANK.get(kind, 99)), not_run))
    result = _run_gx(frame, to_run, suite_name)

    ranked: list[tuple[tuple[int, int], CheckResult]] = list(extra)
    for r in result.results:
        rank, check = _to_check(r)
        check = _name_non_numbers(check, r, frame)
        ranked.append(((order.get(check.column, -1) if check.column else -1, rank), check))
    ranked.sort(key=lambda t: t[0])
    checks = settle_blocked_by([c for _, c in ranked])
    report = ValidationReport(
        passed=all_pass(checks),
        suite_name=suite_name,
        row_count=len(df),
        checks=checks,
    )
    if render_html:
        report.data_docs_html = data_docs_html(result, report)
    return report
