"""Calibration-data checks: a Great Expectations suite built from a :class:`DataProfile`.

Quantization calibrates scales on whatever data it is given; data that does not look like the
training data (a renamed column, ages as strings, a new category, ``inf``) silently produces
a bad model. :func:`validate_frame` stops that before quantization.

What runs where:

- Great Expectations (GX Core 1.x, ephemeral context, pandas data source): row count, exact
  column set, numeric dtype, not-null, widened numeric ranges, categorical value sets,
  text lengths. Each expectation carries its quantgate check name in ``meta``.
- Plain pandas/numpy (vectorised), because GX does not cover them reliably: duplicate column
  names, NaN/±inf in numeric columns (``ExpectColumnValuesToBeBetween`` skips NaN), and
  "text columns hold strings" (GX's type check does not accept pyarrow-backed strings).
- Expectations on a column that is missing, or whose dtype is already reported wrong, are
  not run: the "columns match" / type check names the problem once instead of several
  checks failing with GX errors.

Data Docs: the HTML in :attr:`ValidationReport.data_docs_html` is GX's own Data Docs
validation page, rendered in memory with the renderer that Data Docs sites use
(``ValidationResultsPageRenderer`` + ``DefaultJinjaPageView``); no site is written to disk
and nothing is fetched. Above it we insert a self-contained table of every quantgate check
(inline CSS, readable offline; the GX part links Bootstrap/jQuery from CDNs, so it is styled
only when the browser is online). Should GX rendering fail, the page is our own HTML table.

``great_expectations`` is imported lazily (about 4 s), with ``GX_ANALYTICS_ENABLED=False``.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from quantgate.errors import ConfigError, DataError
from quantgate.validate.profile import ColumnProfile, DataProfile
from quantgate.validate.report import (
    CheckResult,
    ValidationReport,
    checks_html,
    inject_after_body,
    standalone_html,
)
from quantgate.validate.report import clip as _clip

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation import Expectation

    from quantgate.validate.expectations import ExpectationOverrides

log = logging.getLogger(__name__)

#: dtype names GX's type-list check accepts as numeric (numpy and pandas nullable)
NUMERIC_TYPE_LIST = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "Int8Dtype",
    "Int16Dtype",
    "Int32Dtype",
    "Int64Dtype",
    "UInt8Dtype",
    "UInt16Dtype",
    "UInt32Dtype",
    "UInt64Dtype",
    "Float32Dtype",
    "Float64Dtype",
]

# order of checks within a column in the report
_KIND_RANK = {
    "row_count": 0,
    "columns": 1,
    "unique_columns": 2,
    "type": 3,
    "not_null": 4,
    "finite": 5,
    "range": 6,
    "in_set": 7,
    "length": 8,
}
_META_NAME, _META_KIND, _META_EXPECTED, _META_COLUMN = (
    "quantgate_check",
    "quantgate_kind",
    "quantgate_expected",
    "quantgate_column",
)


def _gx() -> Any:
    """Import GX only when a suite is built (slow import; analytics off, nothing sent)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations as gx

    return gx


# --------------------------------------------------------------------------- suite


def _meta(name: str, kind: str, expected: str, column: str | None) -> dict[str, Any]:
    return {_META_NAME: name, _META_KIND: kind, _META_EXPECTED: expected, _META_COLUMN: column}


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _column_expectations(
    c: ColumnProfile, label: str | None, range_tolerance: float, max_unseen_share: float
) -> list[Expectation]:
    E = _gx().expectations
    out: list[Expectation] = []
    col = c.name
    if c.kind == "numeric":
        out.append(
            E.ExpectColumnValuesToBeInTypeList(
                column=col,
                type_list=NUMERIC_TYPE_LIST,
                meta=_meta(f"{col}: numeric type", "type", f"a numeric dtype (reference {c.dtype})", col),
            )
        )
    if c.null_fraction == 0.0:
        out.append(
            E.ExpectColumnValuesToNotBeNull(
                column=col,
                meta=_meta(f"{col}: no nulls", "not_null", "no nulls (none in reference)", col),
            )
        )
    if c.kind == "numeric" and c.min is not None and c.max is not None:
        span = c.max - c.min
        if span == 0.0:
            span = max(abs(c.min), 1.0)
        lo, hi = c.min - range_tolerance * span, c.max + range_tolerance * span
        out.append(
            E.ExpectColumnValuesToBeBetween(
                column=col,
                min_value=lo,
                max_value=hi,
                meta=_meta(
                    f"{col}: within range",
                    "range",
                    f"values in [{_fmt(lo)}, {_fmt(hi)}] (reference [{_fmt(c.min)}, {_fmt(c.max)}]"
                    f" +/- {range_tolerance:.0%} of span)",
                    col,
                ),
            )
        )
    if c.kind in ("categorical", "boolean") and c.values is not None:
        strict = c.kind == "boolean" or col == label
        values: list[Any] = [False, True] if c.kind == "boolean" else list(c.values)
        mostly = 1.0 if strict else 1.0 - max_unseen_share
        what = "classes" if col == label else "values"
        expected = (
            f"all values among the {len(values)} reference {what}"
            if strict
            else f">= {mostly:.2%} of values among the {len(values)} reference {what}"
        )
        out.append(
            E.ExpectColumnValuesToBeInSet(
                column=col,
                value_set=values,
                mostly=mostly,
                meta=_meta(f"{col}: values in set", "in_set", expected, col),
            )
        )
    if c.kind == "text" and c.max_length is not None:
        lo_len = max(1, c.min_length or 0)
        hi_len = max(2 * c.max_length, lo_len)
        out.append(
            E.ExpectColumnValueLengthsToBeBetween(
                column=col,
                min_value=lo_len,
                max_value=hi_len,
                meta=_meta(
                    f"{col}: length",
                    "length",
                    f"length in [{lo_len}, {hi_len}] characters (reference [{c.min_length}, {c.max_length}])",
                    col,
                ),
            )
        )
    return out


def _expectations(
    profile: DataProfile, *, range_tolerance: float, max_unseen_share: float, min_rows: int
) -> list[Expectation]:
    if range_tolerance < 0:
        raise ConfigError(f"range_tolerance must be >= 0, got {range_tolerance}")
    if not 0.0 <= max_unseen_share < 1.0:
        raise ConfigError(f"max_unseen_share must be in [0, 1), got {max_unseen_share}")
    if min_rows < 0:
        raise ConfigError(f"min_rows must be >= 0, got {min_rows}")
    E = _gx().expectations
    out: list[Expectation] = [
        E.ExpectTableRowCountToBeBetween(
            min_value=min_rows,
            max_value=None,
            meta=_meta("row count", "row_count", f">= {min_rows} rows", None),
        ),
        E.ExpectTableColumnsToMatchSet(
            column_set=profile.column_names,
            exact_match=True,
            meta=_meta(
                "columns match",
                "columns",
                f"exactly the {len(profile.columns)} reference columns: " + _clip(", ".join(profile.column_names), 300),
                None,
            ),
        ),
    ]
    for c in profile.columns:
        out.extend(_column_expectations(c, profile.label, range_tolerance, max_unseen_share))
    return out


def build_suite(
    profile: DataProfile,
    *,
    range_tolerance: float = 0.1,
    max_unseen_share: float = 0.01,
    name: str,
    min_rows: int = 1,
    overrides: ExpectationOverrides | None = None,
) -> gx.ExpectationSuite:
    """The GX suite that says "looks like the reference data" for ``profile``.

    ``overrides`` (a team's ``policies/expectations/<model>.yaml``) replaces, removes or adds
    expectations; see :mod:`quantgate.validate.expectations`.
    """
    gx_mod = _gx()
    expectations = _expectations(
        profile,
        range_tolerance=range_tolerance,
        max_unseen_share=max_unseen_share,
        min_rows=min_rows,
    )
    if overrides is not None:
        expectations, _ = apply_overrides(expectations, profile, overrides)
    return gx_mod.ExpectationSuite(name=name, expectations=expectations)


#: GX types whose results read like a derived check of that kind (observed text, skip rules)
_TYPE_KIND = {
    "ExpectTableRowCountToBeBetween": "row_count",
    "ExpectTableColumnsToMatchSet": "columns",
    "ExpectColumnValuesToBeInTypeList": "type",
    "ExpectColumnValuesToNotBeNull": "not_null",
    "ExpectColumnValuesToBeBetween": "range",
    "ExpectColumnValuesToBeInSet": "in_set",
    "ExpectColumnValueLengthsToBeBetween": "length",
}
#: derived checks a team file may not remove: the row count is the gate policy's
#: ``calibration.min_rows``; GX cannot run at all with duplicated column names
PROTECTED_CHECKS = frozenset({"row count", "unique column names"})


def _pandas_check_names(profile: DataProfile) -> set[str]:
    """Names of the derived checks computed in pandas rather than GX (see validate_frame)."""
    names = {f"{c.name}: finite" for c in profile.columns if c.kind == "numeric"}
    return names | {f"{c.name}: string values" for c in profile.columns if c.kind == "text"}


def apply_overrides(
    expectations: list[Expectation], profile: DataProfile, overrides: ExpectationOverrides
) -> tuple[list[Expectation], set[str]]:
    """Derived suite + a team file -> (expectations to run, removed pandas-side check names).

    Same GX type on the same column replaces the derived expectation (keeping its check name
    unless the file names it); everything else is added. Unknown names, unknown columns and
    name clashes are :class:`ConfigError`, so a typo never silently disables a check.
    """
    src = overrides.source
    pandas_names = _pandas_check_names(profile)
    derived = {str((e.meta or {}).get(_META_NAME)) for e in expectations}
    known = derived | pandas_names
    for name in overrides.remove:
        if name in PROTECTED_CHECKS:
            hint = "change calibration.min_rows in the gate policy" if name == "row count" else None
            raise ConfigError(f"{src}: remove: '{name}' cannot be removed", hint)
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "use a check name from `quantgate validate` output"
            raise ConfigError(f"{src}: remove: no derived check named '{name}'", hint)
    removed = set(overrides.remove)
    kept = [e for e in expectations if str((e.meta or {}).get(_META_NAME)) not in removed]
    columns = set(profile.column_names)
    for spec in overrides.expectations:
        where = f"{src}: expectations.{spec.index}"
        unknown = [c for c in spec.columns if c not in columns]
        if unknown:
            raise ConfigError(
                f"{where}: '{unknown[0]}' is not a column of the reference data",
                "columns: " + _clip(", ".join(profile.column_names), 200),
            )
        target = None
        if spec.type != "ExpectTableRowCountToBeBetween":
            target = next(
                (e for e in kept if type(e).__name__ == spec.type and (e.meta or {}).get(_META_COLUMN) == spec.column),
                None,
            )
        if target is not None:
            kept.remove(target)
            tmeta = target.meta or {}
            name, kind = spec.name or str(tmeta.get(_META_NAME)), str(tmeta.get(_META_KIND))
        else:
            name = spec.name or (f"{spec.column}: {spec.type}" if spec.column else spec.type)
            kind = _TYPE_KIND.get(spec.type, "custom")
        taken = {str((e.meta or {}).get(_META_NAME)) for e in kept} | (pandas_names - removed)
        if name in taken:
            raise ConfigError(f"{where}: check name '{name}' is already used", "give it a unique name: key")
        expected = f"{spec.describe()} (from {Path(src).name})"
        kept.append(spec.build(meta=_meta(name, kind, _clip(expected, 300), spec.column)))
    return kept, removed & pandas_names


# --------------------------------------------------------------------------- validation


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
    pct = f" ({100.0 * bad / nonnull:.2f}%)" if nonnull and bad else ""
    what = {
        "type": "non-numeric",
        "range": "outside the range",
        "in_set": "unseen",
        "length": "with length out of range",
    }.get(kind, "unexpected")
    return f"{bad} of {nonnull} non-null values {what}{pct}{_examples(res) if bad else ''}"


def _to_check(r: ExpectationValidationResult) -> tuple[int, CheckResult]:
    """A GX result as (rank of its kind within the column, readable check)."""
    meta = r.expectation_config.meta or {}
    kind = str(meta.get(_META_KIND, r.expectation_config.type))
    column = meta.get(_META_COLUMN)
    check = CheckResult(
        name=str(meta.get(_META_NAME, r.expectation_config.type)),
        column=column,
        passed=bool(r.success) and _exception_message(r) is None,
        observed=_observed(kind, r),
        expected=str(meta.get(_META_EXPECTED, "")),
    )
    return _KIND_RANK.get(kind, 99), check


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def _is_stringy(s: pd.Series) -> bool:
    return pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")


def _finite_check(s: pd.Series, c: ColumnProfile) -> CheckResult:
    """NaN/±inf in a numeric column: inf always fails; NaN fails unless the reference had NaN."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu":  # numpy ints hold no NaN/inf
        n_nan = n_inf = 0
    else:
        arr = s.to_numpy(dtype="float64", na_value=np.nan)
        nan_mask = np.isnan(arr)
        n_nan, n_inf = int(nan_mask.sum()), int(np.isinf(arr).sum())
    nan_ok = c.null_fraction > 0.0
    return CheckResult(
        name=f"{c.name}: finite",
        column=c.name,
        passed=n_inf == 0 and (nan_ok or n_nan == 0),
        observed=f"{n_nan} NaN, {n_inf} +/-inf",
        expected="no +/-inf (NaN allowed: reference has nulls)" if nan_ok else "no NaN or +/-inf",
    )


def _string_check(s: pd.Series, c: ColumnProfile) -> CheckResult:
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    return CheckResult(
        name=f"{c.name}: string values",
        column=c.name,
        passed=inferred in ("string", "empty"),
        observed=f"{inferred} values (dtype {s.dtype})",
        expected="strings",
    )


def _applicable(e: Expectation, frame: pd.DataFrame, skip: set[tuple[str, str]]) -> bool:
    meta = e.meta or {}
    col, kind = meta.get(_META_COLUMN), str(meta.get(_META_KIND))
    if col is None:
        return True
    return col in frame.columns and (col, kind) not in skip


def _run_gx(frame: pd.DataFrame, expectations: list[Expectation], suite_name: str) -> ExpectationSuiteValidationResult:
    gx_mod = _gx()
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
    expectations = _expectations(
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
                (-1, _KIND_RANK["unique_columns"]),
                CheckResult(
                    name="unique column names",
                    passed=False,
                    observed="duplicated: " + ", ".join(names),
                    expected="each column once",
                ),
            )
        )
        frame = frame.loc[:, ~dup]

    skip: set[tuple[str, str]] = set()
    for c in profile.columns:
        if c.name not in frame.columns:
            continue
        s = frame[c.name]
        key = (order[c.name], _KIND_RANK["finite"])
        if c.kind == "numeric":
            if _is_numeric(s):
                if f"{c.name}: finite" not in removed:
                    extra.append((key, _finite_check(s, c)))
            else:  # the type check reports it; a range on strings is only a GX error
                skip.add((c.name, "range"))
        elif c.kind == "text":
            check = _string_check(s, c)
            if check.name not in removed:
                extra.append(((order[c.name], _KIND_RANK["type"]), check))
            if not check.passed:
                skip.add((c.name, "length"))

    to_run = [e for e in expectations if _applicable(e, frame, skip)]
    result = _run_gx(frame, to_run, suite_name)

    ranked: list[tuple[tuple[int, int], CheckResult]] = list(extra)
    for r in result.results:
        rank, check = _to_check(r)
        ranked.append(((order.get(check.column, -1) if check.column else -1, rank), check))
    ranked.sort(key=lambda t: t[0])
    checks = [c for _, c in ranked]
    report = ValidationReport(
        passed=all(c.passed for c in checks),
        suite_name=suite_name,
        row_count=len(df),
        checks=checks,
    )
    if render_html:
        report.data_docs_html = _data_docs_html(result, report)
    return report


# --------------------------------------------------------------------------- HTML


def _renderable(v: Any) -> Any:
    """pd.NA / pd.NaT break GX's renderer (``bool(pd.NA)`` raises); show them as None."""
    return None if v is pd.NA or v is pd.NaT else v


def _sanitize_for_render(result: ExpectationSuiteValidationResult) -> None:
    for r in result.results:
        res = r.result
        if not isinstance(res, dict):
            continue
        if isinstance(res.get("partial_unexpected_list"), list):
            res["partial_unexpected_list"] = [_renderable(v) for v in res["partial_unexpected_list"]]
        if isinstance(res.get("partial_unexpected_counts"), list):
            res["partial_unexpected_counts"] = [
                {**c, "value": _renderable(c.get("value"))} if isinstance(c, dict) else c
                for c in res["partial_unexpected_counts"]
            ]


def _data_docs_html(result: ExpectationSuiteValidationResult, report: ValidationReport) -> str:
    """GX Data Docs validation page with our checks table on top; ours alone if GX fails."""
    try:
        _sanitize_for_render(result)
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        page = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
        return inject_after_body(str(page), checks_html(report))
    except Exception:  # the report must not be lost to a rendering bug
        log.warning("GX Data Docs rendering failed; writing the plain checks table", exc_info=True)
        return standalone_html(report.suite_name, checks_html(report))
