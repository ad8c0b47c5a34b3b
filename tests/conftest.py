"""Shared fixtures: one QUANTGATE_HOME (MLflow SQLite store in tmp), one Prefect test harness,
and the two demo models trained once, small, for the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import IMPOSSIBLE_POLICY, ROOT, run_cli
from suite_schedule import SLOWEST_FIRST, xdist_group_of


@pytest.fixture(scope="session")
def qg_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh embedded store for the session (never the developer's ./.quantgate)."""
    from quantgate.settings import configure_environment, reset_settings

    home = tmp_path_factory.mktemp("quantgate-home")
    os.environ["QUANTGATE_HOME"] = str(home)
    os.environ["QUANTGATE_PROJECT_DIR"] = str(ROOT)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
    reset_settings()
    configure_environment()
    return home


@pytest.fixture()
def settings(qg_home: Path) -> Any:
    """Settings for the session store, re-read in case a unit test changed the environment."""
    from quantgate.settings import configure_mlflow, get_settings, reset_settings

    os.environ["QUANTGATE_HOME"] = str(qg_home)
    os.environ["QUANTGATE_PROJECT_DIR"] = str(ROOT)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    reset_settings()
    s = get_settings()
    configure_mlflow(s)  # a test before may have pointed mlflow's fluent API at its own store
    return s


@pytest.fixture(scope="session")
def prefect_harness(qg_home: Path) -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def demo_sources(qg_home: Path) -> dict[str, str]:
    """Both demo models trained on small subsamples and registered (fixed seeds)."""
    from quantgate.data import demo_models as dm
    from quantgate.settings import get_settings, reset_settings

    reset_settings()
    s = get_settings()
    size = dm.DemoSize.small()
    adult = dm.train_adult(dm.prepare_adult(size, s), s)
    rt = dm.train_rt(dm.prepare_rt(size, s), s)
    return {"adult-income": f"{adult.name}/{adult.version}", "rt-sentiment": f"{rt.name}/{rt.version}"}


@pytest.fixture(scope="session")
def adult_result(prefect_harness: None, demo_sources: dict[str, str]) -> dict[str, Any]:
    """The quantize flow run once on adult-income, shared by the tests that inspect its output."""
    from quantgate.flows.quantize import quantize_model
    from quantgate.settings import reset_settings

    reset_settings()
    return quantize_model(demo_sources["adult-income"])


@pytest.fixture(scope="session")
def adult_failed_result(adult_result: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same source quantized under a policy no candidate can meet (a file twice the fp32 size)."""
    from quantgate.flows.quantize import quantize_model

    policy = tmp_path_factory.mktemp("policies") / "impossible.yaml"
    policy.write_text(IMPOSSIBLE_POLICY)
    return quantize_model("adult-income/1", policy=str(policy))


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """One `quantgate demo --small` in a fresh QUANTGATE_HOME: (home, the CLI's env, its stdout)."""
    home = tmp_path_factory.mktemp("e2e-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
    env |= {"QUANTGATE_HOME": str(home), "QUANTGATE_PROJECT_DIR": str(ROOT), "COLUMNS": "200"}
    proc = run_cli(env, "demo", "--small", timeout=1800)  # a loaded 2-core host has needed over 15 min
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return home, env, proc.stdout


@pytest.fixture(scope="session")
def quantgate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`mlflow server --app-name quantgate` on SQLite with its test users (tests/quantgate_server.py),
    one for the session: shared by the server-app integration and browser tests."""
    from quantgate_server import bootstrapped_server

    with bootstrapped_server(tmp_path_factory.mktemp("qg-server")) as server:
        yield server


@pytest.fixture()
def in_project(project: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Settings with QUANTGATE_PROJECT_DIR at the module's ``project`` fixture (a project copy whose
    data files its source's tags name relatively), for one test."""
    from quantgate.settings import get_settings, reset_settings

    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(project))
    reset_settings()
    yield get_settings()
    monkeypatch.undo()
    reset_settings()


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown (and unused) without xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Scopes are :func:`xdist_group_of` the node id: whole files or whole shared groups, handed
    out in collection order (slowest first: :func:`pytest_collection_modifyitems`)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the slowest groups first, so that two workers finish together
    (longest-first) instead of one starting the demo run last; a run in one process keeps the
    files' own order."""
    if not hasattr(config, "workerinput"):
        return
    order = {g: i for i, g in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda it: order.get(xdist_group_of(it.nodeid), len(order)))  # stable within a group
