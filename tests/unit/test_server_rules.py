"""The quantgate server app's decisions (pure): approvers, separation of duties, stamps, aliases."""

from __future__ import annotations

from quantgate.promotion.auth_app.rules import alias_write, protected_alias, rename, tag_write, version_create
from quantgate.promotion.auth_app.stamps import parse_approval, statement_digest
from quantgate.registry import contract as c

MODEL = "m-quantized"
TAGS = {c.TAG_REGISTERED_BY: "rita", c.TAG_VERDICT: "pass", c.TAG_APPROVAL: "pending"}


def _tag(user: str, key: str, value: str | None, approver: bool, tags: dict[str, str] = TAGS, model: str = MODEL):
    return tag_write(
        user=user,
        model=model,
        key=key,
        value=value,
        tags=tags,
        is_approver=approver,
        approvers_role="approvers",
        pipeline="qg-pipeline",
        promoter="qg-promoter",
    )


def test_only_approvers_set_or_delete_the_approval() -> None:
    refused = _tag("bob", c.TAG_APPROVAL, "approved", approver=False)
    assert (
        not refused.allowed and "role 'approvers'" in refused.reason and "quantgate users grant bob" in refused.reason
    )
    assert not _tag("bob", c.TAG_APPROVAL, None, approver=False).allowed
    assert not _tag("bob", c.TAG_APPROVAL_NOTE, "fine", approver=False).allowed
    assert _tag("alice", c.TAG_APPROVAL, None, approver=True).allowed
    rejected = _tag("alice", c.TAG_APPROVAL, "rejected: drops 4 points on one group", approver=True)
    assert rejected.allowed and not rejected.approving


def test_an_approval_needs_another_person_and_a_passing_verdict() -> None:
    own = _tag("rita", c.TAG_APPROVAL, "approved", approver=True)
    assert not own.allowed and "separation of duties" in own.reason
    unknown = _tag("alice", c.TAG_APPROVAL, "approved", approver=True, tags={c.TAG_VERDICT: "pass"})
    assert not unknown.allowed and c.TAG_REGISTERED_BY in unknown.reason
    failed = _tag("alice", c.TAG_APPROVAL, "approved", approver=True, tags={**TAGS, c.TAG_VERDICT: "fail"})
    assert not failed.allowed and "verdict is fail" in failed.reason
    ok = _tag("alice", c.TAG_APPROVAL, "Approved: reviewed", approver=True)
    assert ok.allowed and ok.approving and ok.note == "reviewed"
    companion = _tag("alice", c.TAG_APPROVAL, "approved", approver=True, tags={**TAGS, c.TAG_APPROVAL_NOTE: "see PR"})
    assert companion.approving and companion.note == "see PR"
    bad = _tag("alice", c.TAG_APPROVAL, "lgtm", approver=True)
    assert not bad.allowed and "is not one of" in bad.reason


def test_stamps_are_never_a_clients_and_ungoverned_models_are_left_alone() -> None:
    for key in c.STAMP_TAGS:
        assert not _tag("alice", key, "alice", approver=True).allowed
        assert not _tag("admin", key, None, approver=True, model="plain-model").allowed
    assert _tag("bob", c.TAG_APPROVAL, "approved", approver=False, model="plain-model").allowed
    assert _tag("bob", "team.note", "x", approver=False).allowed


def test_protected_aliases_belong_to_the_promoter() -> None:
    approved = {c.TAG_APPROVAL: "approved", c.TAG_APPROVED_BY: "alice"}
    for alias in (c.ALIAS_CHAMPION, c.ALIAS_PREVIOUS):
        d = alias_write(user="alice", alias=alias, promoter="qg-promoter", target_tags=approved, model=MODEL)
        assert not d.allowed and "qg-promoter" in d.reason
        assert not alias_write(user="admin", alias=alias, promoter="qg-promoter", target_tags=None, model=MODEL).allowed
    ok = alias_write(
        user="qg-promoter", alias=c.ALIAS_CHAMPION, promoter="qg-promoter", target_tags=approved, model=MODEL
    )
    assert ok.allowed
    # not even the promoter points @champion at a version without a server-stamped approval
    forged = {c.TAG_APPROVAL: "approved"}
    assert not alias_write(
        user="qg-promoter", alias=c.ALIAS_CHAMPION, promoter="qg-promoter", target_tags=forged, model=MODEL
    ).allowed
    assert alias_write(user="bob", alias="staging", promoter="qg-promoter", target_tags={}, model=MODEL).allowed


def test_new_versions_start_pending_without_stamps() -> None:
    assert version_create(model=MODEL, tags={c.TAG_APPROVAL: "pending"}).allowed
    assert not version_create(model=MODEL, tags={c.TAG_APPROVAL: "approved"}).allowed
    assert version_create(model=MODEL, tags={c.TAG_APPROVAL: "rejected"}).allowed  # a failed candidate
    assert not version_create(model="any", tags={c.TAG_APPROVED_BY: "me"}).allowed


def test_digest_and_parsing() -> None:
    a = statement_digest({"subject": [{"name": "f", "digest": {"sha256": "00"}}], "b": 1})
    b = statement_digest({"b": 1, "subject": [{"name": "f", "digest": {"sha256": "00"}}]})
    c_ = statement_digest({"b": 2, "subject": [{"name": "f", "digest": {"sha256": "00"}}]})
    assert a == b != c_ and a.startswith("sha256:") and len(a) == 7 + 64
    assert parse_approval(" APPROVED : ok: really ") == ("approved", "ok: really")


RESULT_KEYS = (
    c.TAG_VERDICT,
    c.TAG_SOURCE,
    c.TAG_RECIPE,
    c.TAG_RECIPE_DIGEST,
    c.TAG_POLICY_DIGEST,
    c.TAG_TARGET,
    "quantgate.param_share",
    "quantgate.accuracy_quantized",
    c.TAG_PROVENANCE,
    c.TAG_SIGNING_KEY,
    c.TAG_ARTIFACT_DIGEST,
    "quantgate.some_future_result",  # an unknown quantgate.* key is a result tag: fail closed
)


def test_result_tags_are_the_pipelines_alone() -> None:
    """The insider bypass of issue 26: an EDIT user (even an approver or the promoter) set
    quantgate.verdict=pass, target='' or a policy digest on a governed version, and it was taken."""
    for key in RESULT_KEYS:
        assert c.tag_writer(key) == c.WRITER_PIPELINE, key
        for user, approver in (("bob", False), ("alice", True), ("qg-promoter", False)):
            for value in ("pass", "", None):
                d = _tag(user, key, value, approver=approver)
                assert not d.allowed and "pipeline identity ('qg-pipeline')" in d.reason, (key, user, value)
        assert _tag("qg-pipeline", key, "x", approver=False).allowed
        assert _tag("qg-pipeline", key, None, approver=False).allowed
        assert _tag("bob", key, "x", approver=False, model="plain-model").allowed  # not governed


def test_promotion_tags_are_the_promoters_and_the_note_the_approvers() -> None:
    for key in c.PROMOTER_TAGS:
        assert not _tag("bob", key, "x", approver=False).allowed
        assert not _tag("qg-pipeline", key, "x", approver=False).allowed
        assert _tag("qg-promoter", key, "x", approver=False).allowed
    assert not _tag("qg-pipeline", c.TAG_APPROVAL, "approved", approver=False).allowed
    assert not _tag("qg-pipeline", c.TAG_APPROVAL_NOTE, "ok", approver=False).allowed
    assert _tag("bob", c.TAG_SERVED_UNAPPROVED, "x", approver=False).allowed


def test_protected_aliases_are_compared_as_a_store_might_resolve_them() -> None:
    approved = {c.TAG_APPROVAL: "approved", c.TAG_APPROVED_BY: "alice"}
    assert protected_alias(" Champion ") == "champion" and protected_alias("staging") is None
    for spelling in ("Champion", "CHAMPION", "champion ", "Previous"):
        for user in ("bob", "qg-promoter"):
            d = alias_write(user=user, alias=spelling, promoter="qg-promoter", target_tags=approved, model=MODEL)
            assert not d.allowed, (spelling, user)
    ok = alias_write(user="qg-promoter", alias="champion", promoter="qg-promoter", target_tags=approved, model=MODEL)
    assert ok.allowed and ok.approving  # the app then verifies the target's signed statement


def test_governed_models_are_never_renamed() -> None:
    assert not rename(name=MODEL, new_name="tmp").allowed
    assert not rename(name="tmp", new_name=MODEL).allowed
    assert rename(name="a", new_name="b").allowed


def test_only_the_pipeline_registers_versions_with_result_tags() -> None:
    tags = {c.TAG_VERDICT: "pass", c.TAG_APPROVAL: "pending"}
    refused = version_create(model=MODEL, tags=tags, user="bob", pipeline="qg-pipeline")
    assert not refused.allowed and "quantgate.verdict" in refused.reason
    assert version_create(model=MODEL, tags=tags, user="qg-pipeline", pipeline="qg-pipeline").allowed
    assert version_create(model=MODEL, tags={"team.x": "1"}, user="bob", pipeline="qg-pipeline").allowed
    assert version_create(model="plain", tags=tags, user="bob", pipeline="qg-pipeline").allowed
