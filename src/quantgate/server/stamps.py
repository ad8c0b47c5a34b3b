"""What the server writes on an approval, as pure functions (no Flask, no MLflow)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from quantgate.cards.signing import canonical_json
from quantgate.registry import contract as c


def statement_digest(statement: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of a signed provenance statement.

    The statement names every file of the model artifact with its sha256, the source version,
    the policy and recipe digests, so this one value binds an approval to the exact evidence
    that was verified. ``quantgate.approved_digest`` holds it; a promotion recomputes it from the
    verified statement and compares.
    """
    return "sha256:" + hashlib.sha256(canonical_json(statement)).hexdigest()


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
