"""What the server writes on an approval, as pure functions (no Flask, no MLflow)."""

from __future__ import annotations

from quantgate.cards.signing import statement_digest
from quantgate.registry import contract as c

__all__ = ["statement_digest"]  # re-exported: the server app and its tests name it here


def parse_approval(value: str) -> tuple[str, str]:
    """``"approved"`` -> ("approved", ""); ``"approved: looks right"`` -> ("approved", "looks right").

    The state is lower-cased and stripped; the note is what follows the first ``:``.
    """
    state, _, note = value.partition(":")
    return state.strip().lower(), note.strip()


def approval_stamps(*, user: str, at: str, note: str, digest: str) -> dict[str, str]:
    """The tags the server writes when it accepts an approval (``approval`` normalised)."""
    return {
        c.TAG_APPROVAL: "approved",
        c.TAG_APPROVED_BY: user,
        c.TAG_APPROVED_AT: at,
        c.TAG_APPROVAL_NOTE: note,
        c.TAG_APPROVED_DIGEST: digest,
    }


# the stamps an approval leaves; removed when the approval is withdrawn, rejected or deleted
APPROVAL_STAMPS = (c.TAG_APPROVED_BY, c.TAG_APPROVED_AT, c.TAG_APPROVED_DIGEST)
