"""The append-only audit table ``quantgate_audit`` in the auth database (SQLite or PostgreSQL).

Every approval-relevant request the server sees (tag writes on model versions, alias moves,
version creation) is one row, allowed or refused. The table is insert-only for the application,
and the database refuses UPDATE and DELETE on it through triggers, so a row cannot be changed by
anyone going through SQL either, short of dropping the trigger (which needs DDL rights).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

TABLE = "quantgate_audit"
OUTCOMES = ("allowed", "refused", "failed")

_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
]
_PG_TRIGGERS = [
    f"CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{TABLE} is append-only'; END $$",
    f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}",
    f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
    f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()",
]


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    username: str
    action: str
    model: str
    version: str
    key: str
    value: str
    outcome: str
    reason: str


def _table(metadata: Any) -> Any:
    from sqlalchemy import Column, DateTime, Integer, String, Table, Text

    return Table(
        TABLE,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("username", String(255), nullable=False),
        Column("action", String(64), nullable=False),
        Column("model", String(512), nullable=False, default=""),
        Column("version", String(64), nullable=False, default=""),
        Column("key", String(255), nullable=False, default=""),
        Column("value", Text, nullable=False, default=""),
        Column("outcome", String(16), nullable=False),
        Column("reason", Text, nullable=False, default=""),
    )


class AuditLog:
    """The audit table on ``database_uri`` (created with its triggers on first use)."""

    def __init__(self, database_uri: str, engine: Engine | None = None) -> None:
        from sqlalchemy import MetaData, create_engine

        self.engine = engine or create_engine(database_uri, pool_pre_ping=True)
        self.metadata = MetaData()
        self.table = _table(self.metadata)

    def create(self) -> AuditLog:
        """Create table and triggers if missing. Several server workers may race here: a loser
        finds the objects created by the winner."""
        from sqlalchemy import exc, inspect, text

        for attempt in range(3):
            try:
                self.metadata.create_all(self.engine, checkfirst=True)
                ddl = _PG_TRIGGERS if self.engine.dialect.name == "postgresql" else _SQLITE_TRIGGERS
                with self.engine.begin() as conn:
                    if self.engine.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(724201)"))  # one worker at a time
                    for stmt in ddl:
                        conn.execute(text(stmt))
                return self
            except exc.SQLAlchemyError:
                if attempt == 2 or not inspect(self.engine).has_table(TABLE):
                    raise
        return self

    def record(
        self,
        *,
        username: str,
        action: str,
        outcome: str,
        model: str = "",
        version: str = "",
        key: str = "",
        value: str = "",
        reason: str = "",
    ) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"audit outcome {outcome!r} is not one of {OUTCOMES}")
        row = {
            "at": datetime.now(UTC),
            "username": username,
            "action": action,
            "model": model,
            "version": str(version),
            "key": key,
            "value": value,
            "outcome": outcome,
            "reason": reason[:4000],
        }
        with self.engine.begin() as conn:
            conn.execute(self.table.insert().values(**row))

    def entries(self, model: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        from sqlalchemy import select

        q = select(self.table).order_by(self.table.c.id)
        if model:
            q = q.where(self.table.c.model == model)
        with self.engine.connect() as conn:
            rows = conn.execute(q.limit(limit)).mappings().all()
        return [AuditEntry(**dict(r)) for r in rows]
