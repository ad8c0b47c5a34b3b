"""Calibration-data governance: the GX suite, policy checks and representativeness, in one step.

A quantized model is only as good as its calibration data. :func:`govern_calibration` is the
gate in front of quantization; it answers three questions and reports every answer as a named
:class:`CheckResult` (observed value and bound), so a failed gate says exactly what to fix:

1. *Does it look like the training data?* The GX suite derived from the reference profile
   (:mod:`quantgate.validate.gx_suite`, run by :mod:`quantgate.validate.gx_run`), plus a team's
   ``policies/expectations/<model>.yaml`` (:mod:`quantgate.validate.expectations`).
2. *Is it fit to calibrate on?* Policy checks from :class:`CalibrationPolicy`
   (:mod:`quantgate.validate.checks`): rows per sensitive group, no overlap with the evaluation
   split, duplicate share, label balance. The minimum row count runs inside the GX suite
   ("row count"), so it is reported once.
3. *Is it representative?* Evidently drift per column (:mod:`quantgate.validate.representativeness`).

A check that cannot run is reported as not run, never as passed; a required one blocks.
This module is orchestration only: pandas, GX and Evidently load inside :func:`govern_calibration`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from quantgate.errors import DataError
from quantgate.validate.report import CalibrationReport, CheckResult, all_pass, settle_blocked_by
from quantgate.validate.schema import CalibrationPolicy

if TYPE_CHECKING:
    import pandas as pd

    from quantgate.validate.profile import DataProfile

#: ``CalibrationPolicy`` is re-exported for callers that import it from here (scripts/bench_validate.py);
#: its home is :mod:`quantgate.validate.schema`
__all__ = ["CalibrationPolicy", "expectations_file_for", "govern_calibration"]

log = logging.getLogger(__name__)


def expectations_file_for(model_name: str, project_dir: str | Path) -> Path:
    """Where a model's expectation overrides live: ``<project>/policies/expectations/<model>.yaml``."""
    return Path(project_dir) / "policies" / "expectations" / f"{model_name}.yaml"


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
    reference_is_calibration: bool = False,
) -> CalibrationReport:
    """Run every calibration check and return the report; never raises on bad *data*.

    ``profile`` is the reference profile stored with the model (read it with
    :func:`quantgate.validate.profile.read_profile`, which refuses an unreadable one); ``None``
    means the caller has no stored profile and it is derived from ``reference`` here, which the
    report records as ``profile_source="derived"``. ``expectations_file`` is used when it exists.
    A broken expectations file, a profile that is not a :class:`DataProfile`, or a non-DataFrame
    input is an error (:class:`ConfigError` / :class:`DataError`): configuration mistakes, not
    properties of the data. Call :meth:`CalibrationReport.raise_if_failed` to stop the flow.

    ``reference_is_calibration``: the onboarding names no ``reference_data``, so ``reference`` *is*
    the calibration data. Representativeness is then listed as not run (data compared with itself
    proves nothing) and a derived profile is recorded as derived from the calibration data itself.
    """
    import pandas as pd

    from quantgate.validate.checks import duplicate_check, group_checks, label_check, overlap_check
    from quantgate.validate.gx_run import validate_frame
    from quantgate.validate.profile import DataProfile, profile_frame
    from quantgate.validate.report import CHECK_REPRESENTATIVE
    from quantgate.validate.representativeness import Representativeness, representativeness

    for role, df in (("calibration", calibration), ("reference", reference), ("evaluation", evaluation)):
        if df is not None and not isinstance(df, pd.DataFrame):
            raise DataError(f"{role} data must be a pandas DataFrame, got {type(df).__name__}")
    if profile is not None and not isinstance(profile, DataProfile):
        raise DataError(
            f"the reference profile must be a DataProfile, got {type(profile).__name__}",
            "read a stored profile with quantgate.validate.read_profile(text, source=...)",
        )
    started = time.perf_counter()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    text_columns = list(text_columns)
    profile_source = "stored" if profile is not None else "derived"
    if profile is None and reference_is_calibration:
        profile_source = "derived from the calibration data itself (no reference_data)"
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
    policy_checks += group_checks(cal, reference, list(sensitive_attributes), policy.min_group_rows)
    policy_checks.append(overlap_check(cal, evaluation, features))
    policy_checks.append(duplicate_check(cal, features, policy.max_duplicate_share))
    lc = label_check(cal, profile, label, policy.label_share_bounds)
    if lc is not None:
        policy_checks.append(lc)
    timings["policy"] = time.perf_counter() - t

    t = time.perf_counter()
    if reference_is_calibration:
        rep = Representativeness(
            CheckResult.could_not_run(
                CHECK_REPRESENTATIVE,
                "no reference data: the calibration data would be compared with itself; set reference_data "
                "(the training data or a sample of it) in the onboarding",
                "calibration data drawn like the reference (training) data",
                required=False,
            ),
            None,
            None,
        )
    else:
        rep = representativeness(cal, reference, profile, text_columns, policy.max_drifted_share)
    timings["representativeness"] = time.perf_counter() - t

    checks = settle_blocked_by([*gx_report.checks, *policy_checks, rep.check])
    timings["total"] = time.perf_counter() - started
    report = CalibrationReport(
        model_name=model_name,
        passed=all_pass(checks),
        row_count=len(calibration),
        checks=checks,
        gx=gx_report,
        drift=rep.summary,
        policy=policy,
        expectations_file=used_file,
        profile_source=profile_source,
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )
    if rep.result is not None and render_html:
        report._drift_html = rep.result.html
    log.info("%s", report.summary())
    return report
