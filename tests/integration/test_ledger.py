"""The promotion ledger on the real MLflow store: promotions, refusals and rollbacks are entries;
`quantgate history` shows them; an edited tag, an edited entry or a deleted entry run is detected
by `quantgate verify --ledger`; rollback restores the previous champion exactly; an approval bound
to a provenance digest that no longer matches is refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import snapshot
from typer.testing import CliRunner

pytestmark = pytest.mark.integration
runner = CliRunner()


def _cli(*args: str) -> Any:
    from quantgate.cli import app

    return runner.invoke(app, list(args), env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def two_passing(adult_result: dict[str, Any], qg_home: Any) -> Iterator[tuple[str, str, str]]:
    """The session's passing candidate and a second version registered from the same run (same
    signed artifact, so it verifies too: cheap, and real). On exit the second version is deleted,
    @champion/@previous removed and the approval restored, so other modules see what they expect."""
    from quantgate.registry.mlflow_registry import _wait_ready, client
    from quantgate.settings import get_settings, reset_settings

    assert adult_result["verdict"] == "pass"
    name, va = adult_result["registered"].split("/")
    reset_settings()
    cl = client(get_settings())
    mv = cl.get_model_version(name, va)
    approval = mv.tags.get("quantgate.approval", "pending")
    vb = str(cl.create_model_version(name, mv.source, run_id=mv.run_id, tags=dict(mv.tags)).version)
    _wait_ready(cl, name, vb)
    yield name, va, vb
    for alias in ("champion", "previous"):
        try:
            cl.delete_registered_model_alias(name, alias)
        except Exception:
            pass
    cl.delete_model_version(name, vb)
    cl.set_model_version_tag(name, va, "quantgate.approval", approval)
    for tag in ("quantgate.approved_by", "quantgate.promoted_at", "quantgate.previous_champion"):
        try:
            cl.delete_model_version_tag(name, va, tag)
        except Exception:
            pass


def _entries(name: str) -> list[dict[str, Any]]:
    from quantgate.promotion.service import ledger

    return [s.entry for s in ledger().entries(name)]


def test_promotions_refusals_and_rollback_are_recorded(two_passing: tuple[str, str, str], settings: Any) -> None:
    from quantgate.cards.trust import verify_for_promotion
    from quantgate.promotion.service import promote, rollback
    from quantgate.registry.mlflow_registry import client, registry_snapshot

    name, va, vb = two_passing
    cl = client(settings)
    # with no version named, the refusal names the @candidate it tried
    candidate = _alias(cl, name, "candidate")
    assert candidate is not None
    cl.set_model_version_tag(name, candidate, "quantgate.approval", "pending")
    tried = _refusal(name, "is not approved", lambda: promote(name, actor="tester"))
    assert tried["version"] == candidate
    assert tried["reason"].startswith(f"promotion refused: {name}/{candidate} is not approved")
    start = len(_entries(name))

    # a refusal moves nothing in the registry but is an entry
    refusal = _refusal(name, "is not approved", lambda: promote(name, vb, verify=verify_for_promotion, actor="tester"))
    assert (refusal["version"], refusal["actor"]) == (vb, "tester")
    assert "is not approved" in refusal["reason"]

    champion_before = _alias(cl, name, "champion")
    cl.set_model_version_tag(name, va, "quantgate.approval", "approved")
    cl.set_model_version_tag(name, va, "quantgate.approved_by", "demo-reviewer")
    mv, prev = promote(name, va, verify=verify_for_promotion, actor="tester")
    assert (str(mv.version), prev) == (va, champion_before)
    row_a = next(r for r in registry_snapshot() if r["name"] == name and str(r["version"]) == va)
    assert "champion" in row_a["aliases"]  # `quantgate status` and every before/after snapshot see aliases

    cl.set_model_version_tag(name, vb, "quantgate.approval", "approved")
    mv, prev = promote(name, vb, verify=verify_for_promotion, actor="tester")
    assert (str(mv.version), prev) == (vb, va)
    assert _alias(cl, name, "champion") == vb and _alias(cl, name, "previous") == va

    entries = _entries(name)
    assert [e["action"] for e in entries[start:]] == ["refusal", "promotion", "promotion"]
    pa, pb = entries[-2], entries[-1]
    assert (pa["version"], pa["previous_champion"], pa["champion"], pa["approved_by"]) == (
        va,
        champion_before,
        va,
        "demo-reviewer",
    )
    assert (pb["version"], pb["previous_champion"], pb["champion"]) == (vb, va, vb)
    tags_b = cl.get_model_version(name, vb).tags
    assert pb["policy_digest"] == tags_b["quantgate.policy_digest"]
    assert str(pb["provenance_digest"]).startswith("sha256:")
    assert pb["prev_hash"] == pa["hash"]

    # rollback: default to @previous; the old champion comes back exactly as it was
    result = _cli("rollback", "adult-income")
    assert result.exit_code == 0, result.output
    assert f"v{vb} → v{va}" in result.output
    assert _alias(cl, name, "champion") == va and _alias(cl, name, "previous") == vb
    row_after = next(r for r in registry_snapshot() if r["name"] == name and str(r["version"]) == va)
    assert row_after == row_a
    rb = _entries(name)[-1]
    assert (rb["action"], rb["version"], rb["previous_champion"], rb["champion"]) == ("rollback", va, vb, va)

    # a rollback onto the champion itself is refused and recorded; nothing moves
    onto = _refusal(name, "already @champion", lambda: rollback(name, va))
    assert (onto["version"], onto["previous_champion"], onto["champion"]) == (va, va, va)
    assert onto["reason"].startswith(f"rollback refused: {name}/{va} is already @champion")
    # a rollback refused on its default target (@previous) names no version: none was asked for
    cl.set_model_version_tag(name, vb, "quantgate.approval", "pending")
    default = _refusal(name, "is not approved", lambda: rollback(name, actor="tester"))
    assert (default["version"], default["actor"], default["champion"]) == (None, "tester", va)

    # history shows them; the chain verifies; the UI sees the history in the model description
    hist = _cli("history", "adult-income", "-n", "5")
    assert hist.exit_code == 0, hist.output
    for word in ("rollback", "promotion", "refusal", "demo-reviewer"):
        assert word in hist.output
    ok = _cli("verify", "--ledger", "adult-income")
    assert ok.exit_code == 0, ok.output
    assert "chain intact" in ok.output
    assert "| rollback |" in cl.get_registered_model(name).description


def _refusal(name: str, match: str, call: Callable[[], Any]) -> dict[str, Any]:
    """``call`` is refused (a RegistryError matching ``match``), moves nothing in the registry, and
    is recorded: returns that ledger entry."""
    from quantgate.errors import RegistryError

    before = snapshot()
    with pytest.raises(RegistryError, match=match):
        call()
    assert snapshot() == before
    entry = _entries(name)[-1]
    assert entry["action"] == "refusal"
    return entry


def _alias(cl: Any, name: str, alias: str) -> str | None:
    try:
        return str(cl.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


def test_tampering_is_detected(two_passing: tuple[str, str, str], settings: Any) -> None:
    import json

    from quantgate.promotion.ledger import TAG_ENTRY, TAG_PREFIX
    from quantgate.promotion.service import ledger, promote
    from quantgate.registry import contract as c
    from quantgate.registry.mlflow_registry import client

    name, va, _ = two_passing
    cl = client(settings)
    if len(_entries(name)) < 3:  # run alone: make some history first
        cl.set_model_version_tag(name, va, "quantgate.approval", "approved")
        promote(name, va)
        promote(name, va, actor="twice")  # already champion: no move, no entry
        with pytest.raises(Exception, match="has no version"):
            promote(name, "999999")
    stored = ledger().entries(name)
    assert len(stored) >= 2
    assert _cli("verify", "--ledger", name).exit_code == 0
    middle = stored[len(stored) // 2]

    # 1. a readable tag edited in the UI
    cl.set_tag(middle.run_id, TAG_PREFIX + "actor", "mallory")
    bad = _cli("verify", "--ledger", name)
    assert bad.exit_code == 3 and "tag quantgate.promotion.ledger.actor was edited" in bad.output, bad.output
    cl.set_tag(middle.run_id, TAG_PREFIX + "actor", middle.tags[TAG_PREFIX + "actor"])

    # 2. the entry itself edited (and re-hashed by someone who read the docs)
    from quantgate.promotion.ledger import canonical, entry_hash

    forged = dict(middle.entry, actor="mallory")
    forged["hash"] = entry_hash(forged)
    cl.set_tag(middle.run_id, TAG_ENTRY, canonical(forged).decode())
    bad = _cli("verify", "--ledger", name)
    assert bad.exit_code == 3 and "does not chain" in bad.output, bad.output
    cl.set_tag(middle.run_id, TAG_ENTRY, middle.tags[TAG_ENTRY])

    # 3. an entry's run deleted (MLflow UI "Delete run")
    cl.delete_run(middle.run_id)
    bad = _cli("verify", "--ledger", name, "--json")
    assert bad.exit_code == 3
    problems = json.loads(bad.output)["problems"]
    assert any("was deleted" in p for p in problems) and any("does not chain" in p for p in problems), problems
    cl.restore_run(middle.run_id)

    # 4. the last entry deleted: only the model's head tag knows it existed
    last = stored[-1]
    cl.delete_run(last.run_id)
    assert "was deleted" in _cli("verify", "--ledger", name).output
    cl.restore_run(last.run_id)
    head = cl.get_registered_model(name).tags[c.TAG_LEDGER_HEAD]
    assert head == f"{last.entry['seq']}:{last.entry['hash']}"

    # 5. @champion moved behind quantgate's back
    moves = [s.entry for s in stored if s.entry["action"] in ("promotion", "rollback")]
    champion = moves[-1]["champion"]
    other = next(v for v in (two_passing[1], two_passing[2]) if v != champion)
    cl.set_registered_model_alias(name, "champion", other)
    bad = _cli("verify", "--ledger", name)
    assert bad.exit_code == 3 and "moved outside quantgate" in bad.output, bad.output
    cl.set_registered_model_alias(name, "champion", champion)

    good = _cli("verify", "--ledger", name)
    assert good.exit_code == 0, good.output


def test_approval_bound_to_provenance(two_passing: tuple[str, str, str], settings: Any) -> None:
    from quantgate.cards.trust import provenance_digest, verify_for_promotion, verify_version
    from quantgate.errors import RegistryError
    from quantgate.promotion.service import promote
    from quantgate.registry import contract as c
    from quantgate.registry.mlflow_registry import client

    name, va, vb = two_passing
    cl = client(settings)
    current = _alias(cl, name, "champion")
    target = vb if current != vb else va
    cl.set_model_version_tag(name, target, c.TAG_APPROVAL, "approved")
    mv = cl.get_model_version(name, target)
    digest = provenance_digest(verify_version(mv, settings=settings).statement)
    # the approval was made on other evidence: refused, recorded, nothing moves
    cl.set_model_version_tag(name, target, c.TAG_APPROVED_DIGEST, "sha256:" + "f" * 64)
    before = snapshot()
    with pytest.raises(RegistryError, match="changed since it was approved"):
        promote(name, target, verify=verify_for_promotion)
    assert snapshot() == before
    assert _entries(name)[-1]["action"] == "refusal"
    # the approval made on this very statement holds
    cl.set_model_version_tag(name, target, c.TAG_APPROVED_DIGEST, digest)
    mv, _ = promote(name, target, verify=verify_for_promotion)
    assert str(mv.version) == target and _entries(name)[-1]["provenance_digest"] == digest
    cl.delete_model_version_tag(name, target, c.TAG_APPROVED_DIGEST)


def test_the_history_in_the_description_fits_mlflows_limit(settings: Any) -> None:
    """A registered model whose own description is long keeps it whole, and the ledger's table
    shows as many recent entries as fit MLflow's 5,000 characters (PostgreSQL refuses more)."""
    from quantgate.promotion.service import ledger
    from quantgate.registry.contract import MAX_DESCRIPTION_CHARS
    from quantgate.registry.mlflow_registry import client

    cl = client(settings)
    name = "ledger-description-bound"
    own = "Team notes. " + "x" * 4200
    cl.create_registered_model(name, description=own)
    try:
        book = ledger(settings)
        for i in range(6):
            book.append(action="refusal", model=name, version=str(i + 1), actor="tester", reason="r" * 120)
        desc = cl.get_registered_model(name).description
        assert len(desc) <= MAX_DESCRIPTION_CHARS
        assert desc.startswith(own)  # the team's own text is never cut
        shown = [line for line in desc.splitlines() if line.startswith("| ") and line[2].isdigit()]
        assert 1 <= len(shown) < 6 and shown[0].startswith("| 6 |")  # the newest first, the oldest dropped
        assert f"**Ledger** (last {len(shown)};" in desc
    finally:
        cl.delete_registered_model(name)
