"""The alert outbox: every alert is written durably first, then delivered; nothing is lost when
a receiver is down or the process stops.

One row per (alert, route), in SQLite (``$QUANTGATE_HOME/notify/outbox.db``, the embedded
default) or PostgreSQL (``QUANTGATE_NOTIFY_OUTBOX=postgresql://...``, server mode; asyncpg, which
Prefect's server already installs). A row is ``pending`` until delivered; a flush *claims* due
rows (``sending`` with a lease, so two flushers never send the same row), delivers them, and
marks each ``delivered``, back to ``pending`` with the next attempt time, or ``dead`` (a
permanent failure, or ``max_attempts`` used up).

Delivery is exactly once per route while processes stop cleanly. A process killed between the
receiver's answer and the ``delivered`` mark sends that row again when its lease expires
(at least once): each alert carries a stable id (``X-Quantgate-Alert-Id``) so a receiver can
drop the repeat.

Backoff between flushes: the wait after failed delivery *n* is
``min(backoff_max_s, backoff_s * 2**(n-1))`` (tenacity's ``wait_exponential``).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tenacity import RetryCallState, wait_exponential

from quantgate.errors import ConfigError
from quantgate.notify.routes import Route, project_notifications
from quantgate.notify.webhook import Alert, DeliveryResult
from quantgate.pg import pg_dsn, run_sync
from quantgate.settings import Settings, get_settings

T = TypeVar("T")

TABLE = "quantgate_notify_outbox"
STATUSES = ("pending", "sending", "delivered", "dead")
_COLUMNS = (
    "id, alert_id, kind, model, version, route, route_label, alert, status, attempts, "
    "created_at, next_attempt_at, lease_until, last_attempt_at, delivered_at, status_code, last_error"
)


@dataclass(frozen=True)
class Backoff:
    """When the outbox tries a failed row again, and when it gives up."""

    backoff_s: float = 30.0
    backoff_max_s: float = 3600.0
    max_attempts: int = 20
    #: a claimed row whose flusher died is claimable again after this long
    lease_s: float = 120.0

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failed delivery (1-based)."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, failed_attempts)
        return float(wait_exponential(multiplier=self.backoff_s, max=self.backoff_max_s, min=0)(state))

    def schedule(self, n: int) -> list[float]:
        return [self.delay(k) for k in range(1, n + 1)]


@dataclass(frozen=True)
class Entry:
    """One outbox row: an alert bound to one route."""

    id: str
    alert_id: str
    kind: str
    model: str
    version: str
    route: str
    route_label: str
    alert: str
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    lease_until: float | None
    last_attempt_at: float | None
    delivered_at: float | None
    status_code: int | None
    last_error: str | None

    @property
    def route_obj(self) -> Route:
        return Route.model_validate_json(self.route)

    @property
    def alert_obj(self) -> Alert:
        return Alert.model_validate_json(self.alert)


class _Store(Protocol):
    def add(self, rows: Sequence[tuple[Any, ...]]) -> None: ...
    def claim(
        self, now: float, lease_until: float, limit: int, ids: Sequence[str] | None, skip: Sequence[str] = ()
    ) -> list[Entry]: ...
    def finish(self, entry_id: str, values: dict[str, Any]) -> None: ...
    def entries(self, status: str | None, limit: int) -> list[Entry]: ...
    def counts(self) -> dict[str, int]: ...
    def describe(self) -> str: ...


class _SQLiteStore:
    """Embedded: one SQLite file; ``BEGIN IMMEDIATE`` serialises claims between processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._conn() as conn:
            conn.executescript(
                f"""
                CREATE TABLE IF NOT EXISTS {TABLE} (
                    id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, kind TEXT NOT NULL, model TEXT NOT NULL,
                    version TEXT NOT NULL, route TEXT NOT NULL, route_label TEXT NOT NULL, alert TEXT NOT NULL,
                    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
                    next_attempt_at REAL NOT NULL, lease_until REAL, last_attempt_at REAL, delivered_at REAL,
                    status_code INTEGER, last_error TEXT);
                CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (status, next_attempt_at);
                """
            )

    def _conn(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an acknowledged enqueue survives a power cut
        return conn

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO {TABLE} (id, alert_id, kind, model, version, route, route_label, alert, status, "
                "attempts, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")
        finally:
            conn.close()

    def claim(
        self, now: float, lease_until: float, limit: int, ids: Sequence[str] | None, skip: Sequence[str] = ()
    ) -> list[Entry]:
        due = "((status = 'pending' AND next_attempt_at <= ?) OR (status = 'sending' AND lease_until < ?))"
        params: list[Any] = [now, now]
        if ids is not None:
            due += f" AND id IN ({', '.join('?' for _ in ids)})"
            params += list(ids)
        if skip:
            due += f" AND route_label NOT IN ({', '.join('?' for _ in skip)})"
            params += list(skip)
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE {due} ORDER BY created_at LIMIT ?", [*params, limit]
            ).fetchall()
            picked = [r["id"] for r in rows]
            if picked:
                conn.execute(
                    f"UPDATE {TABLE} SET status = 'sending', lease_until = ? "
                    f"WHERE id IN ({', '.join('?' for _ in picked)})",
                    [lease_until, *picked],
                )
            conn.execute("COMMIT")
        finally:
            conn.close()
        return [Entry(**{**dict(r), "status": "sending", "lease_until": lease_until}) for r in rows]

    def finish(self, entry_id: str, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        conn = self._conn()
        try:
            conn.execute(f"UPDATE {TABLE} SET {sets} WHERE id = ?", [*values.values(), entry_id])
        finally:
            conn.close()

    def entries(self, status: str | None, limit: int) -> list[Entry]:
        conn = self._conn()
        try:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE (? IS NULL OR status = ?) ORDER BY created_at DESC LIMIT ?",
                [status, status, limit],
            ).fetchall()
        finally:
            conn.close()
        return [Entry(**dict(r)) for r in rows]

    def counts(self) -> dict[str, int]:
        conn = self._conn()
        try:
            rows = conn.execute(f"SELECT status, COUNT(*) FROM {TABLE} GROUP BY status").fetchall()
        finally:
            conn.close()
        return {r[0]: int(r[1]) for r in rows}

    def describe(self) -> str:
        return f"SQLite {self.path}"


class _PostgresStore:
    """Server mode: one PostgreSQL table; ``FOR UPDATE SKIP LOCKED`` lets flushers run side by side."""

    def __init__(self, url: str) -> None:
        import asyncpg

        self.url = url
        ddl = f"""
            CREATE TABLE IF NOT EXISTS {TABLE} (
                id text PRIMARY KEY, alert_id text NOT NULL, kind text NOT NULL, model text NOT NULL,
                version text NOT NULL, route text NOT NULL, route_label text NOT NULL, alert text NOT NULL,
                status text NOT NULL, attempts integer NOT NULL DEFAULT 0, created_at double precision NOT NULL,
                next_attempt_at double precision NOT NULL, lease_until double precision,
                last_attempt_at double precision, delivered_at double precision, status_code integer,
                last_error text);
            CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (status, next_attempt_at);
        """
        try:
            self._run(lambda conn: conn.execute(ddl))
        except (OSError, asyncpg.PostgresError) as exc:
            raise ConfigError(
                f"cannot open the alert outbox database: {type(exc).__name__}: {exc}",
                "check QUANTGATE_NOTIFY_OUTBOX (postgresql://user@host:port/db) and that the server is up",
            ) from None

    def _run(self, op: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        import asyncpg

        async def go() -> T:
            conn = await asyncpg.connect(pg_dsn(self.url), timeout=10)
            try:
                return await op(conn)
            finally:
                await conn.close()

        return run_sync(go)

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        sql = (
            f"INSERT INTO {TABLE} (id, alert_id, kind, model, version, route, route_label, alert, status, "
            "attempts, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $10)"
        )

        async def op(conn: Any) -> None:
            async with conn.transaction():
                await conn.executemany(sql, list(rows))

        self._run(op)

    def claim(
        self, now: float, lease_until: float, limit: int, ids: Sequence[str] | None, skip: Sequence[str] = ()
    ) -> list[Entry]:
        sql = (
            f"UPDATE {TABLE} SET status = 'sending', lease_until = $1 WHERE id IN ("
            f"SELECT id FROM {TABLE} WHERE ((status = 'pending' AND next_attempt_at <= $2) "
            "OR (status = 'sending' AND lease_until < $2)) AND ($3::text[] IS NULL OR id = ANY($3::text[])) "
            "AND NOT (route_label = ANY($5::text[])) "
            f"ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING {_COLUMNS}"
        )

        async def op(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(sql, lease_until, now, list(ids) if ids is not None else None, limit, list(skip))
            )

        rows = self._run(op)
        return sorted((Entry(**dict(r)) for r in rows), key=lambda e: e.created_at)

    def finish(self, entry_id: str, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(values, start=2))

        async def op(conn: Any) -> None:
            await conn.execute(f"UPDATE {TABLE} SET {sets} WHERE id = $1", entry_id, *values.values())

        self._run(op)

    def entries(self, status: str | None, limit: int) -> list[Entry]:
        async def op(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    f"SELECT {_COLUMNS} FROM {TABLE} WHERE ($1::text IS NULL OR status = $1) "
                    "ORDER BY created_at DESC LIMIT $2",
                    status,
                    limit,
                )
            )

        return [Entry(**dict(r)) for r in self._run(op)]

    def counts(self) -> dict[str, int]:
        async def op(conn: Any) -> list[Any]:
            return list(await conn.fetch(f"SELECT status, COUNT(*) AS n FROM {TABLE} GROUP BY status"))

        return {r["status"]: int(r["n"]) for r in self._run(op)}

    def describe(self) -> str:
        return f"PostgreSQL table {TABLE} at {self.url.rsplit('@', 1)[-1]}"


@dataclass(frozen=True)
class Attempt:
    """What one flush did with one row."""

    entry_id: str
    alert_id: str
    kind: str
    model: str
    route: str
    status: str  # the row's status afterwards: delivered | pending | dead
    attempts: int
    result: DeliveryResult
    next_attempt_at: float | None = None


Deliverer = Callable[[Route, Alert], DeliveryResult]


class Outbox:
    """Durable alerts: :meth:`enqueue` writes, :meth:`flush` delivers what is due."""

    def __init__(
        self, target: str | Path | None = None, *, backoff: Backoff | None = None, alert_log: Path | None = None
    ) -> None:
        text = str(target) if target is not None else ""
        self.backoff = backoff or Backoff()
        #: every delivery attempt is also appended here as a JSON line (None: not logged)
        self.alert_log = alert_log
        self._store: _Store = (
            _PostgresStore(text) if text.startswith(("postgresql", "postgres:")) else _SQLiteStore(Path(text))
        )

    @classmethod
    def open(cls, settings: Settings | None = None, *, backoff: Backoff | None = None) -> Outbox:
        """The configured outbox: ``QUANTGATE_NOTIFY_OUTBOX``, else ``$QUANTGATE_HOME/notify/outbox.db``;
        its schedule from ``notifications:`` in the project's ``quantgate.yaml``."""
        s = settings or get_settings()
        if backoff is None:
            n = project_notifications(s)
            backoff = Backoff(n.backoff_s, n.backoff_max_s, n.max_attempts, n.lease_s)
        return cls(
            s.notify_outbox or (s.home_abs / "notify" / "outbox.db"),
            backoff=backoff,
            alert_log=s.home_abs / "alerts.jsonl",
        )

    def describe(self) -> str:
        return self._store.describe()

    def enqueue(self, alert: Alert, routes: Sequence[Route], *, now: float | None = None) -> list[str]:
        """Write one row per route (committed before this returns); returns the row ids."""
        at = time.time() if now is None else now
        body = alert.model_dump_json()
        rows = [
            (uuid.uuid4().hex, alert.id, alert.kind, alert.model, alert.version, r.to_json(), r.label, body, at, at)
            for r in routes
        ]
        if rows:
            self._store.add(rows)
        return [row[0] for row in rows]

    def flush(
        self,
        deliver: Deliverer | None = None,
        *,
        ids: Sequence[str] | None = None,
        limit: int = 100,
        now: Callable[[], float] = time.time,
    ) -> list[Attempt]:
        """Deliver every due row (or only ``ids``); each outcome is written back at once."""
        from quantgate.notify.deliver import deliver as default_deliver
        from quantgate.notify.webhook import write_alert_log

        send = deliver or default_deliver
        done: list[Attempt] = []
        down: list[str] = []  # routes that failed in this flush: their other rows wait for the next one
        while len(done) < limit:
            # one row at a time, so a lease only has to outlast one delivery, however long the flush
            started = now()
            claimed = self._store.claim(started, started + self.backoff.lease_s, 1, ids, down)
            if not claimed:
                break
            entry = claimed[0]
            alert = entry.alert_obj
            try:
                result = send(entry.route_obj, alert)
            except Exception as exc:  # a bug in a sender must not leave the row claimed until its lease ends
                result = DeliveryResult(ok=False, attempts=1, error=f"{type(exc).__name__}: {exc}")
            attempts = entry.attempts + 1
            finished = now()
            values: dict[str, Any] = {
                "attempts": attempts,
                "last_attempt_at": finished,
                "status_code": result.status_code,
                "last_error": result.error,
                "lease_until": None,
            }
            next_at: float | None = None
            if result.ok:
                status = "delivered"
                values["delivered_at"] = finished
            elif result.permanent or attempts >= self.backoff.max_attempts:
                status = "dead"
            else:
                status = "pending"
                next_at = finished + self.backoff.delay(attempts)
                values["next_attempt_at"] = next_at
                down.append(entry.route_label)
            values["status"] = status
            self._store.finish(entry.id, values)
            if self.alert_log is not None:
                write_alert_log(self.alert_log, alert, result)
            done.append(
                Attempt(
                    entry.id,
                    entry.alert_id,
                    entry.kind,
                    entry.model,
                    entry.route_label,
                    status,
                    attempts,
                    result,
                    next_at,
                )
            )
        return done

    def entries(self, status: str | None = None, limit: int = 50) -> list[Entry]:
        if status is not None and status not in STATUSES:
            raise ConfigError(f"unknown outbox status '{status}'", f"use one of {', '.join(STATUSES)}")
        return self._store.entries(status, limit)

    def counts(self) -> dict[str, int]:
        found = self._store.counts()
        return {k: found.get(k, 0) for k in STATUSES}


def entry_json(entry: Entry) -> dict[str, Any]:
    """A row as plain JSON (the alert parsed), for ``quantgate notify status --json``."""
    data = {k: getattr(entry, k) for k in entry.__dataclass_fields__ if k not in ("alert", "route")}
    data["alert"] = json.loads(entry.alert)
    return data
