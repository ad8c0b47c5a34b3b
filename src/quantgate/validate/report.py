"""Check results and reports, kept free of pandas / GX / Evidently.

These models are what the flow logs and what the CLI and the model card read, so importing
them must stay cheap. A check has one of three statuses, so a check that could not run is never
mistaken for one that passed:

- ``passed`` / ``failed``: the check ran and judged the data;
- ``not_run``: it could not run (the reason is in ``observed``). A *required* check that did not
  run blocks like a failure ("could not run: <reason>"); an optional one (switched off in the
  policy, or with nothing to compare against) is listed as "not run: <reason>" and the summary
  says so. ``blocked_by`` names the failed check that made it impossible (a column's range
  check when "columns match" already reports the column missing), so the root cause is
  reported once.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from quantgate.errors import ValidationFailed
from quantgate.validate.report_html import (
    checks_block_html,
    drift_table_html,
    replace_checks_block,
    standalone_html,
)
from quantgate.validate.schema import CalibrationPolicy

CheckStatus = Literal["passed", "failed", "not_run"]

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


def clip(text: str, n: int) -> str:
    """Shorten ``text`` to ``n`` characters for one-line summaries."""
    return text if len(text) <= n else text[: n - 3] + "..."


class CheckResult(BaseModel):
    """One named check, readable without knowing GX; see the module docstring for the statuses."""

    model_config = ConfigDict(extra="forbid")

    name: str
    column: str | None = None
    status: CheckStatus
    observed: str
    expected: str
    required: bool = True
    blocked_by: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_legacy(cls, data: Any) -> Any:
        """Read reports written before ``status`` existed (``passed`` + ``skipped`` booleans).

        Old reports counted a skipped check as passed; it is read back as an optional not-run
        check, which is what it was.
        """
        if isinstance(data, dict) and "status" not in data and "passed" in data:
            data = dict(data)
            passed, skipped = bool(data.pop("passed")), bool(data.pop("skipped", False))
            data["status"] = "not_run" if skipped else ("passed" if passed else "failed")
            if skipped:
                data.setdefault("required", False)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> CheckResult:
        if self.blocked_by is not None and self.status != "not_run":
            raise ValueError(f"check '{self.name}': only a not-run check can be blocked by another")
        return self

    @classmethod
    def judged(cls, name: str, passed: bool, observed: str, expected: str, column: str | None = None) -> CheckResult:
        """A check that ran: passed or failed."""
        status: CheckStatus = "passed" if passed else "failed"
        return cls(name=name, column=column, status=status, observed=observed, expected=expected)

    @classmethod
    def could_not_run(
        cls,
        name: str,
        reason: str,
        expected: str,
        column: str | None = None,
        *,
        required: bool = True,
        blocked_by: str | None = None,
    ) -> CheckResult:
        """A check that could not run; ``required`` decides whether that blocks the data."""
        prefix = "could not run: " if required else "not run: "
        return cls(
            name=name,
            column=column,
            status="not_run",
            observed=prefix + reason,
            expected=expected,
            required=required,
            blocked_by=blocked_by,
        )

    @property
    def passed(self) -> bool:
        """True only for a check that ran and passed; never for a check that did not run."""
        return self.status == "passed"

    @property
    def not_run(self) -> bool:
        return self.status == "not_run"

    @property
    def skipped(self) -> bool:
        """Deprecated alias of :attr:`not_run` (read ``status`` instead)."""
        return self.not_run

    @property
    def blocking(self) -> bool:
        """Whether this check stops the data: it failed, or it was required and could not run."""
        return self.status == "failed" or (self.status == "not_run" and self.required)


def blocking_checks(checks: Sequence[CheckResult]) -> list[CheckResult]:
    """The checks to name when data is refused: failed or required-but-not-run, root causes only."""
    blocking = [c for c in checks if c.blocking]
    return [c for c in blocking if c.blocked_by is None] or blocking


def settle_blocked_by(checks: list[CheckResult]) -> list[CheckResult]:
    """Keep ``blocked_by`` only where the named check is in ``checks`` and failed.

    A not-run check defers to its cause only when that cause is reported as a failure; if the
    cause was removed by a team's expectations file, or passed, the not-run check blocks on its
    own and is named in the summary.
    """
    failed = {c.name for c in checks if c.status == "failed"}
    return [
        c.model_copy(update={"blocked_by": None}) if c.blocked_by is not None and c.blocked_by not in failed else c
        for c in checks
    ]


def all_pass(checks: Sequence[CheckResult]) -> bool:
    """Data passes when no check blocks (a required check that did not run blocks)."""
    return not any(c.blocking for c in checks)


def _check_verdict(passed: bool, checks: Sequence[CheckResult]) -> None:
    """A report cannot say "passed" while a check blocks (or "failed" with none blocking)."""
    if passed != all_pass(checks):
        blocking = [c.name for c in checks if c.blocking]
        raise ValueError(f"passed={passed} contradicts the checks (blocking: {blocking or 'none'})")


def failed_summary(title: str, checks: Sequence[CheckResult], row_count: int) -> str:
    """One line: all passed (and what did not run), or which checks failed and what was seen."""
    bad = blocking_checks(checks)
    not_run = [c for c in checks if c.not_run]
    if not bad:
        if not not_run:
            return f"{title}: all {len(checks)} checks passed on {row_count} rows"
        ran = len(checks) - len(not_run)
        listed = "; ".join(f"{c.name} ({clip(c.observed, 90)})" for c in not_run)
        return f"{title}: all {ran} checks that ran passed on {row_count} rows; {len(not_run)} not run: {listed}"
    parts = "; ".join(f"{c.name} ({clip(c.observed, 90)}{_wanted(c)})" for c in bad)
    line = f"{title}: {len(bad)} of {len(checks)} checks failed: {parts}"
    dependent = sum(c.blocked_by is not None for c in checks if c not in bad)
    if dependent:
        line += f"; {dependent} more could not run because of them"
    return line


def _wanted(check: CheckResult) -> str:
    """What a failed check wanted, beside what it saw (a check that could not run says why instead)."""
    if check.status != "failed" or check.observed.startswith("could not run") or check.expected in ("", "-"):
        return ""
    return f"; wanted {clip(check.expected, 70)}"


class ValidationReport(BaseModel):
    """Outcome of validating one frame; JSON-serialisable so the flow can log it."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    suite_name: str
    row_count: int
    checks: list[CheckResult]
    data_docs_html: str | None = None

    @model_validator(mode="after")
    def _verdict_matches_checks(self) -> ValidationReport:
        _check_verdict(self.passed, self.checks)
        return self

    def failed(self) -> list[CheckResult]:
        """Checks that stop the data (failed, or required and not run), root causes only."""
        return blocking_checks(self.checks)

    def summary(self) -> str:
        """One line: all passed, or which checks failed and what was seen."""
        return failed_summary(self.suite_name, self.checks, self.row_count)

    def raise_if_failed(self) -> None:
        """Stop the flow with a one-line error naming the failed checks."""
        if not self.passed:
            raise ValidationFailed(
                self.summary(),
                "fix the calibration data, or re-profile the reference data if it changed",
            )

    def write_html(self, path: str | Path) -> Path:
        """Write the Data Docs page (or, without one, the checks table) to ``path``."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.data_docs_html or standalone_html(self.suite_name, checks_html(self)), encoding="utf-8")
        return p


def checks_html(report: ValidationReport) -> str:
    """The checks table of a GX-only :class:`ValidationReport`."""
    return checks_block_html("quantgate data validation", report.passed, report.summary(), report.checks)


class CalibrationReport(BaseModel):
    """Every check on one calibration set, with the evidence; JSON for MLflow, HTML for people.

    ``profile_source`` says where the reference profile came from (``stored`` with the model,
    or ``derived`` from the reference data passed in), so the card shows which one was judged.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str
    passed: bool
    row_count: int
    checks: list[CheckResult]
    gx: ValidationReport
    drift: dict[str, Any] | None = None
    policy: CalibrationPolicy
    expectations_file: str | None = None
    profile_source: Literal["stored", "derived"] | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
    _drift_html: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _verdict_matches_checks(self) -> CalibrationReport:
        _check_verdict(self.passed, self.checks)
        return self

    def failed(self) -> list[CheckResult]:
        """Checks that stop the data (failed, or required and not run), root causes only."""
        return blocking_checks(self.checks)

    def not_run(self) -> list[CheckResult]:
        """Every check that could not run, required or optional."""
        return [c for c in self.checks if c.not_run]

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
            "calibration_checks_not_run": float(len(self.not_run())),
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
            extra=drift_table_html(self.drift),
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


def report_from_json(text: str) -> CalibrationReport:
    """Read back a ``calibration_report.json`` (without its HTML)."""
    return CalibrationReport.model_validate(json.loads(text))
