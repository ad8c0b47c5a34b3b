"""Policy checks on calibration data: group coverage, leakage, duplicates, label balance.

Pure functions over frames: they take the data and the policy's bounds and return
:class:`CheckResult` values, with no I/O and no GX or Evidently. A check that cannot run says
why, and whether that blocks: *required* when the policy asks for it and the data makes it
impossible (no shared columns, no rows), *optional* when the policy switched it off or there is
nothing to compare against (no evaluation split given).

pandas and numpy load inside the functions, so :mod:`quantgate.validate.sampling` and the
report models can import this module cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quantgate.validate.columns import holds_strings, is_number
from quantgate.validate.report import (
    CHECK_DUPLICATES,
    CHECK_OVERLAP,
    CheckResult,
    clip,
    group_check_name,
    label_check_name,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from quantgate.validate.profile import DataProfile


def pct(x: float) -> str:
    return f"{100.0 * x:.2f}%"


def as_text(s: pd.Series) -> pd.Series:
    """Values as ``str`` (nulls kept as None), cheaply when they already are strings."""

    if s.dtype == object and holds_strings(s):
        return s
    out = s.astype(str).astype(object)
    out[s.isna().to_numpy()] = None
    return out


def _hashable(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Columns normalised so equal rows hash equal across files (int 3 == float 3.0, category == str)."""
    import numpy as np
    import pandas as pd

    out: dict[str, Any] = {}
    for c in columns:
        s = df[c]
        if is_number(s):
            out[c] = s.to_numpy(dtype="float64", na_value=np.nan)
        else:
            out[c] = as_text(s).to_numpy()
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


def row_hashes(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One uint64 per row over ``columns``, equal for equal rows whatever the file's dtypes."""
    import numpy as np
    import pandas as pd

    return pd.util.hash_pandas_object(_hashable(df, columns), index=False).to_numpy(dtype=np.uint64)


def group_checks(
    calibration: pd.DataFrame, reference: pd.DataFrame, attributes: list[str], min_rows: int
) -> list[CheckResult]:
    """Every group of every sensitive attribute seen in the reference needs ``min_rows`` rows."""
    from quantgate.validate.profile import MAX_CATEGORIES

    out = []
    for attr in attributes:
        name = group_check_name(attr)
        expected = f">= {min_rows} rows in every group of '{attr}' seen in the reference data"

        def fail(observed: str, attr: str = attr, name: str = name, expected: str = expected) -> CheckResult:
            return CheckResult.judged(name, False, observed, expected, attr)

        if attr not in reference.columns:
            out.append(fail("not a column of the reference data"))
            continue
        groups = list(reference[attr].dropna().unique())
        if len(groups) > MAX_CATEGORIES:
            out.append(fail(f"{len(groups)} distinct values in the reference: not a grouping attribute"))
            continue
        if attr not in calibration.columns:
            out.append(fail("column missing from the calibration data"))
            continue
        counts = calibration[attr].value_counts(dropna=True)
        have = {g: int(counts.get(g, 0)) for g in groups}
        short = sorted(((g, n) for g, n in have.items() if n < min_rows), key=lambda t: (t[1], str(t[0])))
        if short:
            observed = "under the minimum: " + ", ".join(
                f"{g}: {n}" + (" (missing)" if n == 0 else "") for g, n in short
            )
        else:
            g, n = min(have.items(), key=lambda t: (t[1], str(t[0])))
            observed = f"smallest of {len(have)} groups: {g} with {n} rows"
        out.append(CheckResult.judged(name, not short, observed, expected, attr))
    return out


def overlap_check(calibration: pd.DataFrame, evaluation: pd.DataFrame | None, features: list[str]) -> CheckResult:
    """Rows of the calibration data whose features also appear in the evaluation split.

    Without an evaluation split there is nothing to leak into: optional, listed as not run.
    With one that cannot be compared (no shared column, no rows), the leakage is unmeasured:
    required, so the data is refused until it can be measured.
    """
    expected = "no calibration row also in the evaluation data (row hashes over the shared feature columns)"
    if evaluation is None:
        return CheckResult.could_not_run(CHECK_OVERLAP, "no evaluation data given", expected, required=False)
    shared = [c for c in features if c in calibration.columns and c in evaluation.columns]
    if not shared:
        return CheckResult.could_not_run(CHECK_OVERLAP, "no feature column shared with the evaluation data", expected)
    if len(calibration) == 0 or len(evaluation) == 0:
        side = "calibration" if len(calibration) == 0 else "evaluation"
        return CheckResult.could_not_run(CHECK_OVERLAP, f"no rows in the {side} data", expected)
    import numpy as np

    cal = row_hashes(calibration, shared)
    ev = np.unique(row_hashes(evaluation, shared))
    n = int(np.isin(cal, ev).sum())
    return CheckResult.judged(
        CHECK_OVERLAP,
        n == 0,
        f"{n} of {len(cal)} calibration rows ({pct(n / len(cal))}) also in the evaluation data"
        f" ({len(shared)} columns compared)",
        expected,
    )


def duplicate_check(calibration: pd.DataFrame, features: list[str], bound: float) -> CheckResult:
    """Share of rows that repeat an earlier row over the feature columns."""
    expected = f"<= {pct(bound)} of rows repeat an earlier row (feature columns)"
    cols = [c for c in features if c in calibration.columns]
    if len(calibration) == 0 or not cols:
        why = "no rows" if len(calibration) == 0 else "no feature column of the reference in the calibration data"
        return CheckResult.could_not_run(CHECK_DUPLICATES, why, expected)
    import pandas as pd

    n = int(pd.Series(row_hashes(calibration, cols)).duplicated().sum())
    share = n / len(calibration)
    return CheckResult.judged(
        CHECK_DUPLICATES, share <= bound, f"{n} of {len(calibration)} rows ({pct(share)}) are repeats", expected
    )


def label_check(
    calibration: pd.DataFrame, profile: DataProfile, label: str | None, bounds: tuple[float, float] | None
) -> CheckResult | None:
    """Share of each reference class in the calibration data, within the policy's bounds.

    Off in the policy (``label_share_bounds: null``): optional, listed as not run. On, but the
    data cannot answer (a label that is not a set of classes, no labelled rows): required.
    """
    if label is None:
        return None
    name = label_check_name(label)
    if bounds is None:
        return CheckResult.could_not_run(
            name, "label_share_bounds is off in the policy", "no bound", label, required=False
        )
    lo, hi = bounds
    expected = f"each class's share in [{pct(lo)}, {pct(hi)}]"
    if label not in profile.column_names or profile.column(label).kind not in ("categorical", "boolean"):
        return CheckResult.could_not_run(
            name,
            "the label is not a set of classes in the reference (set calibration.label_share_bounds: null "
            "in the policy for such a label)",
            expected,
            label,
        )
    if label not in calibration.columns:
        return CheckResult.could_not_run(name, "no label column in the calibration data", expected, label)
    s = calibration[label].dropna()
    if len(s) == 0:
        return CheckResult.could_not_run(name, "no labelled rows", expected, label)
    shares = s.value_counts(normalize=True)
    classes = profile.column(label).values or []
    seen = {c: float(shares.get(c, 0.0)) for c in classes}
    bad = {c: v for c, v in seen.items() if not lo <= v <= hi}
    observed = ", ".join(f"{c}: {pct(v)}" for c, v in seen.items())
    return CheckResult.judged(name, not bad, ("out of bounds: " if bad else "") + clip(observed, 300), expected, label)
