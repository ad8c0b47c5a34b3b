"""Who may write what, as pure decisions (the server app feeds them the facts it looked up).

MLflow's basic-auth needs only EDIT on a registered model to set any tag or move any alias
(there is no tag- or alias-scoped permission), so these rules run after basic-auth has let a
request through and can only narrow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from quantgate.promotion.auth_app.stamps import parse_approval
from quantgate.registry import contract as c


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    approving: bool = False  # an allowed approval: verify the evidence, then stamp
    note: str = ""

    @classmethod
    def allow(cls, reason: str = "", **kw: object) -> Decision:
        return cls(True, reason, **kw)  # type: ignore[arg-type]

    @classmethod
    def refuse(cls, reason: str) -> Decision:
        return cls(False, reason)


def governed(model: str) -> bool:
    return model.endswith(c.SUFFIX)


def protected_alias(alias: str) -> str | None:
    """The protected alias ``alias`` names, compared as loosely as any store might resolve it
    (case and surrounding blanks ignored): ``" Champion"`` is ``champion``. None if not protected."""
    norm = alias.strip().lower()
    return norm if norm in c.PROTECTED_ALIASES else None


def tag_write(
    *,
    user: str,
    model: str,
    key: str,
    value: str | None,
    tags: Mapping[str, str],
    is_approver: bool,
    approvers_role: str,
    pipeline: str,
    promoter: str,
) -> Decision:
    """Setting (``value`` given) or deleting (``value`` None) the version tag ``key``.

    Who may write which ``quantgate.*`` key is :func:`quantgate.registry.contract.tag_writer`:
    the stamps nobody (the server writes them), the approval and its note the approvers, the
    promotion tags the promoter, every result tag (verdict, recipe, digests, figures, target,
    provenance, monitoring) the pipeline identity only.
    """
    verb = "set" if value is not None else "delete"
    writer = c.tag_writer(key)
    if writer == c.WRITER_SERVER:
        return Decision.refuse(f"tag {key} is written by the quantgate server only; a client may not {verb} it")
    if not governed(model):
        return Decision.allow()
    if writer == c.WRITER_PIPELINE and user != pipeline:
        return Decision.refuse(
            f"tag {key} is a result of the gate: only quantgate's pipeline identity ('{pipeline}') may {verb} it "
            f"(user '{user}' is not)"
        )
    if writer == c.WRITER_PROMOTER and user != promoter:
        return Decision.refuse(
            f"tag {key} records a promotion: only quantgate's promotion identity ('{promoter}') may {verb} it"
        )
    if key == c.TAG_APPROVAL_NOTE and not is_approver:
        return Decision.refuse(f"only members of role '{approvers_role}' may {verb} {key} (user '{user}' is not)")
    if key != c.TAG_APPROVAL:
        return Decision.allow()
    if not is_approver:
        return Decision.refuse(
            f"only members of role '{approvers_role}' may {verb} {c.TAG_APPROVAL} (user '{user}' is not); "
            f"an admin grants it with: quantgate users grant {user} --role {approvers_role}"
        )
    if value is None:
        return Decision.allow("approval withdrawn")
    state, note = parse_approval(value)
    if state not in c.APPROVAL_VALUES:
        return Decision.refuse(
            f"{c.TAG_APPROVAL}={value!r} is not one of {', '.join(c.APPROVAL_VALUES)} "
            "(an approval may carry a note: 'approved: <note>')"
        )
    if state != "approved":
        return Decision.allow(f"set to {state}")
    registrant = tags.get(c.TAG_REGISTERED_BY)
    if not registrant:
        return Decision.refuse(
            f"this version has no {c.TAG_REGISTERED_BY} stamp (registered outside the quantgate server), "
            "so separation of duties cannot be checked; register it again through the server"
        )
    if registrant == user:
        return Decision.refuse(f"separation of duties: '{user}' registered this version and cannot approve it")
    verdict = tags.get(c.TAG_VERDICT)
    if verdict != "pass":
        return Decision.refuse(f"its gate verdict is {verdict or 'missing'}, not pass: it can never be approved")
    return Decision.allow("approval accepted", approving=True, note=note or tags.get(c.TAG_APPROVAL_NOTE, ""))


def alias_write(*, user: str, alias: str, promoter: str, target_tags: Mapping[str, str] | None, model: str) -> Decision:
    """Setting (``target_tags`` of the version it would point at) or deleting (None) an alias.

    An allowed move of ``@champion`` on a governed model is ``approving``: the app verifies the
    target's signed statement (verdict pass, tags as signed, approval bound to it) before it happens.
    """
    protected = protected_alias(alias)
    if protected is None:
        return Decision.allow()
    if protected != alias:
        return Decision.refuse(f"alias {alias!r} is a spelling of the protected @{protected}: use no such alias")
    if user != promoter:
        return Decision.refuse(
            f"alias @{alias} is protected: only quantgate's promotion identity ('{promoter}') moves it"
        )
    if target_tags is None or alias != c.ALIAS_CHAMPION or not governed(model):
        return Decision.allow()
    if target_tags.get(c.TAG_APPROVAL) != "approved" or not target_tags.get(c.TAG_APPROVED_BY):
        return Decision.refuse(f"@{alias} may only point at a version with a server-stamped approval")
    return Decision.allow("champion target to verify", approving=True)


def rename(*, name: str, new_name: str) -> Decision:
    """A governed model is never renamed, nor is a model renamed into a governed name: a rename
    detour (rename, write the approval outside the rules, rename back) would launder an approval."""
    touched = [n for n in (name, new_name) if governed(n)]
    if touched:
        return Decision.refuse(
            f"governed models (names ending in {c.SUFFIX}) cannot be renamed, nor can a model take such a name "
            f"({name!r} -> {new_name!r})"
        )
    return Decision.allow()


def version_create(*, model: str, tags: Mapping[str, str], user: str = "", pipeline: str = "") -> Decision:
    """A new version may not arrive with stamps or an approval already on it, and only the
    pipeline identity may create a governed version carrying result tags."""
    forged = sorted(k for k in tags if k in c.STAMP_TAGS)
    if forged:
        return Decision.refuse(f"a new version may not carry server stamp tags ({', '.join(forged)})")
    results = sorted(k for k in tags if c.result_tag(k))
    if governed(model) and results and user != pipeline:
        return Decision.refuse(
            f"only quantgate's pipeline identity ('{pipeline}') may register a version carrying result tags "
            f"({', '.join(results[:4])}{', ...' if len(results) > 4 else ''}); user '{user}' is not"
        )
    # a failed candidate is registered already rejected (steps/record.py); nothing starts approved
    if governed(model) and tags.get(c.TAG_APPROVAL, "pending") not in ("pending", "rejected"):
        return Decision.refuse(
            f"a new version starts with {c.TAG_APPROVAL}=pending or rejected (got {tags[c.TAG_APPROVAL]!r})"
        )
    return Decision.allow()
