"""Prefect flow: promotion on approval. The ``promote-on-approval`` deployment (prefect.yaml) is
triggered by the ``quantgate.approval.granted`` event that ``quantgate receiver`` emits when a
reviewer approves a version in the MLflow UI.

It runs exactly the checks of ``quantgate promote`` (verdict, approval and its server stamp bound
to the signed provenance, signature and file digests, the target instruction set) through the same
``promote`` call; a refusal is a ledger entry, is sent to the alert route and fails the run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from quantgate.settings import configure_environment

ACTOR = "prefect:promote-on-approval"


@flow(name="promote-on-approval", log_prints=True)
def promote_on_approval(name: str, version: str | int) -> dict[str, Any]:
    """Move ``@champion`` of ``name`` to ``version`` if every promotion check passes (the
    trigger passes the event payload's strings; a number is accepted too)."""
    from quantgate.cards.trust import verify_for_promotion
    from quantgate.errors import RegistryError
    from quantgate.promotion.alerts import notify_entry
    from quantgate.promotion.service import ledger, promote

    configure_environment()
    log = get_run_logger()
    try:
        mv, previous = promote(name, str(version), verify=verify_for_promotion, actor=ACTOR)
    except RegistryError as exc:
        qname = name if name.endswith("-quantized") else f"{name}-quantized"
        stored = ledger().entries(qname) if _registered(qname) else []
        last = stored[-1].entry if stored else None
        deliveries = notify_entry(last) if last and last.get("action") == "refusal" else []
        log.error("promotion of %s/%s refused: %s (alert: %s)", name, version, exc.one_line(), deliveries or "none")
        raise
    moved = previous != str(mv.version)
    entry = ledger().entries(mv.name)[-1].entry if moved else None
    deliveries = notify_entry(entry) if entry else []
    log.info("%s/%s is @champion (was %s)", mv.name, mv.version, previous or "none")
    return {
        "model": mv.name,
        "version": str(mv.version),
        "previous": previous,
        "moved": moved,
        "ledger_seq": entry["seq"] if entry else None,
        "deliveries": deliveries,
    }


def _registered(name: str) -> bool:
    from mlflow.exceptions import MlflowException

    from quantgate.registry.mlflow_registry import client

    try:
        client().get_registered_model(name)
        return True
    except MlflowException:
        return False
