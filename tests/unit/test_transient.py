"""Which failures Prefect retries: infrastructure hiccups only, never a user's mistake or a bug."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from quantgate.errors import ConfigError, RegistryError
from quantgate.transient import is_transient


def _raised_during(outer: type[BaseException] | Any, inner: BaseException, *args: Any) -> BaseException:
    """``outer`` raised while handling ``inner`` (how MLflow wraps transport errors, no ``from``)."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer(*args)  # noqa: B904 - reproduces the implicit chaining on purpose
    except BaseException as exc:
        return exc


def test_connection_errors_and_timeouts_are_transient() -> None:
    import requests
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    assert is_transient(ConnectionRefusedError(111, "refused"))
    assert is_transient(TimeoutError("timed out"))
    assert is_transient(requests.exceptions.ConnectionError("Max retries exceeded"))
    assert is_transient(requests.exceptions.ReadTimeout("read timeout"))
    wrapped = _raised_during(MlflowException, requests.exceptions.ConnectionError("refused"), "API request to x failed")
    assert is_transient(wrapped)
    assert is_transient(sqlite3.OperationalError("database is locked"))
    locked = sqlalchemy.exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    assert is_transient(_raised_during(MlflowException, locked, "store failed"))


def test_mlflow_server_answers() -> None:
    from mlflow.exceptions import MlflowException, RestException

    assert is_transient(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}))
    assert is_transient(RestException({"error_code": "INTERNAL_ERROR", "message": "server fell over"}))
    assert is_transient(MlflowException("API request to endpoint /api failed with error code 502 != 200", 1))
    assert not is_transient(RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no model"}))
    assert not is_transient(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}))
    # an INTERNAL_ERROR raised in this process (e.g. by the SQLite store) is not a server's 5xx
    assert not is_transient(MlflowException("something broke"))


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        KeyError("column"),
        AttributeError("'NoneType' object has no attribute 'x'"),
        sqlite3.OperationalError("no such table: runs"),
        ConfigError("policy file not found: p.yaml"),
        RegistryError("no registered model named 'x'"),
    ],
)
def test_bugs_and_user_errors_are_not_retried(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_a_user_error_caused_by_a_timeout_is_still_the_users() -> None:
    assert not is_transient(_raised_during(ConfigError, TimeoutError("slow"), "data file not found: x.csv"))


def test_the_flow_retry_condition_asks_is_transient() -> None:
    from quantgate.transient import retry_condition as _transient  # what flows/quantize.py and monitor.py use

    class State:
        def __init__(self, exc: BaseException | None) -> None:
            self.exc = exc

        def result(self) -> None:
            if self.exc is not None:
                raise self.exc

    assert _transient(None, None, State(ConnectionResetError("reset")))
    assert not _transient(None, None, State(ZeroDivisionError("a bug")))
    assert not _transient(None, None, State(None))


def test_a_full_disk_is_one_line_naming_the_file_and_nothing_else_is() -> None:
    import errno

    from quantgate.cli_base import disk_full_line

    full = OSError(errno.ENOSPC, "No space left on device", "/data/artifacts/model.onnx")
    try:
        try:
            raise full
        except OSError as inner:
            raise RuntimeError("log_artifact failed") from inner  # as a library wraps it
    except RuntimeError as wrapped:
        line = disk_full_line(wrapped)
    assert line is not None and "\n" not in line
    assert line.startswith("no space left on the device writing /data/artifacts/model.onnx (No space left on device)")
    assert disk_full_line(OSError(errno.EDQUOT, "Disk quota exceeded")) is not None
    assert disk_full_line(OSError(errno.EACCES, "Permission denied", "/x")) is None
    assert disk_full_line(ValueError("no space")) is None
