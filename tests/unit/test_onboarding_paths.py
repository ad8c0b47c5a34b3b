"""Paths that come from tags of a source version name files inside the project, nothing else.

Whoever can register a source version sets its tags; a tag must not choose a policy or a data
file anywhere on the worker (an absolute path, ``..``, ``${VAR}``, ``~``, a symbolic link out of
the project). A reviewed ``registry/models/<name>.yaml`` keeps every path it names. Pure: a
temporary project directory, no MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantgate.errors import ConfigError, QuantgateError
from quantgate.onboarding import PATH_KEYS, check_tag_paths, load_model_config, tag_path_refusal
from quantgate.settings import get_settings, reset_settings

DATA_KEYS = ("calibration_data", "evaluation_data", "reference_data")


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    tmp_path = tmp_path.resolve()
    proj = tmp_path / "project"
    (proj / "registry" / "models").mkdir(parents=True)
    (proj / "policies").mkdir()
    (proj / "policies" / "team.yaml").write_text("name: team\nrules: []\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "permissive.yaml").write_text("name: loose\nrules: []\n")
    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(proj))
    monkeypatch.setenv("QUANTGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QG_TEST_OUTSIDE", str(outside))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    reset_settings()
    yield proj
    reset_settings()


def _tags(**extra: str) -> dict[str, str]:
    base = {
        "quantgate.task": "tabular-classification",
        "quantgate.label": "y",
        "quantgate.calibration_data": "data/m/calibration.parquet",
        "quantgate.evaluation_data": "data/m/evaluation.parquet",
    }
    return base | {f"quantgate.{k}": v for k, v in extra.items()}


# --- the pure check ---------------------------------------------------------------------------

ACCEPTED = [
    "policies/team.yaml",
    "policies/permissive.yaml",  # a reviewed policy of the project: a tag may choose it
    "./policies/team.yaml",
    "data/m/calibration.parquet",
    "not-there-yet.parquet",  # existence is the data step's business (DataError), not this one's
    "a name with spaces.csv",
]

REFUSED = [
    ("/etc/passwd", "absolute path"),
    ("/work/main/policies/permissive.yaml", "absolute path"),
    ("../outside/permissive.yaml", "'..'"),
    ("policies/../../outside/permissive.yaml", "'..'"),
    ("policies/../policies/team.yaml", "'..'"),  # stays inside, but no '..' at all from a tag
    ("${QG_TEST_OUTSIDE}/permissive.yaml", "environment variable"),
    ("$QG_TEST_OUTSIDE/permissive.yaml", "environment variable"),
    ("${QUANTGATE_HOME}/data/m/calibration.parquet", "environment variable"),
    ("~/permissive.yaml", "home directory"),
    ("~root/permissive.yaml", "home directory"),
    ("", "names no file"),
    ("   ", "names no file"),
    ("data/m\x00.parquet", "NUL"),
]


@pytest.mark.parametrize("key", ["policy", *DATA_KEYS])
@pytest.mark.parametrize("value", ACCEPTED)
def test_relative_paths_inside_the_project_are_accepted(project: Path, key: str, value: str) -> None:
    assert tag_path_refusal(key, value, project) is None


@pytest.mark.parametrize("key", ["policy", *DATA_KEYS])
@pytest.mark.parametrize(("value", "reason"), REFUSED)
def test_paths_leaving_the_project_are_refused(project: Path, key: str, value: str, reason: str) -> None:
    got = tag_path_refusal(key, value, project)
    assert got is not None and reason in got


def test_a_recipe_file_is_a_path_and_a_recipe_name_is_not(project: Path) -> None:
    assert tag_path_refusal("recipe", "/tmp/evil.json", project) == "it is an absolute path"
    assert tag_path_refusal("recipe", "../evil.json", project) is not None
    assert tag_path_refusal("recipe", "recipes/mine.json", project) is None
    # names are checked against the recipe registry later (get_recipe), not as paths
    for name in ("auto", "ort-fp32", "dynamic-int8"):
        assert tag_path_refusal("recipe", name, project) is None


def test_keys_that_name_no_file_are_not_checked(project: Path) -> None:
    assert set(PATH_KEYS) == {"policy", "calibration_data", "evaluation_data", "reference_data", "recipe", "prompts"}
    for key in ("label", "task", "description", "sensitive_attributes", "target", "text_column"):
        assert tag_path_refusal(key, "/abs/${X}/../y", project) is None


def test_a_symbolic_link_out_of_the_project_is_refused(project: Path) -> None:
    outside = Path(os.environ["QG_TEST_OUTSIDE"])
    (project / "policies" / "linked").symlink_to(outside, target_is_directory=True)
    (project / "policies" / "loose.yaml").symlink_to(outside / "permissive.yaml")
    for value in ("policies/linked/permissive.yaml", "policies/loose.yaml"):
        got = tag_path_refusal("policy", value, project)
        assert got is not None and "resolves outside the project directory" in got
        assert str(outside / "permissive.yaml") in got
    # a link that stays inside the project is fine
    (project / "policies" / "alias.yaml").symlink_to(project / "policies" / "team.yaml")
    assert tag_path_refusal("policy", "policies/alias.yaml", project) is None


def test_a_relative_project_dir_is_resolved_first(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    assert tag_path_refusal("policy", "policies/team.yaml", Path(".")) is None
    assert tag_path_refusal("policy", "../outside/permissive.yaml", Path(".")) is not None


def test_the_refusal_names_tag_value_and_fix(project: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        check_tag_paths("m", {"policy": "/elsewhere/permissive.yaml", "label": "y"}, project)
    err = exc.value
    assert isinstance(err, QuantgateError)  # the CLI prints it as one line, exit 2
    assert "tag quantgate.policy='/elsewhere/permissive.yaml'" in err.message
    assert "source version of 'm'" in err.message and "absolute path" in err.message
    assert str(project) in err.message
    assert err.hint is not None
    assert "quantgate.policy=policies/my-policy.yaml" in err.hint
    assert "registry/models/m.yaml" in err.hint
    with pytest.raises(ConfigError) as exc:
        check_tag_paths("m", {"reference_data": "../ref.parquet"}, project)
    assert "quantgate.reference_data='../ref.parquet'" in exc.value.message
    assert exc.value.hint is not None and "quantgate.reference_data=data/m/reference.parquet" in exc.value.hint


def test_every_file_key_is_checked_and_the_first_refused_is_named(project: Path) -> None:
    for key in PATH_KEYS:
        with pytest.raises(ConfigError, match=rf"tag quantgate\.{key}="):
            check_tag_paths("m", {key: "/abs/x.json"}, project)
    check_tag_paths("m", {k: "ok/x.json" for k in PATH_KEYS}, project)  # all relative: nothing raised


# --- through load_model_config ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["policy", *DATA_KEYS, "recipe"])
def test_load_refuses_a_tag_path_out_of_the_project(project: Path, key: str) -> None:
    value = "${QG_TEST_OUTSIDE}/permissive.yaml" if key != "recipe" else "/tmp/r.json"
    with pytest.raises(ConfigError, match=rf"tag quantgate\.{key}=.* is refused"):
        load_model_config("m", tags=_tags(**{key: value}))


def test_load_accepts_tag_paths_inside_the_project(project: Path) -> None:
    cfg = load_model_config("m", tags=_tags(policy="policies/team.yaml", reference_data="data/m/ref.parquet"))
    assert cfg.policy == "policies/team.yaml"
    assert cfg.resolve(cfg.policy) == project / "policies" / "team.yaml"
    assert cfg.resolve(cfg.reference_data or "") == project / "data" / "m" / "ref.parquet"
    assert get_settings().project_dir == project


def test_the_reviewed_file_keeps_its_paths(project: Path) -> None:
    """Absolute paths, ${QUANTGATE_HOME} and ${VARS} in registry/models/<name>.yaml are reviewed in
    git: unchanged, and a refused tag for a key the file sets is never used, so never refused."""
    (project / "registry" / "models" / "m.yaml").write_text(
        "label: y\n"
        "calibration_data: ${QUANTGATE_HOME}/data/m/calibration.parquet\n"
        "evaluation_data: /abs/evaluation.parquet\n"
        "policy: ${QG_TEST_OUTSIDE}/permissive.yaml\n"
    )
    cfg = load_model_config("m", tags=_tags(policy="/etc/other.yaml", evaluation_data="../x.parquet"))
    assert cfg.policy == "${QG_TEST_OUTSIDE}/permissive.yaml"
    assert cfg.resolve(cfg.policy) == Path(os.environ["QG_TEST_OUTSIDE"]) / "permissive.yaml"
    assert cfg.evaluation_data == "/abs/evaluation.parquet"
    assert cfg.resolve(cfg.calibration_data) == get_settings().home_abs / "data" / "m" / "calibration.parquet"


def test_a_tag_filling_in_what_the_file_leaves_out_is_checked(project: Path) -> None:
    (project / "registry" / "models" / "m.yaml").write_text(
        "label: y\ncalibration_data: c.parquet\nevaluation_data: e.parquet\n"
    )
    with pytest.raises(ConfigError, match=r"tag quantgate\.reference_data='/abs/ref\.parquet'"):
        load_model_config("m", tags={"quantgate.reference_data": "/abs/ref.parquet"})
    cfg = load_model_config("m", tags={"quantgate.reference_data": "data/ref.parquet"})
    assert cfg.reference_data == "data/ref.parquet"
