"""The ledger's hash chain, pure: built entries verify; an edited, removed, reordered or truncated
entry is reported, and so is a receiver signature that drifts from MLflow's own signing."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from quantgate.promotion.ledger import GENESIS, build_entry, entry_hash, verify_chain

MODEL = "m-quantized"


def _chain(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    prev = GENESIS
    for i in range(1, n + 1):
        e = build_entry(
            seq=i,
            prev_hash=prev,
            action="promotion" if i % 2 else "refusal",
            model=MODEL,
            version=str(i),
            actor="alice",
            previous_champion=str(i - 1) if i > 1 else None,
            champion=str(i),
            policy_digest="sha256:" + "a" * 64,
            reason=f"step {i}",
            at=f"2026-01-01T00:00:{i:02d}+00:00",
        )
        out.append(e)
        prev = e["hash"]
    return out


def _head(entries: list[dict[str, Any]]) -> str:
    return f"{entries[-1]['seq']}:{entries[-1]['hash']}"


def test_intact_chain_verifies() -> None:
    entries = _chain(5)
    rep = verify_chain(entries, model=MODEL, head=_head(entries))
    assert rep.ok, rep.problems
    assert rep.entries == 5 and rep.head == _head(entries)
    assert entries[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))


def test_hash_covers_every_field() -> None:
    e = _chain(1)[0]
    for key in e:
        if key == "hash":
            continue
        edited = copy.deepcopy(e)
        edited[key] = "tampered" if edited[key] != "tampered" else "other"
        assert entry_hash(edited) != e["hash"], key


@pytest.mark.parametrize("field", ["actor", "version", "champion", "reason", "policy_digest"])
def test_edited_entry_detected(field: str) -> None:
    entries = _chain(4)
    entries[1][field] = "mallory"
    rep = verify_chain(entries, model=MODEL, head=_head(entries))
    assert not rep.ok
    assert any("entry 2 was edited" in p for p in rep.problems), rep.problems


def test_rehashed_edit_breaks_the_next_link() -> None:
    """An editor who also recomputes the edited entry's hash still breaks the chain after it."""
    entries = _chain(4)
    entries[1]["actor"] = "mallory"
    entries[1]["hash"] = entry_hash(entries[1])
    rep = verify_chain(entries, model=MODEL, head=_head(entries))
    assert any("entry 3 does not chain" in p for p in rep.problems), rep.problems


def test_removed_middle_entry_detected() -> None:
    entries = _chain(5)
    head = _head(entries)
    del entries[2]
    rep = verify_chain(entries, model=MODEL, head=head)
    assert any("entry 4 follows entry 2" in p for p in rep.problems), rep.problems
    assert any("entry 4 does not chain" in p for p in rep.problems), rep.problems


def test_removed_last_entry_detected_by_head() -> None:
    entries = _chain(3)
    head = _head(entries)
    rep = verify_chain(entries[:-1], model=MODEL, head=head)
    assert not rep.ok
    assert any("removed" in p and "head" in p for p in rep.problems), rep.problems
    # without the head, a truncated chain looks whole: that is why the store keeps one
    assert verify_chain(entries[:-1], model=MODEL).ok


def test_removed_first_entry_detected() -> None:
    entries = _chain(3)
    rep = verify_chain(entries[1:], model=MODEL, head=_head(entries))
    assert any("entry 2 does not chain" in p for p in rep.problems), rep.problems


def test_entry_of_another_model_or_extra_field_detected() -> None:
    entries = _chain(2)
    rep = verify_chain(entries, model="other-quantized")
    assert any("is about 'm-quantized'" in p for p in rep.problems)
    entries = _chain(2)
    entries[0]["note"] = "x"
    entries[0]["hash"] = entry_hash(entries[0])
    assert any("other fields" in p for p in verify_chain(entries, model=MODEL).problems)


def test_unknown_action_refused() -> None:
    with pytest.raises(ValueError, match="not one of"):
        build_entry(seq=1, prev_hash=GENESIS, action="coronation", model=MODEL, version="1", actor="a")


def test_receiver_signature_matches_mlflow_signing() -> None:
    """The receiver's verification mirrors MLflow's private signing helper byte for byte."""
    from mlflow.webhooks.delivery import _generate_hmac_signature

    from quantgate.promotion.receiver import expected_signature, signature_ok

    secret, did, ts = "s3cret-s3cret-s3cret", "d-1", "1700000000"
    payload = '{"entity": "model_version_tag", "action": "set", "data": {"key": "k", "value": "v\\u00e9"}}'
    mine = expected_signature(secret, did, ts, payload.encode())
    assert mine == _generate_hmac_signature(secret, did, ts, payload)
    assert signature_ok(secret, did, ts, payload.encode(), mine)
    assert signature_ok(secret, did, ts, payload.encode(), f"v1,AAAA {mine}")  # rotation: any may match
    assert not signature_ok(secret, did, ts, payload.encode() + b" ", mine)
    assert not signature_ok(secret, did, str(int(ts) + 1), payload.encode(), mine)
    assert not signature_ok("another-secret-value", did, ts, payload.encode(), mine)
