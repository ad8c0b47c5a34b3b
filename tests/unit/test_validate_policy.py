"""CalibrationPolicy: strict like the gate policy, light to import, sane bounds."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from quantgate.validate.governance import CalibrationPolicy, CalibrationReport
from quantgate.validate.report import CheckResult, ValidationReport


def test_defaults() -> None:
    p = CalibrationPolicy()
    assert (p.min_rows, p.min_group_rows) == (200, 30)
    assert p.max_duplicate_share == 0.05
    assert p.label_share_bounds == (0.05, 0.95)
    assert (p.max_drifted_share, p.range_tolerance, p.max_unseen_share) == (0.5, 0.1, 0.01)


def test_frozen() -> None:
    with pytest.raises(ValidationError):
        CalibrationPolicy().min_rows = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"min_rowz": 10}, "min_rowz"),
        ({"min_rows": "200"}, "min_rows"),
        ({"min_rows": True}, "min_rows"),
        ({"min_rows": 2.5}, "min_rows"),
        ({"min_rows": 0}, "min_rows"),
        ({"min_group_rows": -1}, "min_group_rows"),
        ({"max_duplicate_share": 1.5}, "max_duplicate_share"),
        ({"max_drifted_share": -0.1}, "max_drifted_share"),
        ({"max_drifted_share": float("nan")}, "max_drifted_share"),
        ({"range_tolerance": -0.1}, "range_tolerance"),
        ({"max_unseen_share": 1.0}, "max_unseen_share"),
        ({"label_share_bounds": [0.9, 0.1]}, "label_share_bounds"),
        ({"label_share_bounds": [0.1, 1.5]}, "label_share_bounds"),
        ({"label_share_bounds": [0.1]}, "label_share_bounds"),
        ({"label_share_bounds": "0.1,0.9"}, "label_share_bounds"),
    ],
)
def test_refuses_bad_values_naming_the_key(data: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        CalibrationPolicy.model_validate(data)
    assert needle in str(info.value)


def test_yaml_shapes_are_accepted() -> None:
    """What yaml.safe_load gives: ints for floats, a list for the bounds, null to switch off."""
    p = CalibrationPolicy.model_validate({"max_drifted_share": 1, "label_share_bounds": [0, 1]})
    assert p.max_drifted_share == 1.0 and p.label_share_bounds == (0.0, 1.0)
    assert CalibrationPolicy.model_validate({"label_share_bounds": None}).label_share_bounds is None
    assert CalibrationPolicy.model_validate({"min_group_rows": 0}).min_group_rows == 0


def test_nests_in_a_strict_parent_like_the_gate_policy() -> None:
    class Gate(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
        calibration: CalibrationPolicy = CalibrationPolicy()

    assert Gate.model_validate({}).calibration == CalibrationPolicy()
    g = Gate.model_validate({"calibration": {"min_rows": 500, "label_share_bounds": [0.1, 0.9]}})
    assert g.calibration.min_rows == 500
    with pytest.raises(ValidationError, match=r"calibration\.treshold"):
        Gate.model_validate({"calibration": {"treshold": 1}})
    schema = Gate.model_json_schema()
    assert "CalibrationPolicy" in str(schema)


def test_import_is_light() -> None:
    """The gate policy imports CalibrationPolicy; pandas, GX and Evidently must not come along."""
    code = (
        "import sys; from quantgate.validate.governance import CalibrationPolicy; CalibrationPolicy();"
        "print([m for m in ('pandas', 'numpy', 'great_expectations', 'evidently') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _report(checks: list[CheckResult]) -> CalibrationReport:
    gx = ValidationReport(passed=True, suite_name="m-calibration", row_count=300, checks=[])
    return CalibrationReport(
        model_name="m",
        passed=all(c.passed for c in checks),
        row_count=300,
        checks=checks,
        gx=gx,
        policy=CalibrationPolicy(),
    )


def test_report_summary_names_failed_checks_on_one_line() -> None:
    ok = CheckResult(name="row count", passed=True, observed="300 rows", expected=">= 200 rows")
    skipped = CheckResult(name="x", passed=True, skipped=True, observed="skipped: why", expected="-")
    bad = CheckResult(name="sex: rows per group", passed=False, observed="Female: 0 (missing)", expected=">= 30")
    assert _report([ok, skipped]).summary() == "calibration data for 'm': all 2 checks passed on 300 rows (1 skipped)"
    line = _report([ok, bad]).summary()
    assert line == "calibration data for 'm': 1 of 2 checks failed: sex: rows per group (Female: 0 (missing))"
    assert [c.name for c in _report([ok, bad]).failed()] == ["sex: rows per group"]


def test_report_artifacts_without_drift_or_data_docs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = CheckResult(name="representativeness", passed=True, skipped=True, observed="skipped: 3 rows", expected="-")
    paths = _report([bad]).write_artifacts(tmp_path)
    assert "representativeness skipped: 3 rows" in paths["calibration_drift.html"].read_text(encoding="utf-8")
    assert "quantgate calibration governance (m): PASSED" in paths["calibration_validation.html"].read_text()
