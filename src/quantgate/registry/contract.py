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
# stamped server-side by the `mlflow server --app-name quantgate` app when an approver approves
TAG_APPROVED_BY = "quantgate.approved_by"
TAG_APPROVED_AT = "quantgate.approved_at"
# "sha256:<hex>" of the canonical JSON of the version's signed provenance statement at approval
# time (quantgate.cards.trust.provenance_digest); promotion refuses when it no longer matches
TAG_APPROVED_DIGEST = "quantgate.approved_digest"
ALIAS_CANDIDATE = "candidate"
ALIAS_CHAMPION = "champion"
ALIAS_PREVIOUS = "previous"  # the champion before the last promotion or rollback
LEDGER_EXPERIMENT = "quantgate-ledger"  # one MLflow run per ledger entry (quantgate.ledger)
TAG_LEDGER_HEAD = "quantgate.ledger.head"  # registered-model tag "<seq>:<hash>" of the last entry
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
