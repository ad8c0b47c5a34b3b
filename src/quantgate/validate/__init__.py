"""Calibration-data governance: profile the reference data, check new data against it.

Modules, one concern each:

- ``schema``: :class:`CalibrationPolicy`, the ``calibration:`` section of a gate policy (pydantic only);
- ``profile``: the reference-data profile (:func:`profile_frame`, :func:`read_profile`);
- ``gx_suite`` / ``gx_run`` / ``data_docs``: build the derived GX suite, run it, render Data Docs;
- ``expectations``: a team's ``policies/expectations/<model>.yaml``;
- ``checks``: pure policy checks (groups, leakage, duplicates, label balance);
- ``representativeness``: Evidently drift per column, through :mod:`quantgate.monitor.drift`;
- ``report`` / ``report_html``: check results, reports and their HTML;
- ``governance``: the step that runs them all (:func:`govern_calibration`).

Names are resolved lazily (PEP 562): importing this package (or :mod:`quantgate.validate.schema`
for :class:`CalibrationPolicy`) loads neither pandas nor Great Expectations nor Evidently; they
load on first use of a function that needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate._lazy import lazy_exports

if TYPE_CHECKING:
    from quantgate.validate.expectations import ExpectationOverrides, load_expectations, parse_expectations
    from quantgate.validate.governance import expectations_file_for, govern_calibration
    from quantgate.validate.gx_run import validate_frame
    from quantgate.validate.gx_suite import build_suite
    from quantgate.validate.profile import (
        MAX_CATEGORIES,
        ColumnKind,
        ColumnProfile,
        DataProfile,
        profile_frame,
        read_profile,
    )
    from quantgate.validate.report import (
        CalibrationReport,
        CheckResult,
        CheckStatus,
        ValidationReport,
        report_from_json,
    )
    from quantgate.validate.sampling import sample_calibration
    from quantgate.validate.schema import CalibrationPolicy

_EXPORTS: dict[str, str] = {
    "CalibrationPolicy": "quantgate.validate.schema",
    "CalibrationReport": "quantgate.validate.report",
    "expectations_file_for": "quantgate.validate.governance",
    "govern_calibration": "quantgate.validate.governance",
    "ExpectationOverrides": "quantgate.validate.expectations",
    "load_expectations": "quantgate.validate.expectations",
    "parse_expectations": "quantgate.validate.expectations",
    "build_suite": "quantgate.validate.gx_suite",
    "validate_frame": "quantgate.validate.gx_run",
    "MAX_CATEGORIES": "quantgate.validate.profile",
    "ColumnKind": "quantgate.validate.profile",
    "ColumnProfile": "quantgate.validate.profile",
    "DataProfile": "quantgate.validate.profile",
    "profile_frame": "quantgate.validate.profile",
    "read_profile": "quantgate.validate.profile",
    "CheckResult": "quantgate.validate.report",
    "CheckStatus": "quantgate.validate.report",
    "report_from_json": "quantgate.validate.report",
    "ValidationReport": "quantgate.validate.report",
    "sample_calibration": "quantgate.validate.sampling",
}

__all__ = [
    "MAX_CATEGORIES",
    "CalibrationPolicy",
    "CalibrationReport",
    "CheckResult",
    "CheckStatus",
    "ColumnKind",
    "ColumnProfile",
    "DataProfile",
    "ExpectationOverrides",
    "ValidationReport",
    "build_suite",
    "expectations_file_for",
    "govern_calibration",
    "load_expectations",
    "parse_expectations",
    "profile_frame",
    "read_profile",
    "report_from_json",
    "sample_calibration",
    "validate_frame",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
