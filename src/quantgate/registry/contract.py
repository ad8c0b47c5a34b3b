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
LEDGER_EXPERIMENT = "quantgate-ledger"  # one MLflow run per ledger entry (quantgate.promotion.ledger)
TAG_LEDGER_HEAD = "quantgate.promotion.ledger.head"  # registered-model tag "<seq>:<hash>" of the last entry
# Server mode (`mlflow server --app-name quantgate`, quantgate.promotion.auth_app): tags only the server writes.
TAG_APPROVED_BY = "quantgate.approved_by"  # basic-auth user whose approval the server accepted
TAG_APPROVED_AT = "quantgate.approved_at"  # ISO-8601 UTC time of that approval
TAG_APPROVAL_NOTE = "quantgate.approval_note"  # set by the approver (or "approved: <note>"), re-stamped
TAG_APPROVED_DIGEST = "quantgate.approved_digest"  # quantgate.promotion.auth_app.stamps.statement_digest of the
# verified signed provenance statement at approval time ("sha256:<hex>")
TAG_REGISTERED_BY = "quantgate.registered_by"  # basic-auth user who created the version
STAMP_TAGS = (TAG_APPROVED_BY, TAG_APPROVED_AT, TAG_APPROVED_DIGEST, TAG_REGISTERED_BY)
TAG_TARGET = "quantgate.target"  # the instruction set the candidate was gated for
#: set on a version served with ``quantgate serve --allow-unapproved`` ("<time> by <user>")
TAG_SERVED_UNAPPROVED = "quantgate.served_unapproved"

# Who may write (set or delete) which ``quantgate.*`` tag of a governed (``-quantized``) version
# in server mode. Any other ``quantgate.*`` key is a *result tag*: the pipeline identity only
# (the verdict, recipe, policy digest, figures, provenance, monitoring results, ...).
WRITER_SERVER = "server"  # the stamps: written by the server app itself, never by a client
WRITER_APPROVER = "approver"  # members of the approvers role
WRITER_PROMOTER = "promoter"  # the promotion identity
WRITER_OPERATOR = "operator"  # any user with EDIT on the model (basic-auth decides)
WRITER_PIPELINE = "pipeline"  # the pipeline's identity (the worker that registers candidates)
APPROVER_TAGS = (TAG_APPROVAL, TAG_APPROVAL_NOTE)
PROMOTER_TAGS = (TAG_PROMOTED_AT, TAG_PREVIOUS_CHAMPION)
OPERATOR_TAGS = (TAG_SERVED_UNAPPROVED,)
#: a tag that is not quantgate's (no ``quantgate.`` prefix): MLflow's permissions alone decide
WRITER_ANYONE = "anyone"


def tag_writer(key: str) -> str:
    """Who may write the version tag ``key`` of a governed model (one of the ``WRITER_*`` values)."""
    if key in STAMP_TAGS:
        return WRITER_SERVER
    if key in APPROVER_TAGS:
        return WRITER_APPROVER
    if key in PROMOTER_TAGS:
        return WRITER_PROMOTER
    if key in OPERATOR_TAGS:
        return WRITER_OPERATOR
    if key.startswith("quantgate."):
        return WRITER_PIPELINE
    return WRITER_ANYONE


def result_tag(key: str) -> bool:
    """A tag only the pipeline identity writes (see :func:`tag_writer`)."""
    return tag_writer(key) == WRITER_PIPELINE


#: on a version while its registration is under way ("<run id>"): removed as its last step, so a
#: version that still carries it was interrupted (killed): discovery does not count it, the next
#: registration of the same source deletes it, and verification refuses it (it is not signed)
TAG_REGISTERING = "quantgate.registering"

#: result tags bound to the signature by reference rather than value: they name the statement
#: itself (path, key, artifact digest) and are checked against it by verification
PROVENANCE_TAGS = (TAG_PROVENANCE, TAG_SIGNING_KEY, TAG_ARTIFACT_DIGEST)
#: result tags written after the gate, by monitoring (not part of the signed gate)
TAG_LAST_MONITOR_AT = "quantgate.last_monitor_at"  # end of the last monitored window (UTC ISO time)
TAG_LAST_MONITOR_RUN = "quantgate.last_monitor_run"  # the monitoring run's MLflow id
TAG_DRIFT = "quantgate.drift"  # true / false / not run
MONITOR_TAGS = (TAG_LAST_MONITOR_RUN, TAG_DRIFT, TAG_LAST_MONITOR_AT)
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
