"""A team's project: what `quantgate init` writes, and which card template and policy are used."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from quantgate import project
from quantgate.errors import ConfigError
from quantgate.settings import get_settings, reset_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "team"
    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(d))
    monkeypatch.setenv("QUANTGATE_HOME", str(tmp_path / "home"))
    reset_settings()
    yield d
    monkeypatch.undo()
    reset_settings()


def test_packaged_files_are_the_repository_files() -> None:
    """One file each: the package's template and default policy are the top-level ones (links in
    the source tree, copied into the wheel), so they cannot drift apart."""
    assert project.packaged_file("model_card.md.j2").samefile(ROOT / "registry" / "model_card.md.j2")
    assert project.packaged_file("default_policy.yaml").samefile(ROOT / "policies" / "default.yaml")
    assert (ROOT / "src" / "quantgate" / "py.typed").is_file()


def test_init_scaffolds_a_project_whose_examples_validate(team: Path) -> None:
    from quantgate.monitor.job import MonitorSpec
    from quantgate.onboarding import ModelConfig
    from quantgate.policy.schema import load_policy

    written = project.init_project(team)
    rel = {p.relative_to(team).as_posix() for p in written}
    assert {
        "README.md",
        ".gitignore",
        "prefect.yaml",
        "quantgate.yaml",
        "policies/default.yaml",
        "policies/permissive.yaml",
        "registry/models/example-model.yaml.example",
        "monitoring/example-model.yaml.example",
    } == rel
    policy = load_policy(team / "policies" / "default.yaml")
    assert policy.name == "default"
    assert load_policy(team / "policies" / "permissive.yaml").name == "permissive"
    assert (team / "policies" / "default.yaml").read_text().startswith("# Copied from quantgate's default policy")
    cfg = ModelConfig.model_validate(yaml.safe_load((team / "registry/models/example-model.yaml.example").read_text()))
    assert get_settings().path(cfg.policy) == (team / "policies" / "default.yaml").resolve()
    MonitorSpec.model_validate(yaml.safe_load((team / "monitoring/example-model.yaml.example").read_text()))
    from quantgate.notify.routes import project_notifications
    from quantgate.settings import Settings

    assert [r.label for r in project_notifications(Settings(project_dir=team)).routes] == [
        "webhook:$QUANTGATE_ALERT_WEBHOOK"
    ]
    # examples are not onboardings: the nightly sweep lists registry/models/*.yaml only
    assert not list((team / "registry" / "models").glob("*.yaml"))
    # a new project has no card template of its own: quantgate's is used
    assert project.model_card_template().samefile(ROOT / "registry" / "model_card.md.j2")


def test_init_prefect_yaml_names_flows_by_module(team: Path) -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentTriggerTypes
    from prefect.flows import load_flow_from_entrypoint
    from pydantic import TypeAdapter

    DeploymentTriggerAdapter = TypeAdapter(DeploymentTriggerTypes)

    project.init_project(team)
    doc = yaml.safe_load((team / "prefect.yaml").read_text())
    for dep in doc["deployments"]:
        assert load_flow_from_entrypoint(dep["entrypoint"]).name in {
            "govern-registry",
            "quantize-model",
            "retrain-model",
        }
        for trigger in dep.get("triggers", []):  # the same schema `prefect deploy` validates them with
            DeploymentTriggerAdapter.validate_python(trigger)


def test_init_refuses_to_overwrite_and_writes_nothing(team: Path) -> None:
    (team / "policies").mkdir(parents=True)
    (team / "policies" / "default.yaml").write_text("name: ours\nrules: []\n")
    with pytest.raises(ConfigError, match=r"refusing to overwrite policies/default.yaml"):
        project.init_project(team)
    assert (team / "policies" / "default.yaml").read_text() == "name: ours\nrules: []\n"
    assert not (team / "README.md").exists()


def test_init_into_an_existing_repository(team: Path) -> None:
    (team / ".git").mkdir(parents=True)
    (team / "notes.txt").write_text("ours")
    assert project.init_project(team)
    assert (team / "notes.txt").read_text() == "ours"


def test_a_project_template_wins(team: Path) -> None:
    project.init_project(team)
    own = team / "registry" / "model_card.md.j2"
    own.write_text("---\n{{ card_data }}\n---\n\n# Our card\n")
    assert project.model_card_template() == own.resolve()


def test_init_cli_one_line_error(team: Path) -> None:
    from typer.testing import CliRunner

    from quantgate.cli import app

    runner = CliRunner()
    first = runner.invoke(app, ["init", str(team)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["init", str(team)])
    lines = [ln for ln in again.output.splitlines() if ln.strip()]
    assert again.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: refusing to overwrite")
    assert not (team.parent / "home").exists()  # init creates no QUANTGATE_HOME
