"""Fixtures of the reliability sweep: the governed store, the forked CLI, the report rows.

The store is the suite's session store (tests/conftest.py): both demo models registered and the
adult-income source governed once (``adult_result``, a passing ``adult-income-quantized``
candidate pending approval). Every case here runs against it and must leave it as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from reliability_sweep import DEAD_PREFECT, OUT_ENV, ROOT, ForkedCli, record


@pytest.fixture(scope="session", autouse=True)
def _report_file() -> Iterator[None]:
    """The rows of this run only (scripts/reliability_report.py also keeps the last row per case),
    closed by a session row: how long the folder took, on how many CPUs, under what load."""
    out = os.environ.get(OUT_ENV)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("")
    started, load = time.monotonic(), os.getloadavg()[0]
    yield
    if out:
        record(
            {
                "kind": "session",
                "seconds": round(time.monotonic() - started, 1),
                "cpus": os.cpu_count(),
                "load": round(load, 1),
                "finished": datetime.now(UTC).isoformat(timespec="minutes"),
            }
        )


@pytest.fixture(scope="session")
def governed(adult_result: dict[str, Any], demo_sources: dict[str, str], qg_home: Path) -> dict[str, Any]:
    """The governed session store: the quantize flow's result, the sources, the Prefect harness's API."""
    from prefect.settings import PREFECT_API_URL

    from quantgate.settings import get_settings, reset_settings

    reset_settings()
    return {
        "result": adult_result,
        "sources": demo_sources,
        "home": qg_home,
        "settings": get_settings(),
        "prefect_api": PREFECT_API_URL.value(),
    }


@pytest.fixture(scope="session")
def cli(qg_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkedCli]:
    """The real CLI, one forked child per case, against the session store. Commands get an
    unreachable Prefect API unless a case passes the harness's: a command that should refuse before
    its flow starts cannot run (or register) anything when it does not. Request it before
    ``governed``: the fork server imports its libraries while the store is being built."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API", "QUANTGATE_"))}
    env |= {
        "QUANTGATE_HOME": str(qg_home),
        "QUANTGATE_PROJECT_DIR": str(ROOT),
        "PREFECT_API_URL": DEAD_PREFECT,
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }
    forked = ForkedCli(env, tmp_path_factory.mktemp("reliability-cli"))
    try:
        yield forked
    finally:
        forked.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Each case's row (set by the test as ``request.node.reliability_row``) goes to the report file
    with its outcome: pass, known bug (a strict xfail, with its reason) or FAIL."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    row = getattr(item, "reliability_row", None)
    if row is None or report.when != "call":
        return
    marker = item.get_closest_marker("xfail")
    if hasattr(report, "wasxfail"):
        result, bug = "known bug", report.wasxfail or (marker.kwargs.get("reason", "") if marker else "")
    elif report.passed:
        result, bug = "pass", ""
    else:
        result = "FAIL"
        bug = "XPASS(strict): the bug is fixed, remove the xfail" if marker else first_error(report)
    record({**row, "result": result, "bug": bug, "test": item.nodeid})


def first_error(report: pytest.TestReport) -> str:
    text = str(report.longrepr or "")
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")]
    return (lines[0][1:].strip() if lines else text.splitlines()[-1] if text else "")[:300]
