"""CalibrationPolicy: strict like the gate policy, light to import, sane bounds."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from quantgate.validate.report import CalibrationReport, CheckResult, ValidationReport, report_from_json
from quantgate.validate.schema import CalibrationPolicy


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


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print([m for m in {modules!r} if m in sys.modules])"
    return eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_import_is_light() -> None:
    """The gate policy imports CalibrationPolicy; pandas, GX and Evidently must not come along."""
    heavy = ("pandas", "numpy", "great_expectations", "evidently")
    assert _loaded_after("from quantgate.validate.schema import CalibrationPolicy; CalibrationPolicy()", heavy) == []


def test_the_policy_layer_does_not_import_the_governance_engine() -> None:
    engine = (
        "quantgate.validate.governance",
        "quantgate.validate.checks",
        "quantgate.validate.report",
        "quantgate.validate.representativeness",
        "great_expectations",
        "evidently",
    )
    assert _loaded_after("from quantgate.policy.schema import Policy", engine) == []


def _report(checks: list[CheckResult]) -> CalibrationReport:
    gx = ValidationReport(passed=True, suite_name="m-calibration", row_count=300, checks=[])
    return CalibrationReport(
        model_name="m",
        passed=not any(c.blocking for c in checks),
        row_count=300,
        checks=checks,
        gx=gx,
        policy=CalibrationPolicy(),
    )


OK = CheckResult.judged("row count", True, "300 rows", ">= 200 rows")
BAD = CheckResult.judged("sex: rows per group", False, "Female: 0 (missing)", ">= 30")


def test_report_summary_names_failed_checks_on_one_line() -> None:
    line = _report([OK, BAD]).summary()
    assert line == (
        "calibration data for 'm': 1 of 2 checks failed: sex: rows per group (Female: 0 (missing); wanted >= 30)"
    )
    assert [c.name for c in _report([OK, BAD]).failed()] == ["sex: rows per group"]
    assert _report([OK]).summary() == "calibration data for 'm': all 1 checks passed on 300 rows"


def test_a_not_run_check_is_never_counted_as_passed() -> None:
    optional = CheckResult.could_not_run("x", "no evaluation data given", "-", required=False)
    assert optional.status == "not_run" and not optional.passed and not optional.blocking
    assert optional.observed == "not run: no evaluation data given"
    report = _report([OK, optional])
    assert report.passed and report.failed() == [] and report.not_run() == [optional]
    assert report.summary() == (
        "calibration data for 'm': all 1 checks that ran passed on 300 rows;"
        " 1 not run: x (not run: no evaluation data given)"
    )
    assert report.metrics()["calibration_checks_not_run"] == 1.0


def test_a_required_check_that_could_not_run_fails_the_data() -> None:
    required = CheckResult.could_not_run("duplicate rows", "no rows", "<= 5%")
    assert required.blocking and required.observed == "could not run: no rows"
    report = _report([OK, required])
    assert not report.passed and report.failed() == [required]
    assert report.summary() == "calibration data for 'm': 1 of 2 checks failed: duplicate rows (could not run: no rows)"


def test_a_check_blocked_by_a_failed_one_is_named_once() -> None:
    from quantgate.validate.report import settle_blocked_by

    dependent = CheckResult.could_not_run(
        "sex: values in set", "column missing", "-", "sex", blocked_by="columns match"
    )
    cause = CheckResult.judged("columns match", False, "missing: sex", "-")
    settled = settle_blocked_by([cause, dependent])
    report = _report(settled)
    assert [c.name for c in report.failed()] == ["columns match"]
    assert report.summary().endswith("; 1 more could not run because of them")
    # without a failed cause (say, a team removed "columns match") the dependent blocks on its own
    (alone,) = settle_blocked_by([dependent])
    assert alone.blocked_by is None and _report([alone]).failed() == [alone]


def test_blocked_by_only_on_not_run_checks() -> None:
    with pytest.raises(ValidationError, match="only a not-run check"):
        CheckResult(name="x", status="failed", observed="-", expected="-", blocked_by="y")


def test_reports_written_before_status_are_read_back_without_counting_skips_as_passed() -> None:
    old = {
        "model_name": "m",
        "passed": True,
        "row_count": 300,
        "checks": [
            {"name": "row count", "passed": True, "observed": "300 rows", "expected": ">= 200", "skipped": False},
            {"name": "x", "passed": True, "skipped": True, "observed": "skipped: why", "expected": "-"},
        ],
        "gx": {"passed": True, "suite_name": "m-calibration", "row_count": 300, "checks": []},
        "policy": {},
    }
    import json

    report = report_from_json(json.dumps(old))
    assert [c.status for c in report.checks] == ["passed", "not_run"]
    assert report.checks[1].required is False and report.checks[1].skipped


def test_report_artifacts_without_drift_or_data_docs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rep = CheckResult.could_not_run("representativeness", "3 rows < 30", "-")
    paths = _report([OK, rep]).write_artifacts(tmp_path)
    assert "representativeness could not run: 3 rows &lt; 30" in paths["calibration_drift.html"].read_text(
        encoding="utf-8"
    )
    page = paths["calibration_validation.html"].read_text(encoding="utf-8")
    assert "quantgate calibration governance (m): FAILED" in page and "NOT RUN" in page
    again = report_from_json(paths["calibration_report.json"].read_text(encoding="utf-8"))
    assert again.checks == [OK, rep]


def test_a_report_cannot_claim_passed_with_a_blocking_check() -> None:
    required = CheckResult.could_not_run("duplicate rows", "no rows", "-")
    with pytest.raises(ValidationError, match="contradicts the checks"):
        ValidationReport(passed=True, suite_name="s", row_count=0, checks=[required])
    gx = ValidationReport(passed=True, suite_name="s", row_count=0, checks=[])
    with pytest.raises(ValidationError, match="contradicts the checks"):
        CalibrationReport(
            model_name="m", passed=True, row_count=0, checks=[required], gx=gx, policy=CalibrationPolicy()
        )
