"""Onboarding a causal language model (task: text-generation), the LM recipe choice and the LM card (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantgate.errors import ConfigError
from quantgate.onboarding import ModelConfig, load_model_config
from quantgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _write(project: Path, name: str, text: str) -> Settings:
    d = project / "registry" / "models"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.yaml").write_text(text)
    return Settings(home=project / "home", project_dir=project)


def test_text_generation_needs_no_label(tmp_path: Path) -> None:
    s = _write(
        tmp_path,
        "lm",
        "task: text-generation\ncalibration_data: c.parquet\nevaluation_data: e.parquet\nslices: [genre]\n",
    )
    cfg = load_model_config("lm", settings=s)
    assert cfg.task == "text-generation" and cfg.label == "" and cfg.text_column == "text"
    assert cfg.slices == ["genre"] and cfg.prompts is None


def test_classifier_still_needs_its_label(tmp_path: Path) -> None:
    s = _write(tmp_path, "clf", "task: text-classification\ncalibration_data: c.csv\nevaluation_data: e.csv\n")
    with pytest.raises(ConfigError, match="label: Field required"):
        load_model_config("clf", settings=s)


def test_text_generation_refuses_classifier_keys(tmp_path: Path) -> None:
    s = _write(
        tmp_path, "lm", "task: text-generation\nlabel: y\ncalibration_data: c.parquet\nevaluation_data: e.parquet\n"
    )
    with pytest.raises(ConfigError, match="has no label"):
        load_model_config("lm", settings=s)


def test_prompts_only_for_text_generation() -> None:
    with pytest.raises(ValueError, match="prompts: is for task: text-generation"):
        ModelConfig(name="m", label="y", calibration_data="c", evaluation_data="e", prompts="p.txt")


def test_prompts_tag_must_stay_inside_the_project(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", project_dir=tmp_path)
    tags = {
        "quantgate.task": "text-generation",
        "quantgate.calibration_data": "c.parquet",
        "quantgate.evaluation_data": "e.parquet",
        "quantgate.prompts": "/etc/passwd",
    }
    with pytest.raises(ConfigError, match=r"quantgate\.prompts"):
        load_model_config("lm", tags, settings=s)


def test_auto_tries_only_bits_a_blocking_rule_judges() -> None:
    from quantgate.policy.schema import load_policy
    from quantgate.steps.lm import auto_recipes

    pol = load_policy(ROOT / "policies" / "generative.yaml")
    assert auto_recipes(pol) == ["lm-int4-weight-only", "lm-int8-weight-only", "lm-bf16"]
    only8 = pol.model_copy(update={"lm_rules": [r for r in pol.lm_rules if r.weight_bits != [4]]})
    blocking4 = [r for r in only8.lm_rules if r.severity == "block" and r.applies_to(4)]
    if not blocking4:  # the slice rule (all bits) still judges 4-bit: then int4 stays
        assert "lm-int4-weight-only" not in auto_recipes(only8)


def test_classifier_recipe_named_for_a_language_model_is_refused() -> None:
    from quantgate.steps.lm import resolve_lm_recipe

    cfg = ModelConfig(name="lm", task="text-generation", calibration_data="c", evaluation_data="e")
    with pytest.raises(ConfigError, match="not a language-model recipe"):
        resolve_lm_recipe("dynamic-int8", cfg)
    assert resolve_lm_recipe("auto", cfg) is None
    rec = resolve_lm_recipe("lm-int8-weight-only", cfg)
    assert rec is not None and rec.TYPE == "lm-int8-weight-only"
