"""The derived Great Expectations suite: what "looks like the reference data" means for a profile.

Quantization calibrates scales on whatever data it is given; data that does not look like the
training data (a renamed column, ages as strings, a new category, ``inf``) silently produces
a bad model. This module *builds* the suite from a :class:`DataProfile` (row count, exact
column set, numeric dtype, not-null, widened numeric ranges, categorical value sets, text
lengths) and applies a team's ``policies/expectations/<model>.yaml``; running it on a frame is
:mod:`quantgate.validate.gx_run`. Each expectation carries its quantgate check name, kind and
expected-value text in ``meta``, which is how the run reads results back without guessing.

``great_expectations`` is imported lazily (about 4 s), through :func:`quantgate.validate._gx.import_gx`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantgate.errors import ConfigError
from quantgate.validate._gx import import_gx
from quantgate.validate.report import clip as _clip

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.expectations.expectation import Expectation

    from quantgate.validate.expectations import ExpectationOverrides
    from quantgate.validate.profile import ColumnProfile, DataProfile

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

#: order of checks within a column in the report
KIND_RANK = {
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
#: keys of an expectation's ``meta`` that carry the quantgate check
META_NAME, META_KIND, META_EXPECTED, META_COLUMN = (
    "quantgate_check",
    "quantgate_kind",
    "quantgate_expected",
    "quantgate_column",
)


# --------------------------------------------------------------------------- suite


def _meta(name: str, kind: str, expected: str, column: str | None) -> dict[str, Any]:
    return {META_NAME: name, META_KIND: kind, META_EXPECTED: expected, META_COLUMN: column}


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _column_expectations(
    c: ColumnProfile, label: str | None, range_tolerance: float, max_unseen_share: float
) -> list[Expectation]:
    E = import_gx().expectations
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


def derive_expectations(
    profile: DataProfile, *, range_tolerance: float, max_unseen_share: float, min_rows: int
) -> list[Expectation]:
    if range_tolerance < 0:
        raise ConfigError(f"range_tolerance must be >= 0, got {range_tolerance}")
    if not 0.0 <= max_unseen_share < 1.0:
        raise ConfigError(f"max_unseen_share must be in [0, 1), got {max_unseen_share}")
    if min_rows < 0:
        raise ConfigError(f"min_rows must be >= 0, got {min_rows}")
    E = import_gx().expectations
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
    gx_mod = import_gx()
    expectations = derive_expectations(
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


def pandas_check_names(profile: DataProfile) -> set[str]:
    """Names of the derived checks computed in pandas rather than GX (see :mod:`quantgate.validate.gx_run`)."""
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
    pandas_names = pandas_check_names(profile)
    derived = {str((e.meta or {}).get(META_NAME)) for e in expectations}
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
    kept = [e for e in expectations if str((e.meta or {}).get(META_NAME)) not in removed]
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
                (e for e in kept if type(e).__name__ == spec.type and (e.meta or {}).get(META_COLUMN) == spec.column),
                None,
            )
        if target is not None:
            kept.remove(target)
            tmeta = target.meta or {}
            name, kind = spec.name or str(tmeta.get(META_NAME)), str(tmeta.get(META_KIND))
        else:
            name = spec.name or (f"{spec.column}: {spec.type}" if spec.column else spec.type)
            kind = _TYPE_KIND.get(spec.type, "custom")
        taken = {str((e.meta or {}).get(META_NAME)) for e in kept} | (pandas_names - removed)
        if name in taken:
            raise ConfigError(f"{where}: check name '{name}' is already used", "give it a unique name: key")
        expected = f"{spec.describe()} (from {Path(src).name})"
        kept.append(spec.build(meta=_meta(name, kind, _clip(expected, 300), spec.column)))
    return kept, removed & pandas_names
