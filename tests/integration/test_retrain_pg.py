"""The retraining record in the real local PostgreSQL (its own database, dropped afterwards):
the rule, durability, and six processes claiming at once (one retrains)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from quantgate.errors import ConfigError
from quantgate.retrain.debounce import PgRetrainLedger, RetrainLedger, open_ledger

pytestmark = pytest.mark.integration
SERVER = "postgresql://postgres@127.0.0.1:5432"
DAY = timedelta(hours=24)


def _admin(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(f"{SERVER}/postgres", timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture()
def pg_url() -> Iterator[str]:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError as exc:
        pytest.skip(f"PostgreSQL is not running at 127.0.0.1:5432 ({exc})")
    name = f"quantgate_retrain_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_pg_record(pg_url: str) -> None:
    ledger = open_ledger(home=None, target=pg_url)  # type: ignore[arg-type]
    assert isinstance(ledger, PgRetrainLedger)
    t0 = datetime.now(UTC)
    row, first = ledger.claim("m", cooldown=DAY, drift_run="r1", event_id="e1", now=t0)
    assert first.retrain and row.status == "running"
    ledger.finish(row.id, ok=True, source_version="4")
    _, dup = ledger.claim("m", cooldown=DAY, drift_run="r1", now=t0 + timedelta(minutes=1))
    _, cool = ledger.claim("m", cooldown=DAY, drift_run="r2", now=t0 + timedelta(hours=2))
    _, after = ledger.claim("m", cooldown=DAY, drift_run="r3", now=t0 + timedelta(hours=25))
    assert (dup.decision, cool.decision, after.decision) == ("duplicate", "cooldown", "retrain")
    hist = PgRetrainLedger(pg_url).history("m")
    assert [(h.drift_run, h.status) for h in hist] == [
        ("r1", "succeeded"),
        ("r1", "suppressed"),
        ("r2", "suppressed"),
        ("r3", "running"),
    ]
    assert hist[0].source_version == "4"


def _race(url: str, i: int, barrier: mp.synchronize.Barrier, out: mp.Queue) -> None:  # type: ignore[name-defined]
    ledger = PgRetrainLedger(url)
    barrier.wait()
    _, outcome = ledger.claim("m", cooldown=DAY, drift_run=f"run-{i}")
    out.put(outcome.decision)


def test_pg_concurrent_claims_retrain_once(pg_url: str) -> None:
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(pg_url, i, barrier, out)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    decisions = sorted(out.get(timeout=5) for _ in procs)
    assert decisions.count("retrain") == 1 and set(decisions) == {"retrain", "cooldown"}, decisions
    assert len(PgRetrainLedger(pg_url).history("m")) == 6


def test_unreachable_record_is_one_readable_error() -> None:
    with pytest.raises(ConfigError, match="cannot open the retraining record"):
        PgRetrainLedger("postgresql://postgres@127.0.0.1:1/none")


def test_pg_and_sqlite_decide_and_record_alike(pg_url: str, tmp_path: Path) -> None:
    """One decision path for both stores: the same events give the same rows, field for field."""
    t0 = datetime.now(UTC)
    events = [
        ("m", "r1", "e1", t0),
        ("m", "r1", "e2", t0 + timedelta(minutes=1)),  # duplicate
        ("m", "r2", "e3", t0 + timedelta(hours=2)),  # cool-down
        ("other", "x", "e4", t0),
        ("m", "r3", "e5", t0 + timedelta(hours=25)),  # after the cool-down
    ]
    stores = {"sqlite": RetrainLedger(tmp_path / "retrain.db"), "pg": PgRetrainLedger(pg_url)}
    seen = {}
    for kind, store in stores.items():
        decisions = []
        for model, drift_run, event_id, at in events:
            row, out = store.claim(model, cooldown=DAY, drift_run=drift_run, event_id=event_id, flow_run="f", now=at)
            decisions.append((out.decision, out.reason, row.status))
            if event_id == "e1":
                store.finish(row.id, ok=True, source_version="4")
        rows = [
            (h.model, h.received_at, h.drift_run, h.event_id, h.flow_run, h.decision, h.status, h.detail)
            for h in store.history()
        ]
        seen[kind] = (decisions, rows)
    assert [d for d, _, _ in seen["sqlite"][0]] == ["retrain", "duplicate", "cooldown", "retrain", "retrain"]
    assert seen["sqlite"] == seen["pg"]
