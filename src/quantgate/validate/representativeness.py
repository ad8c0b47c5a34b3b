"""Representativeness: is the calibration data distributed like the reference? (Evidently adapter)

Per-column drift, calibration vs reference, through :func:`quantgate.monitor.detect_drift`
(the one place quantgate calls Evidently); this module prepares comparable frames and turns the
typed :class:`~quantgate.monitor.drift.DriftResult` into a check. It never reads Evidently's
output itself.

A column that cannot be compared is *not run* for that column, with the reason, and never
counted as representative: missing or mistyped in the calibration data, all null on either
side (Evidently refuses an empty column), or a column Evidently returned no usable score for.
The check passes only when every profiled column was compared and the drifted share is within
the bound. Free-text columns are compared through their word count (``<col>__length``): a
drift test on raw text is slow and says little about what quantization sees.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quantgate.validate.checks import as_text, pct
from quantgate.validate.columns import holds_strings, is_number
from quantgate.validate.report import CHECK_REPRESENTATIVE, CheckResult, clip

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from quantgate.monitor.drift import DriftResult
    from quantgate.validate.profile import DataProfile

log = logging.getLogger(__name__)

#: below this many calibration rows a per-column drift test says nothing; representativeness
#: cannot run (a required check: the set is refused until it has enough rows)
MIN_DRIFT_ROWS = 30
#: each side of the drift comparison is subsampled (seeded) above this, to bound the time
DRIFT_MAX_ROWS = 100_000
#: suffix of the derived word-count column used for drift on a text column
LENGTH_SUFFIX = "__length"


@dataclass(frozen=True)
class DriftFrames:
    """Frames Evidently can compare, the compared columns by kind, and each column left out (why)."""

    reference: pd.DataFrame
    calibration: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    not_run: dict[str, str]


@dataclass(frozen=True)
class Representativeness:
    """The check, the JSON evidence (None when nothing was compared) and Evidently's result."""

    check: CheckResult
    summary: dict[str, Any] | None
    result: DriftResult | None


def drift_frames(
    calibration: pd.DataFrame, reference: pd.DataFrame, profile: DataProfile, text_columns: list[str]
) -> DriftFrames:
    """Reference/calibration frames Evidently can compare, and every profiled column left out (why).

    Columns that are broken (missing, wrong type, all null on either side) are left out rather
    than crash Evidently, and each is recorded as not run; the GX suite reports their cause.
    """
    import numpy as np
    import pandas as pd

    ref: dict[str, Any] = {}
    cal: dict[str, Any] = {}
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": []}
    not_run: dict[str, str] = {}

    def numeric(s: pd.Series) -> np.ndarray:
        arr = s.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        arr[~np.isfinite(arr)] = np.nan  # inf is the finite check's business, not a drift crash
        return arr

    for c in profile.columns:
        name = c.name
        if name not in reference.columns:
            not_run[name] = "not a column of the reference data"
            continue
        if name not in calibration.columns:
            not_run[name] = "missing from the calibration data"
            continue
        r, k = reference[name], calibration[name]
        col, kind = name, "categorical"
        if name in text_columns or c.kind == "text":
            if not holds_strings(k):
                not_run[name] = "not text in the calibration data"
                continue
            col, kind = f"{name}{LENGTH_SUFFIX}", "numeric"
            r_vals = r.astype(str).str.split().str.len().to_numpy(dtype="float64")
            k_vals = k.where(k.notna(), "").astype(str).str.split().str.len().to_numpy(dtype="float64")
        elif c.kind == "numeric":
            if not is_number(k):
                not_run[name] = "not numeric in the calibration data"
                continue
            kind, r_vals, k_vals = "numeric", numeric(r), numeric(k)
        elif is_number(r) and is_number(k):
            r_vals, k_vals = r.to_numpy(), k.to_numpy()
        else:  # compare categories by their text, so "1" and 1, or category and object, agree
            r_vals, k_vals = as_text(r).to_numpy(), as_text(k).to_numpy()
        if pd.isna(k_vals).all():
            not_run[name] = "all null in the calibration data"
            continue
        if pd.isna(r_vals).all():
            not_run[name] = "all null in the reference data"
            continue
        ref[col], cal[col] = r_vals, k_vals
        kinds[kind].append(col)
    ref_df = pd.DataFrame({k: np.asarray(v) for k, v in ref.items()}, index=pd.RangeIndex(len(reference)))
    cal_df = pd.DataFrame({k: np.asarray(v) for k, v in cal.items()}, index=pd.RangeIndex(len(calibration)))
    return DriftFrames(ref_df, cal_df, kinds["numeric"], kinds["categorical"], not_run)


def _source_column(compared: str) -> str:
    return compared.removesuffix(LENGTH_SUFFIX)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def representativeness(
    calibration: pd.DataFrame,
    reference: pd.DataFrame,
    profile: DataProfile,
    text_columns: list[str],
    bound: float,
) -> Representativeness:
    """Drift per column vs the reference, judged against ``bound`` (the largest drifted share)."""
    expected = f"<= {pct(bound)} of columns drifted vs the reference (Evidently, per column), every column compared"

    def not_run(reason: str, blocked_by: str | None = None) -> Representativeness:
        check = CheckResult.could_not_run(CHECK_REPRESENTATIVE, reason, expected, blocked_by=blocked_by)
        return Representativeness(check, None, None)

    if len(calibration) < MIN_DRIFT_ROWS:
        # when the row-count check already refuses the set, that is the root cause to name
        return not_run(f"{len(calibration)} rows < {MIN_DRIFT_ROWS}, too few for drift tests", "row count")
    frames = drift_frames(calibration, reference, profile, text_columns)
    ref, cal, not_compared = frames.reference, frames.calibration, dict(frames.not_run)
    if cal.shape[1] == 0:
        why = "; ".join(f"{k} ({v})" for k, v in not_compared.items())
        return not_run("no column comparable with the reference: " + clip(why, 200))
    if len(ref) > DRIFT_MAX_ROWS:
        ref = ref.sample(DRIFT_MAX_ROWS, random_state=0)
    if len(cal) > DRIFT_MAX_ROWS:
        cal = cal.sample(DRIFT_MAX_ROWS, random_state=0)
    from quantgate.monitor.drift import detect_drift

    try:
        result = detect_drift(
            ref,
            cal,
            numeric=frames.numeric,
            categorical=frames.categorical,
            drift_share=min(max(bound, 1e-9), 1.0),
        )
    except Exception as exc:  # fail closed: an unmeasured set is not a representative one
        log.warning("Evidently drift failed on the calibration data", exc_info=True)
        return not_run("Evidently failed: " + clip(_first_line(exc), 200))

    # a column Evidently gave no result for, or no finite score, was not compared
    judged = [c for c in result.columns if not math.isnan(c.score)]
    got = {c.column for c in judged}
    for col in cal.columns:
        if col not in got:
            not_compared[_source_column(col)] = "Evidently returned no drift score"
    n_columns = len(judged)
    drifted = [c.column for c in judged if c.drifted]
    share = len(drifted) / n_columns if n_columns else 0.0

    summary = result.to_dict()
    summary.update(
        columns=[c.model_dump(mode="json") for c in judged],
        n_columns=n_columns,
        n_drifted=len(drifted),
        drifted_share=share,
        drifted_columns=drifted,
        bound=bound,
        not_run_columns=not_compared,
        text_length_columns=[c for c in cal.columns if c.endswith(LENGTH_SUFFIX)],
    )
    observed = f"{len(drifted)} of {n_columns} compared columns drifted ({pct(share)})"
    if drifted:
        observed += ": " + clip(", ".join(drifted), 200)
    if n_columns and share > bound + 1e-12:
        if not_compared:
            observed += f"; {len(not_compared)} not compared: " + clip(", ".join(not_compared), 120)
        check = CheckResult.judged(CHECK_REPRESENTATIVE, False, observed, expected)
    elif not_compared or not n_columns:
        why = clip("; ".join(f"{k} ({v})" for k, v in not_compared.items()), 200)
        total = len(not_compared) + n_columns
        check = CheckResult.could_not_run(
            CHECK_REPRESENTATIVE, f"{len(not_compared)} of {total} columns not compared: {why}; {observed}", expected
        )
    else:
        check = CheckResult.judged(CHECK_REPRESENTATIVE, True, observed, expected)
    return Representativeness(check, summary, result)
