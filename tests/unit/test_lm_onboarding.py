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


def _card_ctx() -> dict[str, object]:
    import numpy as np

    from quantgate.evaluate.lm import GenerationScores, PassageScores, summarize

    rng = np.random.default_rng(0)
    n = 60
    tokens = rng.integers(20, 40, n)
    base = tokens * 4.0
    kl = [rng.random(t) * 1e-3 for t in tokens]
    scores = PassageScores(
        base,
        base * 1.01,
        tokens,
        tokens * 4.0,
        tokens - 1,
        np.array([k.sum() for k in kl]),
        np.concatenate(kl),
        np.concatenate([np.full(t, i) for i, t in enumerate(tokens)]),
    )
    gen = GenerationScores(np.ones(10, bool), np.full(10, 8), 8, np.arange(10))
    ev = summarize(scores, gen, {"length": ["short", "long"] * (n // 2)}, min_slice_size=20, resamples=50)
    ev.examples = [{"prompt": "To be | or", "fp32": "not to be", "candidate": "not to see"}]
    ev.settings = {
        "max_tokens": 64,
        "truncated_passages": 0,
        "resamples": 50,
        "confidence": 0.95,
        "prompts": 10,
        "new_tokens": 8,
    }
    return {
        "name": "m-quantized",
        "source": {"name": "m", "version": "1", "model_class": "LlamaForCausalLM", "parameters": 1000},
        "recipe": {"label": "lm-int8-weight-only", "summary": "int8", "digest": "sha256:ab"},
        "verdict": {
            "status": "pass",
            "rules": [
                {
                    "rule_id": "ppl",
                    "severity": "block",
                    "observed": 1.01,
                    "bound": 1.02,
                    "outcome": "pass",
                    "evidence": "ok",
                }
            ],
        },
        "evaluation": ev.to_dict(),
        "quantization": {
            "quantized": ["a"],
            "kept_float": ["lm_head"],
            "skipped": {"lm_head": "float by default"},
            "weight_bits": 8,
            "compute_dtype": "float32",
            "quantized_param_share": 0.6,
            "size_by_kind": {"int8": 1000},
        },
        "sizes": {"baseline_bytes": 4000.0, "candidate_bytes": 1000.0, "size_ratio": 0.25},
        "validation": {
            "summary": "3 checks passed, 0 failed, 1 not run",
            "checks": [
                {
                    "name": "GX: text column 'text' exists",
                    "column": "evaluation",
                    "status": "passed",
                    "observed": "present",
                    "expected": "present",
                }
            ],
        },
        "reading": {"texts": 4, "positions": 100, "max_logprob_diff": 0.0, "bound": 1e-4},
        "policy": {"name": "generative", "digest": "sha256:cd"},
        "data": {"digests": {"evaluation": "sha256:ef"}},
    }


def test_lm_card_shows_slices_generations_and_checks() -> None:
    from quantgate.cards.lm_card import lm_card_description, lm_card_json, render_lm_card

    ctx = _card_ctx()
    md = render_lm_card(ctx)
    for part in (
        "## Verdict",
        "### By slice",
        "length=long",
        "length=short",
        "not to see",
        "To be \\| or",
        "GX: text column 'text' exists",
        "`lm_head`: float by default",
    ):
        assert part in md, part
    assert lm_card_description(md) == md  # short enough to be the description whole
    assert '"perplexity_ratio"' in lm_card_json(ctx)
