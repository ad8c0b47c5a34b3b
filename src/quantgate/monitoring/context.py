"""The small objects the monitoring steps share (values in, values out).

Every step returns a frozen dataclass with a ``line`` (what the flow logs for it) and, where the
step can find something wrong, ``notices``: the alerts it asks for, as text. The steps never send
anything; the alert step sends every notice once the record step has written the run they link to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: ``details.kind`` of the alert a check sends when it did not run (no column compared, a crash)
NOT_RUN = "not_run"
#: the title of a not-run alert (``{model}`` and ``{version}`` filled in by the alert step)
NOT_RUN_TITLE = "Monitoring check not run on {model} v{version}"


@dataclass(frozen=True)
class Notice:
    """An alert a step asks for: the notification kind, its one-line summary and details, and the
    artifact of the monitoring run it links to."""

    #: the notification kind (:data:`quantgate.notify.KINDS`): drift, disagreement or performance
    kind: str
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)
    report: str = "production.json"
    #: a title template instead of the kind's own (``{model}``, ``{version}``)
    title: str | None = None

    @property
    def not_run(self) -> bool:
        return self.details.get("kind") == NOT_RUN


def not_run_notice(kind: str, check: str, why: str, report: str, **details: Any) -> Notice:
    """The alert of a check that did not run: sent to the routes of the check's own kind (a route
    that wants drift alerts hears that drift was not checked), ``details.kind = "not_run"``."""
    return Notice(
        kind=kind,
        summary=f"{check} not run: {why}",
        details={"kind": NOT_RUN, "check": check, **details},
        report=report,
        title=NOT_RUN_TITLE,
    )
