"""HTML for check reports: self-contained (inline CSS) so a reviewer can read it offline from MLflow.

Rendering only: it takes check results and drift summaries and returns strings. It depends on
nothing in quantgate (the report models in :mod:`quantgate.validate.report` import it), so a
check is described here by the few attributes the table shows.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any, Protocol


class CheckResult(Protocol):
    """What the table reads from a :class:`quantgate.validate.report.CheckResult`."""

    @property
    def name(self) -> str: ...
    @property
    def observed(self) -> str: ...
    @property
    def expected(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def blocking(self) -> bool: ...


#: markers around the quantgate checks table inside a Data Docs page, so a caller that knows
#: more checks (the governance step) can swap in its own, fuller table
TABLE_START, TABLE_END = "<!-- quantgate-checks -->", "<!-- /quantgate-checks -->"

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


def _status_html(c: CheckResult) -> str:
    if c.status == "passed":
        return '<span class="qg-ok">pass</span>'
    if c.status == "failed":
        return '<span class="qg-bad">FAIL</span>'
    if c.blocking:
        return '<span class="qg-bad">NOT RUN</span>'
    return '<span class="qg-skip">not run</span>'


def checks_rows_html(checks: Sequence[CheckResult]) -> str:
    """``<tr>`` rows for a checks table: status, check, observed, expected."""
    rows = []
    for c in checks:
        cls = ' class="qg-row-bad"' if c.blocking else ""
        rows.append(
            f"<tr{cls}><td>{_status_html(c)}</td><td>{html.escape(c.name)}</td>"
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


def _num(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def drift_table_html(drift: dict[str, Any] | None) -> str:
    """The per-column representativeness evidence: compared columns, then columns not run (why)."""
    if not drift:
        return ""
    rows = []
    for c in drift.get("columns", []):
        cls = ' class="qg-row-bad"' if c["drifted"] else ""
        status = '<span class="qg-bad">drifted</span>' if c["drifted"] else '<span class="qg-ok">ok</span>'
        rows.append(
            f"<tr{cls}><td>{html.escape(str(c['column']))}</td><td>{html.escape(str(c['kind']))}</td>"
            f"<td>{html.escape(str(c['stattest']))}</td><td>{_num(c['score'])}</td><td>{_num(c['threshold'])}</td>"
            f"<td>{status}</td></tr>"
        )
    for column, why in (drift.get("not_run_columns") or {}).items():
        rows.append(
            f'<tr class="qg-row-bad"><td>{html.escape(str(column))}</td><td></td><td></td><td></td><td></td>'
            f'<td><span class="qg-bad">not run</span>: {html.escape(str(why))}</td></tr>'
        )
    return (
        f"<h3>Representativeness: {drift['n_drifted']} of {drift['n_columns']} compared columns drifted "
        f"(share {drift['drifted_share']:.2f}, bound {drift['bound']:.2f})"
        f"{'; ' + str(len(drift.get('not_run_columns') or {})) + ' not run' if drift.get('not_run_columns') else ''}"
        "</h3><table><thead><tr><th>column</th><th>kind</th><th>test</th><th>score</th><th>threshold</th>"
        f"<th>verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


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
