"""PostgreSQL in server mode: one place for the URL rules, running asyncpg from synchronous code,
the connection and its errors.

The inference log (:mod:`quantgate.monitor.inference_log`) and the delayed labels
(:mod:`quantgate.monitor.labels`) share one database, named by ``QUANTGATE_INFERENCE_LOG``
(or ``quantgate serve --inference-log``); the alert outbox (:mod:`quantgate.notify.outbox`) and the
retraining record (:mod:`quantgate.retrain.debounce`) may have their own. All talk to PostgreSQL
through asyncpg (installed with Prefect's server), so no second database driver is needed. In the
monitor, every failure to reach or use the database becomes one :class:`~quantgate.errors.ConfigError`
that names the database (password hidden) and the cause: a monitor that cannot read its window
stops, it never reports an empty window as "no drift".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from quantgate.errors import ConfigError

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")

PG_HINT = "check QUANTGATE_INFERENCE_LOG (postgresql://user@host:port/db) and that the server is up"


def is_pg_url(target: object) -> bool:
    """Whether a log target names PostgreSQL (``postgresql://``, ``postgresql+driver://``, ``postgres://``)."""
    return str(target).startswith(("postgresql", "postgres:"))


def pg_dsn(url: str) -> str:
    """asyncpg takes ``postgresql://``; SQLAlchemy-style ``postgresql+driver://`` is accepted too."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith(("postgresql", "postgres")) else url


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make()`` to completion on a private loop in its own thread, so it works
    the same whether or not the caller already runs an event loop (a Prefect task, an ASGI server,
    a notebook): ``asyncio.run`` cannot nest."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (what error messages show)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def pg_error(exc: BaseException, url: str, what: str) -> ConfigError:
    detail = str(exc) or "no detail"
    return ConfigError(f"cannot {what} ({redact(url)}): {type(exc).__name__}: {detail}", PG_HINT)


def _errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (OSError, ValueError, TimeoutError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def connect(url: str, ddl: str | None = None, *, what: str = "open the database") -> asyncpg.Connection:
    """A connection (10 s timeout) with ``ddl`` applied (``CREATE ... IF NOT EXISTS``), or a ConfigError."""
    import asyncpg

    try:
        conn = await asyncpg.connect(pg_dsn(url), timeout=10)
    except _errors() as exc:
        raise pg_error(exc, url, what) from None
    if ddl:
        try:
            await conn.execute(ddl)
        except _errors() as exc:
            await conn.close()
            raise pg_error(exc, url, what) from None
    return conn


def run_pg(url: str, ddl: str | None, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, what: str) -> T:
    """Connect, apply ``ddl``, run ``fn(conn)``, close: synchronously, from any thread.

    See :func:`run_sync`.
    """

    async def go() -> T:
        conn = await connect(url, ddl, what=what)
        try:
            return await fn(conn)
        except _errors() as exc:
            raise pg_error(exc, url, what) from None
        finally:
            await conn.close()

    return run_sync(go)


def fetch(url: str, ddl: str | None, sql: str, *args: Any, what: str, missing_ok: bool = False) -> list[Any]:
    """The rows of one query (see :func:`run_pg`); ``missing_ok``: a table not created yet reads as
    no rows (a reader needs no CREATE right)."""
    import asyncpg

    async def q(conn: asyncpg.Connection) -> list[Any]:
        try:
            return list(await conn.fetch(sql, *args))
        except asyncpg.UndefinedTableError:
            if missing_ok:
                return []
            raise

    return run_pg(url, ddl, q, what=what)
