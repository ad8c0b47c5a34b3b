"""Which failures are worth retrying: infrastructure that may answer on a second try, never a
user's mistake or a bug (a bug retried runs three times and hides its first traceback).

Pure: an exception in, a bool out. Prefect's task retries ask it (``flows/quantize.py``).
"""

from __future__ import annotations

# MLflow error codes that mean "try again later" (REST 503/504/429)
_RETRYABLE_MLFLOW_CODES = frozenset(
    {"TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"}
)
_SQLITE_BUSY = ("database is locked", "database table is locked")


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from or during (MLflow wraps transport errors)."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 20:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _one(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):  # refused / reset / broken pipe / socket timeout
        return True
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith(("requests", "urllib3", "httpx", "httpcore")):
        # transport failures: connection, timeout, retries exhausted; not 4xx or bad URLs
        return any(
            k in name for k in ("Connect", "Timeout", "RetryError", "MaxRetry", "ProtocolError", "RemoteProtocol")
        )
    if name == "OperationalError" and any(s in str(exc).lower() for s in _SQLITE_BUSY):
        return True  # sqlite3 / SQLAlchemy: another writer holds the SQLite store
    if module.startswith("mlflow"):
        code = getattr(exc, "error_code", None)
        if code in _RETRYABLE_MLFLOW_CODES:
            return True
        # a server's 5xx answer (JSON: RestException; other bodies: "API request to endpoint ... failed")
        from_server = name == "RestException" or str(exc).startswith("API request to")
        status = exc.get_http_status_code() if hasattr(exc, "get_http_status_code") else None
        return from_server and isinstance(status, int) and status >= 500 and status != 501
    return False


def is_transient(exc: BaseException) -> bool:
    """True for connection errors, timeouts, MLflow REST 5xx / ``TEMPORARILY_UNAVAILABLE`` and a
    locked SQLite store, anywhere in the exception's chain; False for a ``QuantgateError`` (a
    user's input) and for everything else (a bug: fail once, with its traceback)."""
    from quantgate.errors import QuantgateError

    if isinstance(exc, QuantgateError):
        return False
    return any(_one(e) for e in exception_chain(exc))


def retry_condition(task: object, task_run: object, state: object) -> bool:
    """A Prefect task's ``retry_condition_fn``: retry infrastructure hiccups (:func:`is_transient`),
    never a user's mistake or a bug."""
    try:
        state.result()  # type: ignore[attr-defined]
    except Exception as exc:
        return is_transient(exc)
    return False
