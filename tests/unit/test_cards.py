"""The model card: Hugging Face format, parses back, holds the context's exact numbers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import ModelCard

from quantgate.cards.card import card_description, card_json, render_card, render_model_card, share_interval
from quantgate.errors import ConfigError
from quantgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def make_context() -> dict[str, Any]:
    """The shape pipeline.card_context() builds, with awkward real-looking numbers."""
    return {
        "name": "adult-income-quantized",
        "source": {
            "name": "adult-income",
            "version": "3",
            "description": "Predicts whether income exceeds $50K/yr. Demo only; not for decisions about people.",
            "tags": {"quantgate.license": "cc-by-4.0"},
        },
        "config": {
            "name": "adult-income",
            "task": "tabular-classification",
            "label": "income",
            "calibration_data": "cal.parquet",
            "evaluation_data": "eval.parquet",
            "reference_data": None,
            "sensitive_attributes": ["sex"],
            "slices": [],
            "policy": "policies/default.yaml",
            "recipe": "dynamic-int8",
            "description": "Predicts whether income exceeds $50K/yr. Demo only; not for decisions about people.",
        },
        "recipe": {
            "label": "dynamic-int8",
            "type": "dynamic-int8",
            "backend": "torch",
            "summary": "int8 weights, activations quantized per batch",
            "json": {"_type": "dynamic-int8", "_version": 1, "_data": {"exclude": []}},
            "digest": "sha256:" + "ab" * 32,
        },
        "quantized_modules": ["body.0", "body.2", "head"],
        "float_modules": ["body.4"],
        "metrics": {
            "n": 16281,
            "baseline": {"accuracy": 0.8554756, "balanced_accuracy": 0.7712345, "f1": 0.6623456},
            "candidate": {"accuracy": 0.8532645, "balanced_accuracy": 0.7698765, "f1": 0.6587654},
            "accuracy_drop": {"estimate": 0.0022111, "low": 0.0006142, "high": 0.0036233, "confidence": 0.95},
            "flip_rate": 0.0123457,
        },
        "groups": [
            {
                "attribute": "sex",
                "group": "Female",
                "n": 5421,
                "baseline_accuracy": 0.9212345,
                "candidate_accuracy": 0.9198765,
                "drop": 0.001358,
            },
            {
                "attribute": "sex",
                "group": "Male",
                "n": 10860,
                "baseline_accuracy": 0.8223456,
                "candidate_accuracy": 0.8198765,
                "drop": 0.0024691,
            },
        ],
        "runtime": {"baseline_p50_ms": 0.412, "candidate_p50_ms": 1.033, "speedup": 0.3988},
        "sizes": {"baseline_bytes": 91234, "candidate_bytes": 31234},
        "verdict": {
            "model": "adult-income",
            "status": "pass",
            "policy": "default",
            "policy_digest": "sha256:" + "cd" * 32,
            "rules": [
                {
                    "rule_id": "accuracy-drop",
                    "kind": "max_drop",
                    "metric": "accuracy",
                    "severity": "block",
                    "outcome": "pass",
                    "observed": 0.0022111,
                    "bound": 0.01,
                    "interval": [0.0006142, 0.0036233],
                    "evidence": "drop +0.0022 (95% CI +0.0006..+0.0036), judged on upper bound",
                },
                {
                    "rule_id": "calibration-error",
                    "kind": "max_increase",
                    "metric": "ece",
                    "severity": "warn",
                    "outcome": "warn",
                    "observed": float("nan"),
                    "bound": 0.02,
                    "interval": None,
                    "evidence": "ece was not measured",
                },
            ],
        },
        "validation": {"passed": True, "checks": 57, "failed": []},
        "data": {
            "paths": {"calibration": "/d/cal.parquet", "evaluation": "/d/eval.parquet", "reference": "/d/ref.parquet"},
            "digests": {
                "calibration": "sha256:" + "01" * 32,
                "evaluation": "sha256:" + "02" * 32,
                "reference": "sha256:" + "03" * 32,
            },
        },
        "policy": {"name": "default", "digest": "sha256:" + "cd" * 32},
        "environment": {"python": "3.11.9", "torch": "2.13.0", "mlflow": "3.17.2"},
    }


@pytest.fixture()
def proj_settings() -> Settings:
    return Settings(project_dir=ROOT)


def _results(card: ModelCard) -> dict[tuple[str | None, str | None], float]:
    return {(r.dataset_config, r.metric_name): r.metric_value for r in card.data.eval_results}


def test_card_is_a_hugging_face_card_with_the_exact_numbers(proj_settings: Settings) -> None:
    ctx = make_context()
    md, twin = render_model_card(ctx, proj_settings)
    card = ModelCard(md)  # parses metadata + validates model-index
    meta = card.data.to_dict()
    assert meta["base_model"] == "adult-income/3"
    assert meta["base_model_relation"] == "quantized"
    assert meta["license"] == "cc-by-4.0"
    assert {"quantgate", "quantized", "int8", "dynamic-int8"} <= set(meta["tags"])
    assert meta["pipeline_tag"] == "tabular-classification"
    res = _results(card)
    m = ctx["metrics"]
    for k in m["baseline"]:
        assert res[(None, f"{k} (fp32)")] == m["baseline"][k]
        assert res[(None, f"{k} (quantized)")] == m["candidate"][k]
    assert res[(None, "accuracy drop (fp32 - quantized)")] == m["accuracy_drop"]["estimate"]
    assert res[(None, "flip rate")] == m["flip_rate"]
    for g in ctx["groups"]:
        assert res[(f"sex={g['group']}", "accuracy (fp32)")] == g["baseline_accuracy"]
        assert res[(f"sex={g['group']}", "accuracy (quantized)")] == g["candidate_accuracy"]
    assert card.data.eval_results[0].dataset_revision == ctx["data"]["digests"]["evaluation"]
    # the body: Mitchell et al. sections and the numbers as printed
    for section in (
        "## Model details",
        "## Intended use",
        "## Factors",
        "## Metrics",
        "## Evaluation and calibration data",
        "## Quantitative analyses",
        "## Verdict, rule by rule",
        "## Recipe search",
        "## Flip audit",
        "## Ethical considerations",
        "## Caveats and recommendations",
    ):
        assert section in card.text
    assert "| accuracy | 0.8555 (0.850 .. 0.861) | 0.8533 (" in card.text
    assert "0.0006 .. 0.0036" in card.text
    assert "| sex | Female | 5421 | 0.9212 (" in card.text
    assert "Not for decisions about people." in card.text  # out of scope, from the description
    assert "no search: fixed recipe" in card.text
    assert "flip audit not computed" in card.text
    assert "`body.4`" in card.text  # what stayed in float
    assert ctx["recipe"]["digest"] in card.text and ctx["data"]["digests"]["calibration"] in card.text
    # the JSON twin holds the same values (strict JSON: NaN -> null)
    again = json.loads(json.dumps(twin, allow_nan=False))
    assert again["metrics"] == m
    assert again["card_data"] == meta
    assert again["verdict"]["rules"][1]["observed"] is None
    assert json.loads(card_json(ctx)) == again


def test_description_is_the_body_without_yaml(proj_settings: Settings) -> None:
    md = render_card(make_context(), proj_settings)
    assert md.startswith("---\n")
    desc = card_description(md)
    assert desc.startswith("# Model card: adult-income-quantized")
    assert "base_model_relation" not in desc


def test_search_trace_and_flip_audit_are_rendered(proj_settings: Settings) -> None:
    ctx = make_context()
    ctx["search_trace"] = {
        "summary": "3 recipes tried under the 1-pt tolerance",
        "chosen": "dynamic-int8(exclude=body.4)",
        "trials": [
            {"recipe": "dynamic-int8", "accuracy_drop": 0.0123, "speedup": 1.7, "passed": False},
            {"recipe": "dynamic-int8(exclude=body.4)", "accuracy_drop": 0.0022, "speedup": 1.5, "passed": True},
        ],
    }
    ctx["flip_audit"] = {
        "summary": "flips concentrated in Male",
        "groups": [{"group": "sex=Male", "flips": 120, "share": 0.6}],
    }
    md, twin = render_model_card(ctx, proj_settings)
    text = ModelCard(md).text
    assert "3 recipes tried under the 1-pt tolerance; chosen: dynamic-int8(exclude=body.4)" in text
    assert "| recipe | accuracy_drop | speedup | passed |" in text
    assert "| dynamic-int8 | 0.0123 | 1.7000 | False |" in text
    assert "flips concentrated in Male" in text and "| sex=Male | 120 | 0.6000 |" in text
    assert twin["search_trace"]["trials"][1]["passed"] is True


def test_license_defaults_to_other_and_tensor_task_has_no_pipeline_tag(proj_settings: Settings) -> None:
    ctx = make_context()
    ctx["source"]["tags"] = {}
    ctx["config"]["task"] = "tensor-classification"
    ctx["groups"] = []
    card = ModelCard(render_card(ctx, proj_settings))
    assert card.data.license == "other"
    assert card.data.pipeline_tag is None
    assert "No sensitive attributes or slices declared" in card.text


def test_factors_name_the_default_per_class_groups(proj_settings: Settings) -> None:
    """A classifier that declares no group is judged per class: Factors says so beside "none declared"."""
    declared = ModelCard(render_card(make_context(), proj_settings)).text
    assert "- Sensitive attributes: sex" in declared and "- Groups: the classes of" not in declared
    ctx = make_context()
    ctx["config"]["sensitive_attributes"] = []
    for g, cls in zip(ctx["groups"], ("0", "1"), strict=True):
        g["attribute"], g["group"] = "income", cls
    md, twin = render_model_card(ctx, proj_settings)
    text = ModelCard(md).text
    assert "- Sensitive attributes: none declared\n- Slices: none declared\n" in text
    assert "- Groups: the classes of `income` (the default when none are declared)\n" in text
    assert "| income | 0 | 5421 |" in text
    assert twin["card"]["default_groups"] == "income"


def test_template_errors_name_the_template(tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "model_card.md.j2").write_text("---\n{{ card_data }}\n---\n{{ no_such_value }}\n")
    with pytest.raises(ConfigError, match=r"model_card\.md\.j2 failed"):
        render_model_card(make_context(), Settings(project_dir=tmp_path))
    # a template without the header gets it back, so the metadata cannot be lost
    (tmp_path / "registry" / "model_card.md.j2").write_text("# Model card: {{ name }}\n")
    md, _ = render_model_card(copy.deepcopy(make_context()), Settings(project_dir=tmp_path))
    assert ModelCard(md).data.base_model == "adult-income/3"


def test_wilson_interval() -> None:
    low, high = share_interval(0.5, 100) or (0, 0)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert share_interval(float("nan"), 10) is None and share_interval(0.5, 0) is None


def test_a_long_card_fits_mlflows_description_limit(proj_settings: Settings) -> None:
    """MLflow's SQL stores keep at most 5,000 characters of a description (PostgreSQL refuses more):
    a long card keeps its opening and its most useful sections, and says what it left out."""
    from quantgate.cards.card import fit_sections
    from quantgate.registry.contract import MAX_DESCRIPTION_CHARS

    ctx = make_context()
    full = card_description(render_card(ctx, proj_settings), limit=10**9)
    limit = len(full) - 200  # too long by a little: something must go
    desc = card_description(render_card(ctx, proj_settings), limit=limit)
    assert len(desc) <= limit < len(full)
    assert desc.startswith("# Model card: adult-income-quantized")
    assert "Gate verdict:" in desc and "Accuracy on" in desc  # the opening, with the key figures
    assert "## Verdict, rule by rule" in desc  # first in priority
    left_out = desc.rsplit("Left out here: ", 1)[1].split(". The whole card", 1)[0].split(", ")
    assert left_out and all(f"## {h}" not in desc and f"### {h}" not in desc for h in left_out)
    assert "`model_card.md`" in desc
    # kept sections come in the card's order
    kept = [line for line in desc.splitlines() if line.startswith("## ")]
    assert kept == [line for line in full.splitlines() if line.startswith("## ") and line in kept]
    assert MAX_DESCRIPTION_CHARS == 5000

    body = (
        "# T\nopening\n\n## A\n"
        + "a" * 50
        + "\n## Q\nintro\n### Overall\n"
        + "o" * 40
        + "\n### By group\n"
        + "g" * 400
        + "\n## Verdict\n"
        + "v" * 60
        + "\n"
    )
    out = fit_sections(body, 420, priority=("## Verdict", "### Overall"))
    assert len(out) <= 420
    assert "## Verdict" in out and "### Overall" in out and "intro" in out  # a subsection brings its section's head
    assert "### By group" not in out and "Left out here: By group" in out
    assert out.index("## A") < out.index("## Q") < out.index("## Verdict")  # the card's order


def test_an_opening_longer_than_the_limit_is_cut_at_a_line_and_says_so() -> None:
    """When the opening alone (title, source description, key figures) is longer than the limit,
    it is cut at a whole line, marked as cut, and the closing note names every section left out."""
    from quantgate.cards.card import fit_sections

    opening = "# T\n" + "".join(f"line {i:03d} " + "x" * 90 + "\n" for i in range(60))  # ~6,000 chars
    body = opening + "\n## Verdict\n" + "v" * 50 + "\n## Details\n" + "d" * 50 + "\n"
    out = fit_sections(body, 1000, priority=("## Verdict",))
    assert len(out) <= 1000
    assert out.startswith("# T\nline 000 ") and "(opening cut)" in out
    kept = out.split("\n\n(opening cut)", 1)[0]
    assert kept.endswith("x" * 90)  # cut after a whole line, never inside one
    assert "## Verdict" not in out and "Left out here: Verdict, Details." in out
    assert out.endswith("(Artifacts tab).*\n")  # the note is whole: the final slice cut nothing
    assert f"this is {len(kept):,} of the card's {len(body):,}" in out


def test_a_short_card_is_the_whole_description(proj_settings: Settings) -> None:
    md = render_card(make_context(), proj_settings)
    desc = card_description(md, limit=10**9)
    assert "Left out here" not in desc and desc == card_description(md, limit=len(desc))


def test_the_environment_names_the_target_or_says_there_is_none(proj_settings: Settings) -> None:
    host = {"isa": "avx512_vnni", "cpu_model": "Test CPU", "cpu_count": 2, "torch_threads": 2}
    ctx = make_context()
    ctx["hardware"] = {"target": "any", "host": host}
    md = render_card(ctx, proj_settings)
    assert "Not built for a particular ISA" in md and "gated on host avx512_vnni, Test CPU, 2 CPUs" in md
    ctx["hardware"] = {"target": "avx2", "requested_target": "avx2", "host": host, "matches_host": False}
    md = render_card(ctx, proj_settings)
    assert "Built and gated for **avx2**" in md and "the target differs from the host" in md
