"""GX's own Data Docs validation page, rendered in memory, with the quantgate checks table on top.

Rendered with the renderer that Data Docs sites use (``ValidationResultsPageRenderer`` +
``DefaultJinjaPageView``); no site is written to disk and nothing is fetched. Above it we insert
a self-contained table of every quantgate check (inline CSS, readable offline; the GX part links
Bootstrap/jQuery from CDNs, so it is styled only when the browser is online). Should GX
rendering fail, the page is our own HTML table, and the failure is logged as a warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pandas as pd

from quantgate.validate.report import ValidationReport, checks_html
from quantgate.validate.report_html import inject_after_body, standalone_html

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult

log = logging.getLogger(__name__)


def _renderable(v: Any) -> Any:
    """pd.NA / pd.NaT break GX's renderer (``bool(pd.NA)`` raises); show them as None."""
    return None if v is pd.NA or v is pd.NaT else v


def _sanitize_for_render(result: ExpectationSuiteValidationResult) -> None:
    for r in result.results:
        res = r.result
        if not isinstance(res, dict):
            continue
        if isinstance(res.get("partial_unexpected_list"), list):
            res["partial_unexpected_list"] = [_renderable(v) for v in res["partial_unexpected_list"]]
        if isinstance(res.get("partial_unexpected_counts"), list):
            res["partial_unexpected_counts"] = [
                {**c, "value": _renderable(c.get("value"))} if isinstance(c, dict) else c
                for c in res["partial_unexpected_counts"]
            ]


def data_docs_html(result: ExpectationSuiteValidationResult, report: ValidationReport) -> str:
    """GX Data Docs validation page with our checks table on top; ours alone if GX fails."""
    try:
        _sanitize_for_render(result)
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        page = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
        return inject_after_body(str(page), checks_html(report))
    except Exception:  # the report must not be lost to a rendering bug
        log.warning("GX Data Docs rendering failed; writing the plain checks table", exc_info=True)
        return standalone_html(report.suite_name, checks_html(report))
