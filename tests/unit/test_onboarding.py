"""Onboarding: registry/models/<name>.yaml, quantgate.* tags, the merge (file wins), errors and
${QUANTGATE_HOME} expansion, in a temporary project dir."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantgate.errors import ConfigError
from quantgate.onboarding import ModelConfig, load_model_config, onboarding_file
from quantgate.settings import Settings, get_settings, reset_settings

FULL = textwrap.dedent(
    """\
    name: m
    task: tabular-classification
    label: income
    calibration_data: ${QUANTGATE_HOME}/data/m/calibration.parquet
    evaluation_data: data/evaluation.parquet
    sensitive_attributes: [sex, race]
    recipe: int8-weight-only
    """
)

TAGS = {
    "quantgate.task": "text-classification",
    "quantgate.label": "sentiment",
    "quantgate.calibration_data": "tags/cal.parquet",
    "quantgate.evaluation_data": "tags/eval.parquet",
    "quantgate.reference_data": "tags/ref.parquet",
    "quantgate.sensitive_attributes": " sex , race,, ",
    "quantgate.slices": "length_bucket",
    "quantgate.policy": "policies/strict.yaml",
    "unrelated.tag": "ignored",
}


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    tmp_path = tmp_path.resolve()  # expected paths below are compared with resolved ones
    proj = tmp_path / "project"
    (proj / "registry" / "models").mkdir(parents=True)
    home = tmp_path / "home"
    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(proj))
    monkeypatch.setenv("QUANTGATE_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    reset_settings()
    yield proj
    reset_settings()


def _write(project: Path, name: str, text: str) -> Path:
    p = project / "registry" / "models" / f"{name}.yaml"
    p.write_text(text)
    return p


def test_settings_point_at_tmp(project: Path) -> None:
    assert get_settings().project_dir == project
    assert onboarding_file("m") == (project / "registry" / "models" / "m.yaml").resolve()


def test_file_only(project: Path) -> None:
    _write(project, "m", FULL)
    cfg = load_model_config("m")
    assert cfg.name == "m"
    assert cfg.task == "tabular-classification"
    assert cfg.label == "income"
    assert cfg.sensitive_attributes == ["sex", "race"]
    assert cfg.slices == []
    assert cfg.group_columns == ["sex", "race"]
    assert cfg.recipe == "int8-weight-only"
    assert cfg.policy == "policies/default.yaml"  # default
    assert cfg.reference_data is None


def test_file_without_name_key(project: Path) -> None:
    _write(project, "m", FULL.replace("name: m\n", ""))
    assert load_model_config("m").name == "m"


def test_tags_only(project: Path) -> None:
    cfg = load_model_config("m", tags=TAGS)
    assert cfg.task == "text-classification"
    assert cfg.label == "sentiment"
    assert cfg.calibration_data == "tags/cal.parquet"
    assert cfg.reference_data == "tags/ref.parquet"
    assert cfg.sensitive_attributes == ["sex", "race"]  # comma separated, stripped, no blanks
    assert cfg.slices == ["length_bucket"]
    assert cfg.group_columns == ["sex", "race", "length_bucket"]
    assert cfg.policy == "policies/strict.yaml"
    assert cfg.recipe == "auto"  # default: search recipes under the policy


def test_file_wins_key_by_key_and_tags_fill_in(project: Path) -> None:
    _write(project, "m", FULL)
    cfg = load_model_config("m", tags=TAGS)
    # from the file
    assert cfg.task == "tabular-classification"
    assert cfg.label == "income"
    assert cfg.evaluation_data == "data/evaluation.parquet"
    assert cfg.sensitive_attributes == ["sex", "race"]
    assert cfg.recipe == "int8-weight-only"
    # only in the tags
    assert cfg.reference_data == "tags/ref.parquet"
    assert cfg.slices == ["length_bucket"]
    assert cfg.policy == "policies/strict.yaml"


def test_tags_complete_a_partial_file(project: Path) -> None:
    _write(project, "m", "label: from_file\n")
    cfg = load_model_config("m", tags=TAGS)
    assert cfg.label == "from_file" and cfg.task == "text-classification"


def test_unknown_key_in_file(project: Path) -> None:
    _write(project, "m", FULL + "sensitive_atributes: [age]\n")
    with pytest.raises(ConfigError) as exc:
        load_model_config("m")
    assert "sensitive_atributes: unknown key" in exc.value.message
    assert "m.yaml" in exc.value.message


def test_wrong_value_in_file(project: Path) -> None:
    _write(project, "m", FULL.replace("tabular-classification", "regression"))
    with pytest.raises(ConfigError, match="task"):
        load_model_config("m")


def test_missing_required_key(project: Path) -> None:
    _write(project, "m", "task: tabular-classification\n")
    with pytest.raises(ConfigError) as exc:
        load_model_config("m")
    assert "label" in exc.value.message and "evaluation_data" in exc.value.message


def test_name_mismatch(project: Path) -> None:
    _write(project, "m", FULL.replace("name: m", "name: other"))
    with pytest.raises(ConfigError, match="name 'other' does not match the file name 'm'"):
        load_model_config("m")


def test_not_onboarded(project: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_model_config("ghost", tags={"unrelated": "x"})
    msg = str(exc.value)
    assert "'ghost' is not onboarded" in msg
    assert "registry" in msg and "models" in msg and "ghost.yaml" in msg
    assert "quantgate.*" in msg


def test_empty_file_is_not_onboarded(project: Path) -> None:
    _write(project, "m", "")
    with pytest.raises(ConfigError, match="not onboarded"):
        load_model_config("m")


def test_invalid_yaml_and_non_mapping(project: Path) -> None:
    _write(project, "m", "task: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_model_config("m")
    _write(project, "m", "- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_model_config("m")


def test_resolve_expands_quantgate_home(project: Path) -> None:
    _write(project, "m", FULL)
    cfg = load_model_config("m")
    home = get_settings().home_abs
    assert cfg.resolve(cfg.calibration_data) == home / "data" / "m" / "calibration.parquet"
    assert cfg.resolve(cfg.evaluation_data) == project / "data" / "evaluation.parquet"
    assert cfg.resolve("/abs/x.parquet") == Path("/abs/x.parquet")


def test_resolve_defaults_home_from_settings(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTGATE_HOME")
    s = Settings(home=tmp_path / "h2", project_dir=project)
    cfg = ModelConfig(
        name="m",
        task="tabular-classification",
        label="y",
        calibration_data="${QUANTGATE_HOME}/c.parquet",
        evaluation_data="e.parquet",
    )
    assert cfg.resolve(cfg.calibration_data, s) == (tmp_path / "h2" / "c.parquet").resolve()
    assert cfg.resolve(cfg.evaluation_data, s) == project / "e.parquet"


def test_resolve_expands_other_variables(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QG_TEST_DATA_ROOT", "/data/root")
    cfg = ModelConfig(
        name="m",
        task="tabular-classification",
        label="y",
        calibration_data="${QG_TEST_DATA_ROOT}/c.parquet",
        evaluation_data="e",
    )
    assert cfg.resolve(cfg.calibration_data) == Path("/data/root/c.parquet")


def test_resolve_relative_home_matches_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = tmp_path.resolve()
    proj = tmp_path / "project"
    cwd = tmp_path / "cwd"
    proj.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(proj))
    monkeypatch.setenv("QUANTGATE_HOME", ".qg")
    reset_settings()
    try:
        s = get_settings()
        cfg = ModelConfig(
            name="m",
            task="tabular-classification",
            label="y",
            calibration_data="${QUANTGATE_HOME}/data/m/c.parquet",
            evaluation_data="e",
        )
        assert cfg.resolve(cfg.calibration_data) == s.data_dir / "m" / "c.parquet"
    finally:
        reset_settings()
