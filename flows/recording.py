"""What every governing flow does around its record step: name the Prefect run in the provenance,
and announce the registered candidate (``candidate_pending`` or ``gate_failed``) through the outbox."""

from __future__ import annotations

from typing import Any


def run_builder() -> tuple[str, Any]:
    """This flow run's id ("" outside a run) and the provenance builder that names it: the flow,
    the run and the deployment (if any) that produced the candidate."""
    from prefect.runtime import deployment, flow_run

    from quantgate.cards.provenance import prefect_builder

    run_id = str(flow_run.get_id() or "")
    builder = prefect_builder(
        flow_run_id=run_id or None,
        flow_run_name=flow_run.get_name(),
        flow_name=flow_run.get_flow_name(),
        deployment_id=deployment.get_id(),
        deployment_name=deployment.get_name(),
    )
    return run_id, builder


def announce(mv: Any, verdict: Any, source_ref: str, recipe_label: str, log: Any) -> None:
    """The alert for a recorded candidate, and a log line naming where it went."""
    from quantgate.notify.emit import candidate_recorded

    notice = candidate_recorded(mv, verdict, source_ref, recipe_label)  # candidate_pending or gate_failed
    log.info("notified %s: %s", notice.alert.kind if notice.alert else "-", notice.deliveries)
