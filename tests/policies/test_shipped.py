"""Everything shipped as configuration validates, and generated files are current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_policy_validates(path: Path) -> None:
    from quantgate.policy.schema import load_policy

    p = load_policy(path)
    assert p.rules and p.digest.startswith("sha256:")


def test_schema_file_is_current() -> None:
    from quantgate.policy.schema import policy_json_schema

    shipped = json.loads((ROOT / "policies" / "policy.schema.json").read_text())
    assert shipped == json.loads(policy_json_schema()), "run `make schema` and commit policies/policy.schema.json"


@pytest.mark.parametrize("path", sorted((ROOT / "registry" / "models").glob("*.yaml")), ids=lambda p: p.name)
def test_onboarding_files_validate(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quantgate.onboarding import load_model_config
    from quantgate.policy.schema import load_policy
    from quantgate.settings import reset_settings

    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(ROOT))
    reset_settings()
    try:
        cfg = load_model_config(path.stem)
        assert cfg.name == path.stem
        load_policy(ROOT / cfg.policy)
    finally:
        monkeypatch.undo()
        reset_settings()


@pytest.mark.parametrize("path", sorted((ROOT / "monitoring").glob("*.yaml")), ids=lambda p: p.name)
def test_monitoring_specs_validate(path: Path) -> None:
    from quantgate.monitor.job import MonitorSpec

    spec = MonitorSpec.model_validate(yaml.safe_load(path.read_text()))
    assert (ROOT / "registry" / "models" / f"{spec.model}.yaml").exists()


def test_prefect_yaml_deployments_load() -> None:
    """Each deployment's entrypoint (a module path in the installed package) loads as a flow and
    its schedules (cron or interval) parse."""
    from datetime import timedelta

    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.flows import load_flow_from_entrypoint

    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = set()
    for dep in doc["deployments"]:
        assert dep["entrypoint"].startswith("quantgate.flows."), dep["entrypoint"]
        flow = load_flow_from_entrypoint(dep["entrypoint"])
        names.add(flow.name)
        for sched in dep.get("schedules", []):
            if "cron" in sched:
                CronSchedule(cron=sched["cron"], timezone=sched.get("timezone"))
            else:
                IntervalSchedule(interval=timedelta(seconds=sched["interval"]), timezone=sched.get("timezone"))
        params = set(dep.get("parameters", {}))
        assert params <= set(flow.parameters.properties), f"{dep['name']}: unknown parameters {params}"
        assert dep["work_pool"]["name"] == "quantgate"
    assert names == {
        "govern-registry",
        "monitor-model",
        "quantize-model",
        "notify-outbox",
        "promote-on-approval",
        "retrain-model",
    }
