"""What quantgate notifies about, and how each kind of event reads (pure: values in, an Alert out)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict, get_args

from quantgate.notify.webhook import Alert, Severity

Kind = Literal[
    "drift",
    "disagreement",
    "performance",
    "gate_failed",
    "candidate_pending",
    "promoted",
    "retraining",
    "retraining_refused",
    "promotion_refused",
    "rollback",
    "rejected",
]
KINDS: tuple[str, ...] = get_args(Kind)

#: kind -> (title template, default severity); ``{model}`` and ``{version}`` are filled in
_TEMPLATES: dict[str, tuple[str, Severity]] = {
    "drift": ("Data drift on {model} v{version}", "warning"),
    "disagreement": ("Production disagreement above the approved flip rate on {model} v{version}", "warning"),
    "performance": ("Accuracy below the gate-time figure on {model} v{version}", "warning"),
    "gate_failed": ("{model} v{version} failed its gate", "warning"),
    "candidate_pending": ("{model} v{version} is waiting for approval", "info"),
    "promoted": ("{model} v{version} promoted to @champion", "info"),
    "retraining": ("Retraining started for {model} (from v{version})", "info"),
    "retraining_refused": ("Retraining refused for {model} (v{version})", "warning"),
    "promotion_refused": ("Promotion refused for {model} v{version}", "warning"),
    "rollback": ("{model} rolled back to v{version}", "warning"),
    "rejected": ("{model} v{version} was rejected by a reviewer", "info"),
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind '{kind}': use one of {', '.join(KINDS)}")
    return kind


class AlertFields(TypedDict, total=False):
    """An alert's optional fields, as :func:`build_alert` takes them (and :func:`quantgate.notify.notify`
    passes them on to it)."""

    links: dict[str, str] | None
    details: dict[str, Any] | None
    title: str | None
    severity: Severity | None


def build_alert(
    kind: str,
    model: str,
    version: str | int,
    summary: str,
    links: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
    *,
    title: str | None = None,
    severity: Severity | None = None,
) -> Alert:
    """The alert for one event: the kind's title and severity unless given."""
    template, default_severity = _TEMPLATES[check_kind(kind)]
    return Alert(
        kind=kind,
        title=title or template.format(model=model, version=version),
        severity=severity or default_severity,
        model=model,
        version=str(version),
        summary=summary,
        details=details or {},
        links=dict(links or {}),
    )
