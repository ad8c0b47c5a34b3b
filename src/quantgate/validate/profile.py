"""Reference-data profile: what "looks like the training data" means, stored with the model.

A :class:`DataProfile` is computed once from the reference (training) frame and logged to
MLflow as JSON next to the model. Calibration data for quantization is later checked against
it (see :mod:`quantgate.validate.gx_suite`), so the profile holds only plain JSON values:
no numpy scalars, no NaN/inf (numeric bounds are taken over finite values only).

Kinds, decided per column in this order:

- ``text``: the column is named in ``text_columns`` (must hold strings).
- ``boolean``: a bool dtype, or an object column whose non-null values are all bools.
- ``categorical`` for the label: an integer-valued numeric label with at most
  :data:`MAX_CATEGORIES` classes (a class label is a set, not a range).
- ``numeric``: any other numeric dtype (range checked, never a value set).
- ``categorical``: a pandas ``category`` column, or a non-numeric column with at most
  :data:`MAX_CATEGORIES` distinct values.
- ``text``: a string column with more distinct values than that (free text, IDs): only its
  length is checked.

Anything else (datetimes, mixed objects with many values) is a :class:`DataError`: better a
clear refusal than a profile that checks nothing. A stored profile is read back with
:func:`read_profile`, which refuses one it cannot read rather than let the caller fall back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quantgate.errors import DataError
from quantgate.validate.columns import STRING_KINDS

ColumnKind = Literal["numeric", "categorical", "text", "boolean"]
#: a value in a categorical value set; JSON keeps bool / int / float / str apart
Scalar = bool | int | float | str

#: columns with at most this many distinct values (and not text) get a value set
MAX_CATEGORIES = 200
PROFILE_SCHEMA_VERSION = 1


class ColumnProfile(BaseModel):
    """One column of the reference data; fields that do not apply to the kind are None."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: ColumnKind
    dtype: str
    null_fraction: float = Field(ge=0.0, le=1.0)
    n_unique: int = Field(ge=0)
    min: float | None = None
    max: float | None = None
    values: list[Scalar] | None = None
    min_length: int | None = None
    max_length: int | None = None


class DataProfile(BaseModel):
    """Reference-data profile; ``model_dump_json`` / ``model_validate_json`` round-trip."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = PROFILE_SCHEMA_VERSION
    row_count: int = Field(ge=0)
    label: str | None = None
    columns: list[ColumnProfile]

    @model_validator(mode="after")
    def _check(self) -> DataProfile:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names in profile: {', '.join(dupes)}")
        if self.label is not None and self.label not in names:
            raise ValueError(f"label '{self.label}' is not one of the profiled columns")
        return self

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def feature_columns(self) -> list[str]:
        """All columns except the label: what a model consumes."""
        return [c.name for c in self.columns if c.name != self.label]

    def column(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _native(value: object) -> Scalar:
    """numpy / pandas scalar -> plain Python, so the profile is JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _finite_bounds(s: pd.Series) -> tuple[float | None, float | None]:
    arr = s.to_numpy(dtype="float64", na_value=np.nan)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return None, None
    return float(arr.min()), float(arr.max())


def _is_integer_valued(s: pd.Series) -> bool:
    if s.dtype.kind in "iu" or pd.api.types.is_integer_dtype(s.dtype):
        return True
    arr = s.to_numpy(dtype="float64", na_value=np.nan)
    arr = arr[np.isfinite(arr)]
    return bool(np.all(np.mod(arr, 1.0) == 0.0))


def _value_set(s: pd.Series) -> list[Scalar]:
    values = [_native(v) for v in pd.unique(s.dropna())]
    # inf has no JSON form; a non-finite float in a value set would not round-trip
    values = [v for v in values if not (isinstance(v, float) and not np.isfinite(v))]
    return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _text_lengths(s: pd.Series) -> tuple[int | None, int | None]:
    lengths = s.dropna().astype(str).str.len()
    if lengths.empty:
        return None, None
    return int(lengths.min()), int(lengths.max())


def _profile_column(name: str, s: pd.Series, *, is_label: bool, is_text: bool) -> ColumnProfile:
    dtype = str(s.dtype)
    null_fraction = float(s.isna().mean()) if len(s) else 0.0
    n_unique = int(s.nunique(dropna=True))
    base = {"name": name, "dtype": dtype, "null_fraction": null_fraction, "n_unique": n_unique}
    inferred = pd.api.types.infer_dtype(s, skipna=True)

    if is_text:
        if inferred not in STRING_KINDS:
            raise DataError(
                f"text column '{name}' holds {inferred} values, not strings",
                "pass only string columns in text_columns",
            )
        lo, hi = _text_lengths(s)
        return ColumnProfile(kind="text", min_length=lo, max_length=hi, **base)

    if pd.api.types.is_bool_dtype(s.dtype) or inferred == "boolean":
        return ColumnProfile(kind="boolean", values=_value_set(s), **base)

    if pd.api.types.is_numeric_dtype(s.dtype):
        if is_label and n_unique <= MAX_CATEGORIES and _is_integer_valued(s):
            return ColumnProfile(kind="categorical", values=_value_set(s), **base)
        lo, hi = _finite_bounds(s)
        return ColumnProfile(kind="numeric", min=lo, max=hi, **base)

    if isinstance(s.dtype, pd.CategoricalDtype) or (
        n_unique <= MAX_CATEGORIES
        and not pd.api.types.is_datetime64_any_dtype(s.dtype)
        and inferred not in ("datetime", "datetime64", "date", "timedelta", "timedelta64", "period")
    ):
        return ColumnProfile(kind="categorical", values=_value_set(s), **base)

    if inferred == "string":
        lo, hi = _text_lengths(s)
        return ColumnProfile(kind="text", min_length=lo, max_length=hi, **base)

    raise DataError(
        f"cannot profile column '{name}' (dtype {dtype}, {inferred} values, {n_unique} distinct)",
        "convert it to numbers, strings or a category, or drop it before profiling",
    )


def profile_frame(df: pd.DataFrame, label: str | None, text_columns: Sequence[str] | Iterable[str] = ()) -> DataProfile:
    """Profile reference (training) data so later data can be checked against it."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame to profile, got {type(df).__name__}")
    if len(df) == 0:
        raise DataError("cannot profile an empty frame", "pass the training data, not a header")
    bad = [c for c in df.columns if not isinstance(c, str)]
    if bad:
        raise DataError(f"column names must be strings, got {bad[:5]!r}", "rename the columns before profiling")
    if df.columns.duplicated().any():
        dupes = sorted(set(df.columns[df.columns.duplicated()]))
        raise DataError(f"duplicate column names: {', '.join(dupes)}", "make column names unique")
    text = list(text_columns)
    missing = [c for c in [*text, *([label] if label else [])] if c not in df.columns]
    if missing:
        raise DataError(
            f"column(s) not in the data: {', '.join(missing)}",
            f"available: {', '.join(map(str, df.columns))}",
        )
    columns = [_profile_column(str(c), df[c], is_label=(c == label), is_text=(c in text)) for c in df.columns]
    return DataProfile(row_count=len(df), label=label, columns=columns)


def read_profile(text: str | bytes, *, source: str) -> DataProfile:
    """A stored reference profile from its JSON; :class:`DataError` naming ``source`` if unreadable.

    An unreadable profile is never replaced by one derived from the reference data file: the
    stored profile is what the model was registered against, and silently judging calibration
    data against something else hides the problem. ``source`` names the artifact (for example
    ``runs:/<run_id>/reference_profile.json``) so the error says which file to fix.
    """
    try:
        return DataProfile.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        where = ".".join(str(x) for x in first.get("loc", ())) or "<root>"
        raise DataError(
            f"the stored reference profile {source} is unreadable ({exc.error_count()} error(s); "
            f"first at {where}: {first.get('msg')})",
            "re-log it from the reference data with quantgate.validate.profile_frame(...).model_dump_json() "
            "(or re-register the model), or remove the artifact to derive the profile from the reference data",
        ) from None
