"""The quantgate server app's decisions (pure): approvers, separation of duties, stamps, aliases."""

from __future__ import annotations

from quantgate.registry import contract as c
from quantgate.server.rules import alias_write, tag_write, version_create
from quantgate.server.stamps import parse_approval, statement_digest

MODEL = "m-quantized"
TAGS = {c.TAG_REGISTERED_BY: "rita", c.TAG_VERDICT: "pass", c.TAG_APPROVAL: "pending"}


def _tag(user: str, key: str, value: str | None, approver: bool, tags: dict[str, str] = TAGS, model: str = MODEL):
    return tag_write(
        user=user, model=model, key=key, value=value, tags=tags, is_approver=approver, approvers_role="approvers"
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
    assert not version_create(model="any", tags={c.TAG_APPROVED_BY: "me"}).allowed


def test_digest_and_parsing() -> None:
    a = statement_digest({"subject": [{"name": "f", "digest": {"sha256": "00"}}], "b": 1})
    b = statement_digest({"b": 1, "subject": [{"name": "f", "digest": {"sha256": "00"}}]})
    c_ = statement_digest({"b": 2, "subject": [{"name": "f", "digest": {"sha256": "00"}}]})
    assert a == b != c_ and a.startswith("sha256:") and len(a) == 7 + 64
    assert parse_approval(" APPROVED : ok: really ") == ("approved", "ok: really")
