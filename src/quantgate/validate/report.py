"""Check results and their HTML, kept free of pandas / GX / Evidently.

These models are what the flow logs and what the gate policy's ``calibration`` section refers
to, so importing them must stay cheap (``quantgate policy validate`` should not load pandas).
The HTML is self-contained (inline CSS) so a reviewer can read it offline from MLflow.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from quantgate.errors import ValidationFailed

#: markers around the quantgate checks table inside a Data Docs page, so a caller that knows
#: more checks (the governance step) can swap in its own, fuller table
TABLE_START, TABLE_END = "<!-- quantgate-checks -->", "<!-- /quantgate-checks -->"


class CheckResult(BaseModel):
    """One named check, readable without knowing GX.

    ``skipped`` marks a check that could not apply (no evaluation data, too few rows for a drift
    test); it counts as passed, but the report says so instead of hiding it.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    column: str | None = None
    passed: bool
    observed: str
    expected: str
    skipped: bool = False


def clip(text: str, n: int) -> str:
    """Shorten ``text`` to ``n`` characters for one-line summaries."""
    return text if len(text) <= n else text[: n - 3] + "..."


def failed_summary(title: str, checks: Sequence[CheckResult], row_count: int) -> str:
    """One line: all passed, or which checks failed and what was seen."""
    bad = [c for c in checks if not c.passed]
    if not bad:
        skipped = sum(c.skipped for c in checks)
        note = f" ({skipped} skipped)" if skipped else ""
        return f"{title}: all {len(checks)} checks passed on {row_count} rows{note}"
    parts = "; ".join(f"{c.name} ({clip(c.observed, 90)})" for c in bad)
    return f"{title}: {len(bad)} of {len(checks)} checks failed: {parts}"


class ValidationReport(BaseModel):
    """Outcome of validating one frame; JSON-serialisable so the flow can log it."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    suite_name: str
    row_count: int
    checks: list[CheckResult]
    data_docs_html: str | None = None

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

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


# --------------------------------------------------------------------------- HTML

CSS = """
.qg-report{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;
  padding:12px 16px;border:2px solid #888;border-radius:8px;background:#fff;color:#222}
.qg-report.qg-pass{border-color:#2e7d32}.qg-report.qg-fail{border-color:#c62828}
.qg-report h2{margin:0 0 8px 0;font-size:1.25em}
.qg-report h3{margin:12px 0 6px 0;font-size:1.05em}
.qg-report table{border-collapse:collapse;width:100%;font-size:.9em}
.qg-report th,.qg-report td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
.qg-report th{background:#f3f3f3}
.qg-ok{color:#2e7d32;font-weight:bold}.qg-bad{color:#c62828;font-weight:bold}.qg-skip{color:#777;font-weight:bold}
.qg-report tr.qg-row-bad{background:#fdecea}
"""


def checks_rows_html(checks: Sequence[CheckResult]) -> str:
    """``<tr>`` rows for a checks table: status, check, observed, expected."""
    rows = []
    for c in checks:
        if not c.passed:
            status = '<span class="qg-bad">FAIL</span>'
        elif c.skipped:
            status = '<span class="qg-skip">skipped</span>'
        else:
            status = '<span class="qg-ok">pass</span>'
        cls = "" if c.passed else ' class="qg-row-bad"'
        rows.append(
            f"<tr{cls}><td>{status}</td><td>{html.escape(c.name)}</td>"
            f"<td>{html.escape(c.observed)}</td><td>{html.escape(c.expected)}</td></tr>"
        )
    return "".join(rows)


def checks_block_html(title: str, passed: bool, summary: str, checks: Sequence[CheckResult], extra: str = "") -> str:
    """Self-contained (inline CSS) block with the checks table, between :data:`TABLE_START`/``END``."""
    state = "qg-pass" if passed else "qg-fail"
    return (
        f'{TABLE_START}<style>{CSS}</style><div class="qg-report {state}" id="quantgate-checks">'
        f"<h2>{html.escape(title)}: {'PASSED' if passed else 'FAILED'}</h2>"
        f"<p>{html.escape(summary)}</p>"
        "<table><thead><tr><th>status</th><th>check</th><th>observed</th><th>expected</th>"
        f"</tr></thead><tbody>{checks_rows_html(checks)}</tbody></table>{extra}</div>{TABLE_END}"
    )


def checks_html(report: ValidationReport) -> str:
    """The checks table of a GX-only :class:`ValidationReport`."""
    return checks_block_html("quantgate data validation", report.passed, report.summary(), report.checks)


def standalone_html(title: str, body: str) -> str:
    """A minimal page around ``body`` (used when there is no Data Docs page)."""
    t = html.escape(f"quantgate validation: {title}")
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{t}</title></head><body>{body}</body></html>'


def inject_after_body(page: str, fragment: str) -> str:
    """Put ``fragment`` first inside ``<body>`` (or in front of the page if it has none)."""
    start = page.find("<body")
    end = page.find(">", start) if start >= 0 else -1
    if end < 0:
        return fragment + page
    return page[: end + 1] + fragment + page[end + 1 :]


def replace_checks_block(page: str, fragment: str) -> str:
    """Swap the marked checks block of ``page`` for ``fragment`` (or add it after ``<body>``)."""
    start = page.find(TABLE_START)
    end = page.find(TABLE_END, start) if start >= 0 else -1
    if start < 0 or end < 0:
        return inject_after_body(page, fragment)
    return page[:start] + fragment + page[end + len(TABLE_END) :]
