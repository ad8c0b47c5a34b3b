"""The debounce record: at most one retraining per model per cool-down, and never two for one
drift run, even when several flow runs ask at the same moment.

Every drift event that reaches the retrain flow is a row (so a suppressed event is recorded, not
lost). The decision and the row that claims a retraining are written in **one serialized
transaction**: SQLite ``BEGIN IMMEDIATE`` takes the database's write lock before reading, so a
second flow run waits for the first to commit and then sees its claim. The file lives under
``$QUANTGATE_HOME`` (``retrain.db``); the flow runs of one worker host share it. Worker hosts that
share no disk point ``QUANTGATE_RETRAIN_DB`` at PostgreSQL (:class:`PgRetrainLedger`, an advisory
lock per model instead of SQLite's write lock).

:func:`decide` is the pure rule; :class:`RetrainLedger` is the store around it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from quantgate.pg import pg_dsn, run_sync

Decision = Literal["retrain", "cooldown", "duplicate", "running"]

#: a claimed retraining still "running" after this long is taken as dead (its process crashed)
STALE_AFTER = timedelta(hours=24)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retrain_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    model         TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    drift_run     TEXT,
    event_id      TEXT,
    flow_run      TEXT,
    decision      TEXT NOT NULL,
    status        TEXT NOT NULL,
    source_version TEXT,
    detail        TEXT,
    finished_at   TEXT
);
CREATE INDEX IF NOT EXISTS retrain_events_model ON retrain_events (model, received_at);
"""


@dataclass(frozen=True)
class Claim:
    """A row of the record: a retraining claimed (``decision == "retrain"``) or an event suppressed."""

    id: int
    model: str
    received_at: datetime
    drift_run: str | None
    event_id: str | None
    flow_run: str | None
    decision: Decision
    status: str  # running | succeeded | failed | suppressed
    source_version: str | None = None
    detail: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """What :func:`decide` says about one event, and why."""

    decision: Decision
    reason: str
    blocking: Claim | None = None
    until: datetime | None = None

    @property
    def retrain(self) -> bool:
        return self.decision == "retrain"


def decide(
    claims: Sequence[Claim],
    *,
    now: datetime,
    cooldown: timedelta,
    drift_run: str | None,
    stale_after: timedelta = STALE_AFTER,
) -> Outcome:
    """The rule, on the model's earlier claims (failed ones do not count: the next event retries).

    1. a retraining already claimed for this drift run -> ``duplicate``;
    2. a retraining claimed less than ``cooldown`` ago -> ``cooldown`` (until when);
    3. a retraining still running (and not stale) -> ``running``;
    4. otherwise -> ``retrain``.
    """
    live = [
        c
        for c in claims
        if c.decision == "retrain"
        and (c.status == "succeeded" or (c.status == "running" and now - c.received_at < stale_after))
    ]
    live.sort(key=lambda c: c.received_at, reverse=True)
    if drift_run:
        same = [c for c in live if c.drift_run == drift_run]
        if same:
            return Outcome("duplicate", f"drift run {drift_run} already caused retraining #{same[0].id}", same[0])
    if live and now - live[0].received_at < cooldown:
        until = live[0].received_at + cooldown
        return Outcome(
            "cooldown",
            f"retraining #{live[0].id} started {live[0].received_at.isoformat(timespec='seconds')}; "
            f"cool-down until {until.isoformat(timespec='seconds')}",
            live[0],
            until,
        )
    running = [c for c in live if c.status == "running"]
    if running:
        return Outcome("running", f"retraining #{running[0].id} is still running", running[0])
    return Outcome("retrain", "no retraining in the cool-down")


def _ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


#: given the model's earlier ``retrain`` rows (read under the store's lock): the decision and the
#: new row's values for (model, received_at, drift_run, event_id, flow_run, decision, status, detail)
_Record = Callable[[Sequence[Claim]], tuple[Outcome, tuple[Any, ...]]]


class _Store:
    """What both stores share: :meth:`claim` decides with :func:`decide` and says what row to add;
    a store only reads the earlier rows and writes the new one inside its serialized transaction."""

    def claim(
        self,
        model: str,
        *,
        cooldown: timedelta,
        drift_run: str | None,
        event_id: str | None = None,
        flow_run: str | None = None,
        now: datetime | None = None,
    ) -> tuple[Claim, Outcome]:
        """Record this event and decide, atomically; returns (its row, the decision)."""
        at = now or datetime.now(UTC)

        def record(earlier: Sequence[Claim]) -> tuple[Outcome, tuple[Any, ...]]:
            outcome = decide(earlier, now=at, cooldown=cooldown, drift_run=drift_run)
            status = "running" if outcome.retrain else "suppressed"
            return outcome, (model, at, drift_run, event_id, flow_run, outcome.decision, status, outcome.reason)

        return self._claim(model, record)

    def _claim(self, model: str, record: _Record) -> tuple[Claim, Outcome]:
        """In one transaction serialized per ``model``: read the earlier rows, ``record``, insert."""
        raise NotImplementedError


class RetrainLedger(_Store):
    """The record in a SQLite file (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        try:
            con.executescript(_SCHEMA)
        finally:
            con.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that holds SQLite's write lock from its first statement."""
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    @staticmethod
    def _rows(con: sqlite3.Connection, where: str, args: Sequence[object]) -> list[Claim]:
        cur = con.execute(
            "SELECT id, model, received_at, drift_run, event_id, flow_run, decision, status, source_version,"
            f" detail, finished_at FROM retrain_events WHERE {where} ORDER BY id",
            tuple(args),
        )
        return [
            Claim(r[0], r[1], _ts(r[2]) or datetime.now(UTC), r[3], r[4], r[5], r[6], r[7], r[8], r[9], _ts(r[10]))
            for r in cur.fetchall()
        ]

    def _claim(self, model: str, record: _Record) -> tuple[Claim, Outcome]:
        with self._tx() as con:
            outcome, new = record(self._rows(con, "model = ? AND decision = 'retrain'", [model]))
            cur = con.execute(
                "INSERT INTO retrain_events"
                " (model, received_at, drift_run, event_id, flow_run, decision, status, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (new[0], new[1].isoformat(), *new[2:]),  # received_at as ISO text
            )
            row = self._rows(con, "id = ?", [cur.lastrowid])[0]
        return row, outcome

    def finish(self, claim_id: int, *, ok: bool, source_version: str | None = None, detail: str | None = None) -> None:
        with self._tx() as con:
            con.execute(
                "UPDATE retrain_events SET status = ?, source_version = ?, detail = COALESCE(?, detail),"
                " finished_at = ? WHERE id = ?",
                ("succeeded" if ok else "failed", source_version, detail, datetime.now(UTC).isoformat(), claim_id),
            )

    def history(self, model: str | None = None) -> list[Claim]:
        con = sqlite3.connect(self.path, timeout=60)
        try:
            return self._rows(con, "model = ?" if model else "1 = 1", [model] if model else [])
        finally:
            con.close()


def ledger_path(home: Path) -> Path:
    return Path(home) / "retrain.db"


#: where the record lives: a SQLite file path, or postgresql://... for worker hosts that share no disk
LEDGER_ENV = "QUANTGATE_RETRAIN_DB"
PG_TABLE = "quantgate_retrain_events"
_PG_DDL = f"""
CREATE TABLE IF NOT EXISTS {PG_TABLE} (
    id BIGSERIAL PRIMARY KEY, model TEXT NOT NULL, received_at TIMESTAMPTZ NOT NULL, drift_run TEXT,
    event_id TEXT, flow_run TEXT, decision TEXT NOT NULL, status TEXT NOT NULL, source_version TEXT,
    detail TEXT, finished_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS {PG_TABLE}_model ON {PG_TABLE} (model, received_at);
"""
_COLS = "id, model, received_at, drift_run, event_id, flow_run, decision, status, source_version, detail, finished_at"


class PgRetrainLedger(_Store):
    """The same record in PostgreSQL (asyncpg): a transaction-scoped advisory lock per model
    serializes the claims, as ``BEGIN IMMEDIATE`` does for the SQLite file."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._dsn = pg_dsn(url)
        self._call(self._ddl)

    def _call(self, fn: Any, *args: Any) -> Any:
        import asyncpg

        from quantgate.errors import ConfigError

        async def go() -> Any:
            conn = await asyncpg.connect(self._dsn, timeout=10)
            try:
                return await fn(conn, *args)
            finally:
                await conn.close()

        try:
            return run_sync(go)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InvalidCatalogNameError) as exc:
            raise ConfigError(
                f"cannot open the retraining record: {type(exc).__name__}: {exc}",
                f"check {LEDGER_ENV} (postgresql://user@host:port/db) and that the server is up",
            ) from None

    @staticmethod
    async def _ddl(conn: Any) -> None:
        async with conn.transaction():  # concurrent CREATE ... IF NOT EXISTS can collide: serialize it
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('quantgate.retrain.ddl'))")
            await conn.execute(_PG_DDL)

    @staticmethod
    def _claims(rows: Any) -> list[Claim]:
        return [Claim(*tuple(r)) for r in rows]

    def _claim(self, model: str, record: _Record) -> tuple[Claim, Outcome]:
        async def go(conn: Any) -> tuple[Claim, Outcome]:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"quantgate.retrain:{model}")
                earlier = self._claims(
                    await conn.fetch(
                        f"SELECT {_COLS} FROM {PG_TABLE} WHERE model = $1 AND decision = 'retrain' ORDER BY id", model
                    )
                )
                outcome, new = record(earlier)
                row = await conn.fetchrow(
                    f"INSERT INTO {PG_TABLE} (model, received_at, drift_run, event_id, flow_run, decision, status,"
                    f" detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_COLS}",
                    *new,
                )
                return self._claims([row])[0], outcome

        return self._call(go)  # type: ignore[no-any-return]

    def finish(self, claim_id: int, *, ok: bool, source_version: str | None = None, detail: str | None = None) -> None:
        async def go(conn: Any) -> None:
            await conn.execute(
                f"UPDATE {PG_TABLE} SET status = $1, source_version = $2, detail = COALESCE($3, detail),"
                " finished_at = $4 WHERE id = $5",
                "succeeded" if ok else "failed",
                source_version,
                detail,
                datetime.now(UTC),
                claim_id,
            )

        self._call(go)

    def history(self, model: str | None = None) -> list[Claim]:
        async def go(conn: Any) -> list[Claim]:
            rows = await conn.fetch(
                f"SELECT {_COLS} FROM {PG_TABLE} WHERE ($1::text IS NULL OR model = $1) ORDER BY id", model
            )
            return self._claims(rows)

        return self._call(go)  # type: ignore[no-any-return]


def open_ledger(home: Path, target: str | None = None) -> RetrainLedger | PgRetrainLedger:
    """``target`` or ``$QUANTGATE_RETRAIN_DB``: postgresql://... or a SQLite path; default
    ``$QUANTGATE_HOME/retrain.db``."""
    import os

    chosen = target or os.environ.get(LEDGER_ENV) or str(ledger_path(home))
    if chosen.startswith(("postgresql", "postgres:")):
        return PgRetrainLedger(chosen)
    return RetrainLedger(Path(chosen))
