"""The retraining debounce: the pure rule, the SQLite record, and a real race between processes."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from quantgate.retrain.debounce import Claim, RetrainLedger, decide
from quantgate.retrain.spec import RetrainSpec, format_duration, parse_duration

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
DAY = timedelta(hours=24)


def _claim(i: int, at: datetime, status: str = "succeeded", drift_run: str | None = None) -> Claim:
    return Claim(i, "m", at, drift_run, None, None, "retrain", status)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400), ("30m", 1800), ("90s", 90), ("2d", 172800), ("1w", 604800), (0, 0), (12.5, 12.5)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["24 hours", "h", "-1h", True, None, -5])
def test_parse_duration_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_format_duration() -> None:
    assert format_duration(timedelta(hours=24)) == "1d"
    assert format_duration(timedelta(minutes=90)) == "90m"
    assert format_duration(timedelta(seconds=7)) == "7s"


def test_retrain_spec_exactly_one_way() -> None:
    assert RetrainSpec(builtin="adult-income").label == "quantgate builtin (adult-income)"
    spec = RetrainSpec(deployment="train/nightly", parameters={"epochs": 3}, timeout="2h")
    assert spec.timeout == timedelta(hours=2)
    for bad in ({}, {"builtin": "adult-income", "deployment": "a/b"}, {"deployment": "no-slash"}):
        with pytest.raises(ValueError):
            RetrainSpec.model_validate(bad)


def test_first_event_retrains() -> None:
    assert decide([], now=T0, cooldown=DAY, drift_run="r1").decision == "retrain"


def test_inside_cooldown_is_suppressed_until_it_ends() -> None:
    earlier = [_claim(1, T0)]
    out = decide(earlier, now=T0 + timedelta(hours=23), cooldown=DAY, drift_run="r2")
    assert out.decision == "cooldown" and out.until == T0 + DAY and out.blocking == earlier[0]
    assert decide(earlier, now=T0 + DAY, cooldown=DAY, drift_run="r2").decision == "retrain"


def test_same_drift_run_never_retrains_twice_even_without_cooldown() -> None:
    earlier = [_claim(1, T0, drift_run="r1")]
    out = decide(earlier, now=T0 + timedelta(days=30), cooldown=timedelta(0), drift_run="r1")
    assert out.decision == "duplicate"


def test_failed_retraining_does_not_block_the_next_event() -> None:
    assert decide([_claim(1, T0, "failed")], now=T0 + timedelta(minutes=1), cooldown=DAY, drift_run="r2").retrain


def test_running_retraining_blocks_with_zero_cooldown_unless_stale() -> None:
    running = [_claim(1, T0, "running")]
    out = decide(running, now=T0 + timedelta(hours=1), cooldown=timedelta(0), drift_run="r2")
    assert out.decision == "running"
    assert decide(running, now=T0 + timedelta(days=2), cooldown=timedelta(0), drift_run="r2").retrain


def test_ledger_records_every_event(tmp_path: Path) -> None:
    ledger = RetrainLedger(tmp_path / "retrain.db")
    row, out = ledger.claim("m", cooldown=DAY, drift_run="r1", event_id="e1", now=T0)
    assert out.retrain and row.status == "running"
    ledger.finish(row.id, ok=True, source_version="2")
    _, again = ledger.claim("m", cooldown=DAY, drift_run="r1", event_id="e2", now=T0 + timedelta(minutes=5))
    _, later = ledger.claim("m", cooldown=DAY, drift_run="r3", event_id="e3", now=T0 + timedelta(hours=1))
    _, other = ledger.claim("other", cooldown=DAY, drift_run="x", now=T0)
    assert (again.decision, later.decision, other.decision) == ("duplicate", "cooldown", "retrain")
    hist = RetrainLedger(tmp_path / "retrain.db").history("m")  # durable: a new handle reads the same rows
    assert [(h.event_id, h.decision, h.status) for h in hist] == [
        ("e1", "retrain", "succeeded"),
        ("e2", "duplicate", "suppressed"),
        ("e3", "cooldown", "suppressed"),
    ]
    assert hist[0].source_version == "2" and hist[0].finished_at is not None


def _race(path: str, i: int, barrier: mp.synchronize.Barrier, out: mp.Queue) -> None:  # type: ignore[name-defined]
    ledger = RetrainLedger(Path(path))
    barrier.wait()
    _, outcome = ledger.claim("m", cooldown=DAY, drift_run=f"run-{i}", event_id=f"e{i}")
    out.put(outcome.decision)


def test_concurrent_claims_retrain_once(tmp_path: Path) -> None:
    """Six processes claim at the same instant (distinct drift runs): exactly one retrains."""
    path = tmp_path / "retrain.db"
    RetrainLedger(path)
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(path), i, barrier, out)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    decisions = sorted(out.get(timeout=5) for _ in procs)
    assert decisions.count("retrain") == 1, decisions
    assert set(decisions) - {"retrain"} <= {"cooldown"}
    assert len(RetrainLedger(path).history("m")) == 6
