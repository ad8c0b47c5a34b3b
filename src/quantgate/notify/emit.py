"""The governance events' alerts, one function each, so emitters stay one line.

Callers pass plain values (a ModelVersion is read by attribute only): this package never imports
``quantgate.registry.mlflow_registry``, which calls :func:`promoted` itself.
"""

from __future__ import annotations

from typing import Any

from quantgate.notify.api import NotifyOutcome, notify
from quantgate.registry import contract as c
from quantgate.settings import Settings


def candidate_recorded(
    mv: Any, verdict: Any, source_ref: str, recipe: str, *, settings: Settings | None = None
) -> NotifyOutcome:
    """After registration: ``candidate_pending`` (it passed; a person approves) or ``gate_failed``."""
    name, version = str(mv.name), str(mv.version)
    source = name.removesuffix(c.SUFFIX)
    failed = list(getattr(verdict, "failed_rules", []) or [])
    if str(verdict.status) == "pass":
        kind = "candidate_pending"
        summary = (
            f"{name} v{version} ({recipe}, from {source_ref}) passed its gate and is @{c.ALIAS_CANDIDATE}. "
            f"A reviewer sets tag {c.TAG_APPROVAL}=approved on it in the MLflow UI, then: "
            f"quantgate promote {source}"
        )
    else:
        kind = "gate_failed"
        summary = (
            f"{name} v{version} ({recipe}, from {source_ref}) failed its gate: {', '.join(failed) or verdict.status}. "
            "It is registered for the record, without an alias, and can never be promoted."
        )
    return notify(
        kind,
        name,
        version,
        summary,
        details={"source": source_ref, "recipe": recipe, "verdict": str(verdict.status), "failed_rules": failed},
        run_id=getattr(mv, "run_id", None) or None,
        report="model_card.md",
        settings=settings,
    )


def promoted(mv: Any, previous: str | None, *, settings: Settings | None = None) -> NotifyOutcome:
    """After ``champion`` moved to ``mv``."""
    name, version = str(mv.name), str(mv.version)
    was = f" (was v{previous})" if previous and previous != version else ""
    tags = dict(getattr(mv, "tags", None) or {})
    by = tags.get("quantgate.approved_by")
    return notify(
        "promoted",
        name,
        version,
        f"{name} v{version} is now @{c.ALIAS_CHAMPION}{was}" + (f"; approved by {by}." if by else "."),
        details={"previous_champion": previous, "source": tags.get("quantgate.source"), "approved_by": by},
        run_id=getattr(mv, "run_id", None) or None,
        report="model_card.md",
        settings=settings,
    )


def gate_failed_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_failure`` hook of ``quantize-model``: when no candidate could meet the policy
    (``GateFailed``: the recipe search found none, nothing was registered), say so as ``gate_failed``.
    Other failures are the flow run's own (Prefect shows them); they are not gate verdicts."""
    from quantgate.errors import GateFailed

    exc = state.result(raise_on_failure=False)
    if not isinstance(exc, GateFailed):
        return
    ref = str((getattr(flow_run, "parameters", None) or {}).get("model", "?"))
    name, _, version = ref.partition("/")
    name = name.split("@", 1)[0]
    notify(
        "gate_failed",
        name,
        version or ref.partition("@")[2] or "latest",
        f"No candidate of {ref} met its policy; nothing was registered. {exc.one_line()}",
        title=f"No quantized candidate of {ref} passed its gate",
        details={"source": ref, "flow_run": str(getattr(flow_run, "id", ""))},
    )
