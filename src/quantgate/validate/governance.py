"""Calibration-data governance: the GX suite, policy checks and representativeness, in one step.

A quantized model is only as good as its calibration data. :func:`govern_calibration` is the
gate in front of quantization; it answers three questions and reports every answer as a named
:class:`CheckResult` (observed value and bound), so a failed gate says exactly what to fix:

1. *Does it look like the training data?* The GX suite derived from the reference profile
   (:func:`quantgate.validate.validate_frame`), plus a team's
   ``policies/expectations/<model>.yaml`` (:mod:`quantgate.validate.expectations`).
2. *Is it fit to calibrate on?* Policy checks from :class:`CalibrationPolicy`: rows per
   sensitive group (a group with no calibration rows gets uncalibrated quantization error),
   no overlap with the evaluation split (leakage makes the gate's own measurement optimistic),
   duplicate share, label balance. The minimum row count runs inside the GX suite
   ("row count"), so it is reported once.
3. *Is it representative?* Evidently drift, per column, calibration vs reference
   (:func:`quantgate.monitor.detect_drift`); the share of drifted columns has a bound. Free-text
   columns are compared through their word count (``<col>__length``): a drift test on raw text
   is slow and says little about what quantization sees.

This module imports only pydantic at load time: the gate policy embeds
:class:`CalibrationPolicy`, and ``quantgate policy validate`` must stay fast. pandas, GX and
Evidently load inside :func:`govern_calibration`.
"""

from __future__ import annotations

import html
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from quantgate.errors import DataError, ValidationFailed
from quantgate.validate.report import (
    CheckResult,
    ValidationReport,
    checks_block_html,
    clip,
    failed_summary,
    replace_checks_block,
    standalone_html,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from quantgate.monitor.drift import DriftResult
    from quantgate.validate.profile import DataProfile

log = logging.getLogger(__name__)

#: below this many calibration rows a per-column drift test says nothing; representativeness
#: is reported as skipped (the row-count and group checks still judge the set)
MIN_DRIFT_ROWS = 30
#: each side of the drift comparison is subsampled (seeded) above this, to bound the time
DRIFT_MAX_ROWS = 100_000
#: suffix of the derived word-count column used for drift on a text column
LENGTH_SUFFIX = "__length"

CHECK_OVERLAP = "no overlap with evaluation data"
CHECK_DUPLICATES = "duplicate rows"
CHECK_REPRESENTATIVE = "representativeness"
ARTIFACT_VALIDATION_HTML = "calibration_validation.html"
ARTIFACT_DRIFT_HTML = "calibration_drift.html"
ARTIFACT_REPORT_JSON = "calibration_report.json"


def group_check_name(attribute: str) -> str:
    return f"{attribute}: rows per group"


def label_check_name(label: str) -> str:
    return f"{label}: label balance"


class CalibrationPolicy(BaseModel):
    """What calibration data must satisfy; the ``calibration:`` section of a gate policy.

    Strict like the rest of the policy (a typo or a string where a number belongs is an error
    naming the key); ``label_share_bounds`` accepts a YAML list.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    min_rows: int = Field(default=200, ge=1, description="fewest calibration rows")
    min_group_rows: int = Field(
        default=30,
        ge=0,
        description="fewest rows for every group (seen in the reference) of every sensitive attribute; 0 = off",
    )
    max_duplicate_share: float = Field(
        default=0.05, ge=0.0, le=1.0, allow_inf_nan=False, description="largest share of repeated rows"
    )
    label_share_bounds: tuple[float, float] | None = Field(
        default=(0.05, 0.95),
        strict=False,
        description="[low, high] share of each label class in the calibration data; null = off",
    )
    max_drifted_share: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="largest share of columns that Evidently finds drifted vs the reference",
    )
    range_tolerance: float = Field(
        default=0.1,
        ge=0.0,
        le=10.0,
        allow_inf_nan=False,
        description="numeric ranges are the reference min/max widened by this share of the span",
    )
    max_unseen_share: float = Field(
        default=0.01,
        ge=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="largest share of categorical values not seen in the reference",
    )

    @model_validator(mode="after")
    def _bounds(self) -> CalibrationPolicy:
        if self.label_share_bounds is not None:
            lo, hi = self.label_share_bounds
            if not (0.0 <= lo < hi <= 1.0) or not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"label_share_bounds must satisfy 0 <= low < high <= 1, got [{lo}, {hi}]")
        return self


class CalibrationReport(BaseModel):
    """Every check on one calibration set, with the evidence; JSON for MLflow, HTML for people."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str
    passed: bool
    row_count: int
    checks: list[CheckResult]
    gx: ValidationReport
    drift: dict[str, Any] | None = None
    policy: CalibrationPolicy
    expectations_file: str | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
    _drift_html: str | None = PrivateAttr(default=None)

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line naming the failed checks (or saying all passed), for logs and the CLI."""
        return failed_summary(f"calibration data for '{self.model_name}'", self.checks, self.row_count)

    def raise_if_failed(self) -> None:
        """Stop the flow before quantization with the one-line summary."""
        if not self.passed:
            raise ValidationFailed(self.summary(), "fix the calibration data; nothing was quantized or registered")

    def metrics(self) -> dict[str, float]:
        """Numbers worth an MLflow metric each."""
        out = {
            "calibration_rows": float(self.row_count),
            "calibration_checks_failed": float(len(self.failed())),
        }
        if self.drift is not None:
            out["calibration_drifted_share"] = float(self.drift["drifted_share"])
        return out

    def to_json(self) -> str:
        """The report without HTML (the Data Docs page is its own artifact)."""
        return self.model_dump_json(indent=2, exclude={"gx": {"data_docs_html"}})

    def validation_html(self) -> str:
        """GX Data Docs page, headed by the table of *all* checks and the drift evidence."""
        block = checks_block_html(
            f"quantgate calibration governance ({self.model_name})",
            self.passed,
            self.summary(),
            self.checks,
            extra=_drift_table_html(self.drift),
        )
        if self.gx.data_docs_html:
            return replace_checks_block(self.gx.data_docs_html, block)
        return standalone_html(self.model_name, block)

    def drift_html(self) -> str:
        """Evidently's report, or a short page saying why representativeness did not run."""
        if self._drift_html:
            return self._drift_html
        check = next((c for c in self.checks if c.name == CHECK_REPRESENTATIVE), None)
        why = check.observed if check is not None else "not run"
        return standalone_html(
            self.model_name, f"<p>No Evidently drift report: representativeness {html.escape(why)}.</p>"
        )

    def write_artifacts(self, directory: str | Path) -> dict[str, Path]:
        """Write the three artifacts the quantization run logs; returns them by file name."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        out = {
            ARTIFACT_VALIDATION_HTML: d / ARTIFACT_VALIDATION_HTML,
            ARTIFACT_DRIFT_HTML: d / ARTIFACT_DRIFT_HTML,
            ARTIFACT_REPORT_JSON: d / ARTIFACT_REPORT_JSON,
        }
        out[ARTIFACT_VALIDATION_HTML].write_text(self.validation_html(), encoding="utf-8")
        out[ARTIFACT_DRIFT_HTML].write_text(self.drift_html(), encoding="utf-8")
        out[ARTIFACT_REPORT_JSON].write_text(self.to_json(), encoding="utf-8")
        return out


def expectations_file_for(model_name: str, project_dir: str | Path) -> Path:
    """Where a model's expectation overrides live: ``<project>/policies/expectations/<model>.yaml``."""
    return Path(project_dir) / "policies" / "expectations" / f"{model_name}.yaml"


# --------------------------------------------------------------------------- helpers


def _drift_table_html(drift: dict[str, Any] | None) -> str:
    if not drift:
        return ""
    rows = []
    for c in drift.get("columns", []):
        cls = ' class="qg-row-bad"' if c["drifted"] else ""
        status = '<span class="qg-bad">drifted</span>' if c["drifted"] else '<span class="qg-ok">ok</span>'
        rows.append(
            f"<tr{cls}><td>{html.escape(str(c['column']))}</td><td>{html.escape(str(c['kind']))}</td>"
            f"<td>{html.escape(str(c['stattest']))}</td><td>{c['score']:.4g}</td><td>{c['threshold']:.4g}</td>"
            f"<td>{status}</td></tr>"
        )
    excluded = drift.get("excluded_columns") or {}
    note = (
        "<p>Not compared: " + html.escape("; ".join(f"{k} ({v})" for k, v in excluded.items())) + "</p>"
        if excluded
        else ""
    )
    return (
        f"<h3>Representativeness: {drift['n_drifted']} of {drift['n_columns']} columns drifted "
        f"(share {drift['drifted_share']:.2f}, bound {drift['bound']:.2f})</h3>"
        "<table><thead><tr><th>column</th><th>kind</th><th>test</th><th>score</th><th>threshold</th>"
        f"<th>verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{note}"
    )


def _as_text(s: pd.Series) -> pd.Series:
    """Values as ``str`` (nulls kept as None), cheaply when they already are strings."""
    import pandas as pd

    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
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
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            out[c] = s.to_numpy(dtype="float64", na_value=np.nan)
        else:
            out[c] = _as_text(s).to_numpy()
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


def _row_hashes(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    import numpy as np
    import pandas as pd

    return pd.util.hash_pandas_object(_hashable(df, columns), index=False).to_numpy(dtype=np.uint64)


def _pct(x: float) -> str:
    return f"{100.0 * x:.2f}%"


def _skip(name: str, why: str, expected: str, column: str | None = None) -> CheckResult:
    return CheckResult(
        name=name, column=column, passed=True, skipped=True, observed=f"skipped: {why}", expected=expected
    )


def _group_checks(
    calibration: pd.DataFrame, reference: pd.DataFrame, attributes: list[str], min_rows: int
) -> list[CheckResult]:
    """Every group of every sensitive attribute seen in the reference needs ``min_rows`` rows."""
    from quantgate.validate.profile import MAX_CATEGORIES

    out = []
    for attr in attributes:
        name = group_check_name(attr)
        expected = f">= {min_rows} rows in every group of '{attr}' seen in the reference data"
        if attr not in reference.columns:
            out.append(
                CheckResult(
                    name=name,
                    column=attr,
                    passed=False,
                    observed="not a column of the reference data",
                    expected=expected,
                )
            )
            continue
        groups = list(reference[attr].dropna().unique())
        if len(groups) > MAX_CATEGORIES:
            out.append(
                CheckResult(
                    name=name,
                    column=attr,
                    passed=False,
                    observed=f"{len(groups)} distinct values in the reference: not a grouping attribute",
                    expected=expected,
                )
            )
            continue
        if attr not in calibration.columns:
            out.append(
                CheckResult(
                    name=name,
                    column=attr,
                    passed=False,
                    observed="column missing from the calibration data",
                    expected=expected,
                )
            )
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
        out.append(CheckResult(name=name, column=attr, passed=not short, observed=observed, expected=expected))
    return out


def _overlap_check(calibration: pd.DataFrame, evaluation: pd.DataFrame | None, features: list[str]) -> CheckResult:
    """Rows of the calibration data whose features also appear in the evaluation split."""
    expected = "no calibration row also in the evaluation data (row hashes over the shared feature columns)"
    if evaluation is None:
        return _skip(CHECK_OVERLAP, "no evaluation data given", expected)
    shared = [c for c in features if c in calibration.columns and c in evaluation.columns]
    if not shared:
        return _skip(CHECK_OVERLAP, "no feature column shared with the evaluation data", expected)
    if len(calibration) == 0 or len(evaluation) == 0:
        return _skip(CHECK_OVERLAP, "no rows to compare", expected)
    import numpy as np

    cal = _row_hashes(calibration, shared)
    ev = np.unique(_row_hashes(evaluation, shared))
    n = int(np.isin(cal, ev).sum())
    return CheckResult(
        name=CHECK_OVERLAP,
        passed=n == 0,
        observed=f"{n} of {len(cal)} calibration rows ({_pct(n / len(cal))}) also in the evaluation data"
        f" ({len(shared)} columns compared)",
        expected=expected,
    )


def _duplicate_check(calibration: pd.DataFrame, features: list[str], bound: float) -> CheckResult:
    expected = f"<= {_pct(bound)} of rows repeat an earlier row (feature columns)"
    cols = [c for c in features if c in calibration.columns]
    if len(calibration) == 0 or not cols:
        return _skip(CHECK_DUPLICATES, "no rows" if len(calibration) == 0 else "no feature columns", expected)
    import pandas as pd

    dup = pd.Series(_row_hashes(calibration, cols)).duplicated()
    n = int(dup.sum())
    share = n / len(calibration)
    return CheckResult(
        name=CHECK_DUPLICATES,
        passed=share <= bound,
        observed=f"{n} of {len(calibration)} rows ({_pct(share)}) are repeats",
        expected=expected,
    )


def _label_check(
    calibration: pd.DataFrame, profile: DataProfile, label: str | None, bounds: tuple[float, float] | None
) -> CheckResult | None:
    """Share of each reference class in the calibration data, within the policy's bounds."""
    if label is None:
        return None
    name = label_check_name(label)
    if bounds is None:
        return _skip(name, "label_share_bounds is off in the policy", "no bound", label)
    lo, hi = bounds
    expected = f"each class's share in [{_pct(lo)}, {_pct(hi)}]"
    if label not in profile.column_names or profile.column(label).kind not in ("categorical", "boolean"):
        return _skip(name, "the label is not a set of classes in the reference", expected, label)
    if label not in calibration.columns:
        return _skip(name, "no label column in the calibration data (the columns check reports it)", expected, label)
    s = calibration[label].dropna()
    if len(s) == 0:
        return _skip(name, "no labelled rows", expected, label)
    shares = s.value_counts(normalize=True)
    classes = profile.column(label).values or []
    seen = {c: float(shares.get(c, 0.0)) for c in classes}
    bad = {c: v for c, v in seen.items() if not lo <= v <= hi}
    observed = ", ".join(f"{c}: {_pct(v)}" for c, v in seen.items())
    return CheckResult(
        name=name,
        column=label,
        passed=not bad,
        observed=("out of bounds: " if bad else "") + clip(observed, 300),
        expected=expected,
    )


def _drift_frames(
    calibration: pd.DataFrame, reference: pd.DataFrame, profile: DataProfile, text_columns: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[str]], dict[str, str]]:
    """Reference/calibration frames Evidently can compare, column kinds, and columns left out (why).

    Columns that the GX suite already reports as broken (missing, wrong type, all null) are left
    out rather than crash Evidently: representativeness judges the data that is comparable.
    """
    import numpy as np
    import pandas as pd

    ref: dict[str, Any] = {}
    cal: dict[str, Any] = {}
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": []}
    excluded: dict[str, str] = {}

    def numeric(s: pd.Series) -> np.ndarray:
        arr = s.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        arr[~np.isfinite(arr)] = np.nan  # inf is the finite check's business, not a drift crash
        return arr

    def is_number(s: pd.Series) -> bool:
        return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)

    for c in profile.columns:
        name = c.name
        if name not in calibration.columns:
            excluded[name] = "missing"
            continue
        r, k = reference[name], calibration[name]
        col, kind = name, "categorical"
        if name in text_columns or c.kind == "text":
            if pd.api.types.infer_dtype(k, skipna=True) not in ("string", "empty"):
                excluded[name] = "not text"
                continue
            col, kind = f"{name}{LENGTH_SUFFIX}", "numeric"
            r_vals = r.astype(str).str.split().str.len().to_numpy(dtype="float64")
            k_vals = k.where(k.notna(), "").astype(str).str.split().str.len().to_numpy(dtype="float64")
        elif c.kind == "numeric":
            if not is_number(k):
                excluded[name] = "not numeric"
                continue
            kind, r_vals, k_vals = "numeric", numeric(r), numeric(k)
        elif is_number(r) and is_number(k):
            r_vals, k_vals = r.to_numpy(), k.to_numpy()
        else:  # compare categories by their text, so "1" and 1, or category and object, agree
            r_vals, k_vals = _as_text(r).to_numpy(), _as_text(k).to_numpy()
        if pd.isna(k_vals).all():
            excluded[name] = "all null"
            continue
        ref[col], cal[col] = r_vals, k_vals
        kinds[kind].append(col)
    ref_df = pd.DataFrame({k: np.asarray(v) for k, v in ref.items()}, index=pd.RangeIndex(len(reference)))
    cal_df = pd.DataFrame({k: np.asarray(v) for k, v in cal.items()}, index=pd.RangeIndex(len(calibration)))
    return ref_df, cal_df, kinds, excluded


def _representativeness(
    calibration: pd.DataFrame,
    reference: pd.DataFrame,
    profile: DataProfile,
    text_columns: list[str],
    bound: float,
) -> tuple[CheckResult, dict[str, Any] | None, DriftResult | None]:
    expected = f"<= {_pct(bound)} of columns drifted vs the reference (Evidently, per column)"
    if len(calibration) < MIN_DRIFT_ROWS:
        return (
            _skip(
                CHECK_REPRESENTATIVE, f"{len(calibration)} rows < {MIN_DRIFT_ROWS}, too few for drift tests", expected
            ),
            None,
            None,
        )
    ref, cal, kinds, excluded = _drift_frames(calibration, reference, profile, text_columns)
    if cal.shape[1] == 0:
        return _skip(CHECK_REPRESENTATIVE, "no column comparable with the reference", expected), None, None
    if len(ref) > DRIFT_MAX_ROWS:
        ref = ref.sample(DRIFT_MAX_ROWS, random_state=0)
    if len(cal) > DRIFT_MAX_ROWS:
        cal = cal.sample(DRIFT_MAX_ROWS, random_state=0)
    from quantgate.monitor.drift import detect_drift

    try:
        result = detect_drift(
            ref,
            cal,
            numeric=kinds["numeric"],
            categorical=kinds["categorical"],
            drift_share=min(max(bound, 1e-9), 1.0),
        )
    except Exception as exc:  # fail closed: an unmeasured set is not a representative one
        log.warning("Evidently drift failed on the calibration data", exc_info=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            CheckResult(
                name=CHECK_REPRESENTATIVE, passed=False, observed="error: " + clip(first, 200), expected=expected
            ),
            None,
            None,
        )
    summary = result.to_dict()
    summary["bound"] = bound
    summary["excluded_columns"] = excluded
    summary["text_length_columns"] = [c for c in cal.columns if c.endswith(LENGTH_SUFFIX)]
    drifted = result.drifted_columns
    observed = f"{result.n_drifted} of {result.n_columns} columns drifted ({_pct(result.drifted_share)})"
    if drifted:
        observed += ": " + clip(", ".join(drifted), 200)
    check = CheckResult(
        name=CHECK_REPRESENTATIVE,
        passed=result.drifted_share <= bound + 1e-12,
        observed=observed,
        expected=expected,
    )
    return check, summary, result


# --------------------------------------------------------------------------- the step


def govern_calibration(
    calibration: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    evaluation: pd.DataFrame | None,
    label: str | None,
    sensitive_attributes: list[str],
    text_columns: list[str],
    policy: CalibrationPolicy,
    model_name: str,
    expectations_file: Path | None = None,
    profile: DataProfile | None = None,
    render_html: bool = True,
) -> CalibrationReport:
    """Run every calibration check and return the report; never raises on bad *data*.

    ``profile`` is the reference profile when one is stored with the model (else it is built
    from ``reference``); ``expectations_file`` is used when it exists. A broken expectations file
    or a non-DataFrame input is an error (:class:`ConfigError` / :class:`DataError`): those are
    configuration mistakes, not properties of the data. Call :meth:`CalibrationReport.raise_if_failed`
    to stop the flow.
    """
    import pandas as pd

    from quantgate.validate.gx_suite import validate_frame
    from quantgate.validate.profile import profile_frame

    for role, df in (("calibration", calibration), ("reference", reference), ("evaluation", evaluation)):
        if df is not None and not isinstance(df, pd.DataFrame):
            raise DataError(f"{role} data must be a pandas DataFrame, got {type(df).__name__}")
    started = time.perf_counter()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    text_columns = list(text_columns)
    if profile is None:
        ref_label = label if label is not None and label in reference.columns else None
        profile = profile_frame(reference, label=ref_label, text_columns=text_columns)
    label = profile.label if label is None or label == profile.label else label
    timings["profile"] = time.perf_counter() - t

    t = time.perf_counter()
    overrides = None
    used_file: str | None = None
    if expectations_file is not None and Path(expectations_file).is_file():
        from quantgate.validate.expectations import load_expectations

        overrides = load_expectations(expectations_file)
        used_file = str(expectations_file)
    timings["expectations"] = time.perf_counter() - t

    t = time.perf_counter()
    gx_report = validate_frame(
        calibration,
        profile,
        min_rows=policy.min_rows,
        range_tolerance=policy.range_tolerance,
        max_unseen_share=policy.max_unseen_share,
        suite_name=f"{model_name}-calibration",
        render_html=render_html,
        overrides=overrides,
    )
    timings["gx"] = time.perf_counter() - t

    t = time.perf_counter()
    # GX refuses duplicated names; the policy checks look at the first of each
    cal = (
        calibration.loc[:, ~calibration.columns.duplicated()] if calibration.columns.duplicated().any() else calibration
    )
    features = [c for c in profile.feature_columns if c in cal.columns]
    policy_checks: list[CheckResult] = []
    policy_checks += _group_checks(cal, reference, list(sensitive_attributes), policy.min_group_rows)
    policy_checks.append(_overlap_check(cal, evaluation, features))
    policy_checks.append(_duplicate_check(cal, features, policy.max_duplicate_share))
    lc = _label_check(cal, profile, label, policy.label_share_bounds)
    if lc is not None:
        policy_checks.append(lc)
    timings["policy"] = time.perf_counter() - t

    t = time.perf_counter()
    rep_check, drift_summary, drift_result = _representativeness(
        cal, reference, profile, text_columns, policy.max_drifted_share
    )
    timings["representativeness"] = time.perf_counter() - t

    checks = [*gx_report.checks, *policy_checks, rep_check]
    timings["total"] = time.perf_counter() - started
    report = CalibrationReport(
        model_name=model_name,
        passed=all(c.passed for c in checks),
        row_count=len(calibration),
        checks=checks,
        gx=gx_report,
        drift=drift_summary,
        policy=policy,
        expectations_file=used_file,
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )
    if drift_result is not None and render_html:
        report._drift_html = drift_result.html
    log.info("%s", report.summary())
    return report


def report_from_json(text: str) -> CalibrationReport:
    """Read back a ``calibration_report.json`` (without its HTML)."""
    return CalibrationReport.model_validate(json.loads(text))
