"""Calibration-data governance: profile the reference data, check new data against it.

Names are resolved lazily (PEP 562): importing this package (or
:mod:`quantgate.validate.governance` for :class:`CalibrationPolicy`) loads neither pandas nor
Great Expectations nor Evidently; they load on first use of a function that needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate._lazy import lazy_exports

if TYPE_CHECKING:
    from quantgate.validate.expectations import ExpectationOverrides, load_expectations, parse_expectations
    from quantgate.validate.governance import (
        CalibrationPolicy,
        CalibrationReport,
        expectations_file_for,
        govern_calibration,
    )
    from quantgate.validate.gx_suite import build_suite, validate_frame
    from quantgate.validate.profile import (
        MAX_CATEGORIES,
        ColumnKind,
        ColumnProfile,
        DataProfile,
        profile_frame,
    )
    from quantgate.validate.report import CheckResult, ValidationReport
    from quantgate.validate.sampling import sample_calibration

_EXPORTS: dict[str, str] = {
    "CalibrationPolicy": "quantgate.validate.governance",
    "CalibrationReport": "quantgate.validate.governance",
    "expectations_file_for": "quantgate.validate.governance",
    "govern_calibration": "quantgate.validate.governance",
    "ExpectationOverrides": "quantgate.validate.expectations",
    "load_expectations": "quantgate.validate.expectations",
    "parse_expectations": "quantgate.validate.expectations",
    "build_suite": "quantgate.validate.gx_suite",
    "validate_frame": "quantgate.validate.gx_suite",
    "MAX_CATEGORIES": "quantgate.validate.profile",
    "ColumnKind": "quantgate.validate.profile",
    "ColumnProfile": "quantgate.validate.profile",
    "DataProfile": "quantgate.validate.profile",
    "profile_frame": "quantgate.validate.profile",
    "CheckResult": "quantgate.validate.report",
    "ValidationReport": "quantgate.validate.report",
    "sample_calibration": "quantgate.validate.sampling",
}

__all__ = [
    "MAX_CATEGORIES",
    "CalibrationPolicy",
    "CalibrationReport",
    "CheckResult",
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
    "sample_calibration",
    "validate_frame",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
