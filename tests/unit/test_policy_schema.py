"""Policy schema: the shipped policy parses; typos, wrong types and impossible values are errors
that name the key; digest, overrides, explain() and the JSON schema."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from quantgate.errors import ConfigError
from quantgate.onboarding import ModelConfig
from quantgate.policy.schema import (
    KNOWN_METRICS,
    Policy,
    explain,
    load_policy,
    parse_policy,
    policy_json_schema,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = REPO / "policies" / "default.yaml"

BASE = textwrap.dedent(
    """\
    name: test
    bootstrap:
      resamples: 50
      confidence: 0.9
      seed: 1
    rules:
      - id: accuracy-drop
        kind: max_drop
        metric: accuracy
        threshold: 0.01
      - id: flip-rate
        kind: max
        metric: flip_rate
        threshold: 0.05
        severity: warn
    """
)


def _rule(**fields: object) -> str:
    """A one-rule policy; ``fields`` replace or add keys of the rule (values written as YAML)."""
    rule = {"id": "r", "kind": "max_drop", "metric": "accuracy", "threshold": "0.01", **fields}
    body = "\n".join(f"    {k}: {v}" for k, v in rule.items())
    return f"name: t\nrules:\n  - {body.lstrip()}\n"


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_policy(text, "p.yaml")
    return exc.value.message


# --- the shipped policy ------------------------------------------------------------------


def test_default_policy_parses() -> None:
    policy = load_policy(DEFAULT_POLICY)
    assert policy.name == "default"
    assert [r.id for r in policy.rules] == [
        "accuracy-drop",
        "group-accuracy-drop",
        "flip-rate",
        "flips-concentrated",
        "calibration-error",
        "demographic-parity-gap",
        "equalized-odds-gap",
    ]
    # overall accuracy, a large and real group drop, significantly concentrated flips block;
    # the rest warn (tests/unit/test_default_policy.py exercises each case)
    assert [r.id for r in policy.rules if r.severity == "block"] == [
        "accuracy-drop",
        "group-accuracy-drop",
        "flips-concentrated",
    ]
    acc = policy.rules[0]
    assert (acc.kind, acc.metric, acc.threshold, acc.severity) == (
        "max_drop",
        "accuracy",
        0.01,
        "block",
    )
    assert policy.bootstrap.resamples == 200 and policy.bootstrap.confidence == 0.95
    assert policy.overrides == {}
    assert policy.digest.startswith("sha256:") and len(policy.digest) == len("sha256:") + 64


def test_load_policy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_policy(tmp_path / "nope.yaml")


def test_base_fixture_parses() -> None:
    policy = parse_policy(BASE)
    assert policy.bootstrap.seed == 1
    assert policy.rules[1].severity == "warn"
    assert policy.rules[0].severity == "block"  # default


# --- unknown keys name their path --------------------------------------------------------


def test_unknown_top_level_key() -> None:
    msg = _error(BASE + "colour: blue\n")
    assert "colour: unknown key" in msg
    assert "p.yaml" in msg


def test_unknown_key_in_rule_names_path() -> None:
    msg = _error(BASE.replace("threshold: 0.01", "thresold: 0.01"))
    assert "rules.0.thresold: unknown key" in msg
    assert "rules.0.threshold" in msg  # and the real key is reported missing


def test_unknown_key_in_second_rule() -> None:
    msg = _error(BASE.replace("severity: warn", "severty: warn"))
    assert "rules.1.severty: unknown key" in msg


def test_unknown_key_in_bootstrap() -> None:
    msg = _error(BASE.replace("resamples: 50", "resample: 50"))
    assert "bootstrap.resample: unknown key" in msg


def test_digest_key_rejected() -> None:
    msg = _error(BASE + "digest: sha256:abc\n")
    assert "digest" in msg


# --- wrong types ------------------------------------------------------------------------------


def test_threshold_not_a_number() -> None:
    msg = _error(_rule(threshold="high"))
    assert "rules.0.threshold" in msg


def test_threshold_as_string_is_rejected_in_strict_mode() -> None:
    msg = _error(_rule(threshold='"0.01"'))
    assert "rules.0.threshold" in msg


def test_threshold_as_int_is_accepted() -> None:
    policy = parse_policy(_rule(kind="min", metric="speedup", threshold="2"))
    assert policy.rules[0].threshold == 2.0


def test_resamples_as_string_rejected() -> None:
    msg = _error(BASE.replace("resamples: 50", 'resamples: "50"'))
    assert "bootstrap.resamples" in msg


def test_unknown_kind_and_severity() -> None:
    assert "rules.0.kind" in _error(_rule(kind="max_dorp"))
    assert "rules.0.severity" in _error(_rule(severity="error"))


def test_bad_rule_id() -> None:
    assert "rules.0.id" in _error(_rule(id="Bad Id"))


def test_rules_must_not_be_empty() -> None:
    assert "rules" in _error("name: t\nrules: []\n")


def test_missing_name() -> None:
    assert "name" in _error("rules:\n  - {id: r, kind: max, metric: flip_rate, threshold: 0.1}\n")


# --- impossible values ------------------------------------------------------------------------


def test_accuracy_drop_above_one_is_impossible() -> None:
    msg = _error(_rule(threshold="1.5"))
    assert "rules.0" in msg and "impossible" in msg and "'r'" in msg


def test_negative_drop_rejected() -> None:
    msg = _error(_rule(threshold="-0.01"))
    assert "rules.0" in msg and ">= 0" in msg


def test_drop_rule_on_lower_is_better_metric_rejected() -> None:
    msg = _error(_rule(metric="flip_rate"))
    assert "higher-is-better" in msg


def test_rate_bounds_inclusive() -> None:
    assert parse_policy(_rule(threshold="0")).rules[0].threshold == 0.0
    assert parse_policy(_rule(threshold="1")).rules[0].threshold == 1.0
    assert "impossible" in _error(_rule(kind="max", metric="flip_rate", threshold="1.01"))


def test_bootstrap_bounds() -> None:
    assert "bootstrap.confidence" in _error(BASE.replace("confidence: 0.9", "confidence: 0.5"))
    assert "bootstrap.confidence" in _error(BASE.replace("confidence: 0.9", "confidence: 1.0"))
    assert "bootstrap.resamples" in _error(BASE.replace("resamples: 50", "resamples: -1"))
    assert parse_policy(BASE.replace("resamples: 50", "resamples: 0")).bootstrap.resamples == 0


def test_unknown_metric_lists_known() -> None:
    msg = _error(_rule(metric="acuracy"))
    assert "unknown metric 'acuracy'" in msg
    for m in KNOWN_METRICS:
        assert m in msg


# --- cross-rule checks ------------------------------------------------------------------------


def test_duplicate_rule_ids() -> None:
    text = BASE.replace("id: flip-rate", "id: accuracy-drop")
    msg = _error(text)
    assert "duplicate rule id(s): accuracy-drop" in msg


def test_override_of_unknown_rule() -> None:
    text = BASE + "overrides:\n  adult-income:\n    acuracy-drop:\n      threshold: 0.02\n"
    msg = _error(text)
    assert "overrides.adult-income" in msg and "acuracy-drop" in msg


def test_unknown_key_in_override() -> None:
    text = BASE + "overrides:\n  adult-income:\n    accuracy-drop:\n      thresold: 0.02\n"
    msg = _error(text)
    assert "overrides.adult-income.accuracy-drop.thresold: unknown key" in msg


@pytest.mark.parametrize("threshold", ["1.5", "-0.5"])
def test_override_with_impossible_threshold_rejected(threshold: str) -> None:
    text = BASE + f"overrides:\n  adult-income:\n    accuracy-drop:\n      threshold: {threshold}\n"
    with pytest.raises(ConfigError):
        parse_policy(text).rules_for("adult-income")


# --- YAML shape -------------------------------------------------------------------------------


def test_invalid_yaml() -> None:
    msg = _error("name: t\nrules: [\n")
    assert "not valid YAML" in msg and "p.yaml" in msg


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_non_mapping_yaml(text: str) -> None:
    assert "must be a YAML mapping" in _error(text)


# --- digest -----------------------------------------------------------------------------------


def test_digest_stable_and_text_sensitive() -> None:
    a = parse_policy(BASE).digest
    assert parse_policy(BASE).digest == a
    assert parse_policy(BASE, "other-source.yaml").digest == a  # source name is not hashed
    assert parse_policy(BASE + "# a comment\n").digest != a  # any text change counts
    assert parse_policy(BASE.replace("0.05", "0.06")).digest != a


def test_digest_matches_file(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(BASE)
    assert load_policy(p).digest == parse_policy(BASE).digest
    p.write_text(BASE.replace("seed: 1", "seed: 2"))
    assert load_policy(p).digest != parse_policy(BASE).digest


# --- overrides, explain, schema ---------------------------------------------------------------


def test_rules_for_applies_overrides_per_model() -> None:
    text = BASE + textwrap.dedent(
        """\
        overrides:
          adult-income:
            accuracy-drop:
              threshold: 0.02
          rt-sentiment:
            flip-rate:
              severity: block
        """
    )
    policy = parse_policy(text)
    adult = {r.id: r for r in policy.rules_for("adult-income")}
    assert adult["accuracy-drop"].threshold == 0.02
    assert adult["accuracy-drop"].severity == "block"  # unset override fields keep the rule's
    assert adult["flip-rate"].severity == "warn"
    rt = {r.id: r for r in policy.rules_for("rt-sentiment")}
    assert rt["accuracy-drop"].threshold == 0.01
    assert rt["flip-rate"].severity == "block" and rt["flip-rate"].threshold == 0.05
    other = policy.rules_for("someone-else")
    assert other == list(policy.rules)
    # the policy itself is untouched
    assert policy.rules[0].threshold == 0.01 and policy.rules[1].severity == "warn"
    assert [r.id for r in policy.rules_for("adult-income")] == ["accuracy-drop", "flip-rate"]


def test_policy_is_frozen() -> None:
    policy = parse_policy(BASE)
    with pytest.raises(ValidationError):
        policy.name = "x"  # type: ignore[misc]


def test_explain_one_line_per_rule() -> None:
    policy = load_policy(DEFAULT_POLICY)
    lines = explain(policy)
    assert len(lines) == len(policy.rules)
    for line, rule in zip(lines, policy.rules, strict=True):
        assert line.startswith(f"[{rule.severity}] {rule.id}: ")
        assert rule.metric in line
        assert "\n" not in line
    assert "0.01" in lines[0] and "upper CI bound" in lines[0]
    assert "every group" in lines[1]
    assert "at most 0.05" in lines[2]


def test_explain_min_rule() -> None:
    lines = explain(parse_policy(_rule(kind="min", metric="speedup", threshold="1.5")))
    assert lines == ["[block] r: speedup must be at least 1.5"]


def test_policy_json_schema() -> None:
    schema = json.loads(policy_json_schema())
    assert "rules" in schema["properties"]
    assert "name" in schema["properties"]
    assert "digest" not in schema["properties"]
    assert schema["additionalProperties"] is False


def test_policy_model_accepts_dict() -> None:
    p = Policy.model_validate(
        {"name": "x", "rules": [{"id": "a", "kind": "min", "metric": "speedup", "threshold": 1.0}]}
    )
    assert p.digest == ""


# --- a policy a model's onboarding cannot be measured against -----------------------------------


def _cfg(**groups: list[str]) -> ModelConfig:
    return ModelConfig(
        name="m", task="tensor-classification", label="y", calibration_data="c", evaluation_data="e", **groups
    )


def test_group_blocks_of_the_shipped_policies() -> None:
    assert [r.id for r in load_policy(DEFAULT_POLICY).group_blocks("m")] == [
        "group-accuracy-drop",
        "flips-concentrated",
    ]
    assert load_policy(DEFAULT_POLICY.parent / "permissive.yaml").group_blocks("m") == []


def test_a_classifier_without_groups_is_measured_per_class_not_refused() -> None:
    """Issue 28: a classifier that names no sensitive attribute or slice is judged per class (its
    label column is the group), so the default policy's group rules can be measured on it."""
    from quantgate.steps.context import group_columns, per_class_groups
    from quantgate.steps.gate import check_measurable

    policy = load_policy(DEFAULT_POLICY)
    check_measurable(_cfg(), policy, "policies/default.yaml")
    assert group_columns(_cfg(), policy) == ["y"] and per_class_groups(_cfg(), policy)
    # declared groups replace the default (they are not added to it)
    assert group_columns(_cfg(slices=["length_bucket"]), policy) == ["length_bucket"]
    assert group_columns(_cfg(sensitive_attributes=["sex"]), policy) == ["sex"]
    assert not per_class_groups(_cfg(sensitive_attributes=["sex"]), policy)
    check_measurable(_cfg(), load_policy(DEFAULT_POLICY.parent / "permissive.yaml"), "policies/permissive.yaml")


def test_a_model_with_no_classes_and_no_groups_is_still_refused_by_group_rules() -> None:
    """The refusal stays for a model that has no classes to default to (a task other than
    classification): every candidate would fail the group rules as not measured."""
    from quantgate.steps.gate import check_measurable

    regressor = ModelConfig.model_construct(
        name="m",
        task="tabular-regression",
        label="y",
        calibration_data="c",
        evaluation_data="e",
        sensitive_attributes=[],
        slices=[],
    )
    with pytest.raises(ConfigError) as info:
        check_measurable(regressor, load_policy(DEFAULT_POLICY), "policies/default.yaml")
    msg = info.value.one_line()
    assert "group-accuracy-drop, flips-concentrated" in msg and "names no sensitive attributes or slices" in msg
    assert "registry/models/m.yaml" in msg and "policies/permissive.yaml" in msg


def test_a_policy_slice_counts_as_a_group() -> None:
    from quantgate.steps.gate import check_measurable

    text = DEFAULT_POLICY.read_text().replace("overrides: {}", "slices: [length_bucket]\noverrides: {}")
    check_measurable(_cfg(), parse_policy(text, "p.yaml"), "p.yaml")
