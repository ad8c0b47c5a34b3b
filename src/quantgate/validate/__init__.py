"""Calibration-data validation: profile the reference data, check new data against it.

Importing this package does not import Great Expectations; that happens on first use.
"""

from quantgate.validate.gx_suite import (
    CheckResult,
    ValidationReport,
    build_suite,
    validate_frame,
)
from quantgate.validate.profile import (
    MAX_CATEGORIES,
    ColumnKind,
    ColumnProfile,
    DataProfile,
    profile_frame,
)

__all__ = [
    "MAX_CATEGORIES",
    "CheckResult",
    "ColumnKind",
    "ColumnProfile",
    "DataProfile",
    "ValidationReport",
    "build_suite",
    "profile_frame",
    "validate_frame",
]
