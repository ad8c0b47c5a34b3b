"""The registry convention, as constants (documented in registry/README.md)."""

from __future__ import annotations

SUFFIX = "-quantized"
TAG_SOURCE = "quantgate.source"  # "<source>/<version>"
TAG_RECIPE = "quantgate.recipe"  # recipe label
TAG_RECIPE_DIGEST = "quantgate.recipe_digest"
TAG_VERDICT = "quantgate.verdict"  # pass | fail
TAG_APPROVAL = "quantgate.approval"  # pending | approved | rejected
TAG_POLICY_DIGEST = "quantgate.policy_digest"
TAG_PROMOTED_AT = "quantgate.promoted_at"
TAG_PREVIOUS_CHAMPION = "quantgate.previous_champion"
TAG_PROVENANCE = "quantgate.provenance"  # run artifact path of the signed in-toto statement
TAG_SIGNING_KEY = "quantgate.signing_key"  # keyid (sha256 of the public key) that signed it
TAG_ARTIFACT_DIGEST = "quantgate.artifact_digest"  # digest over every file of the model artifact
ALIAS_CANDIDATE = "candidate"
ALIAS_CHAMPION = "champion"
ALIAS_PREVIOUS = "previous"  # the champion before the last promotion or rollback
LEDGER_EXPERIMENT = "quantgate-ledger"  # one MLflow run per ledger entry (quantgate.ledger)
TAG_LEDGER_HEAD = "quantgate.ledger.head"  # registered-model tag "<seq>:<hash>" of the last entry
# Server mode (`mlflow server --app-name quantgate`, quantgate.server): tags only the server writes.
TAG_APPROVED_BY = "quantgate.approved_by"  # basic-auth user whose approval the server accepted
TAG_APPROVED_AT = "quantgate.approved_at"  # ISO-8601 UTC time of that approval
TAG_APPROVAL_NOTE = "quantgate.approval_note"  # set by the approver (or "approved: <note>"), re-stamped
TAG_APPROVED_DIGEST = "quantgate.approved_digest"  # quantgate.server.stamps.statement_digest of the
# verified signed provenance statement at approval time ("sha256:<hex>")
TAG_REGISTERED_BY = "quantgate.registered_by"  # basic-auth user who created the version
STAMP_TAGS = (TAG_APPROVED_BY, TAG_APPROVED_AT, TAG_APPROVED_DIGEST, TAG_REGISTERED_BY)
PROTECTED_ALIASES = (ALIAS_CHAMPION, ALIAS_PREVIOUS)
APPROVAL_VALUES = ("pending", "approved", "rejected")


def quantized_name(source: str) -> str:
    return source + SUFFIX


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``name``, ``name/3`` or ``name@alias`` -> (name, version, alias)."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, None, alias
    if "/" in ref:
        name, version = ref.rsplit("/", 1)
        return name, version, None
    return ref, None, None


#: MLflow keeps a version's and a registered model's description in a VARCHAR(5000) column: a
#: PostgreSQL or MySQL store refuses a longer one (SQLite does not check)
MAX_DESCRIPTION_CHARS = 5000
