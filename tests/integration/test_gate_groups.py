"""Issue #5's gate on real data: int4 on every layer of an Adult MLP.

Overall accuracy barely moves (the 0.05-point kind of change an overall-only gate waves
through), but the first layer's int4 weights round away the columns that encode small race
groups (their one-hot inputs), so those groups lose points: a degradation confined to groups.
The model is onboarded through tags only (no YAML file) and governed by the real flow. As a user
would, its data files and policies live inside a project directory (a copy of this one), and the
data tags name the files relative to it: the only paths a tag may name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import project_with_alerts

pytestmark = pytest.mark.integration

STRICT = """name: groups-strict
bootstrap: {resamples: 200, confidence: 0.95, seed: 0}
rules:
  - {id: accuracy-drop, kind: max_drop, metric: accuracy, threshold: 0.01}
  - {id: group-accuracy-drop, kind: max_group_drop, metric: accuracy, threshold: 0.01, judge_on: estimate}
"""
LOOSE = STRICT.replace("name: groups-strict", "name: groups-loose").replace(
    "threshold: 0.01, judge_on", "threshold: 0.1, judge_on"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project (policies/, registry/, quantgate.yaml) the probe's files go into."""
    return project_with_alerts(tmp_path_factory.mktemp("int4-probe-project"))


@pytest.fixture(scope="module")
def probe(prefect_harness: None, qg_home: Any, project: Path) -> dict[str, Any]:
    """A torch MLP on 8,000 real adult.data rows, registered as `adult-int4-probe`, onboarded by tags."""
    import mlflow

    from quantgate.data.datasets import ADULT_CATEGORICAL, ADULT_LABEL, ADULT_NUMERIC, load_adult
    from quantgate.data.demo_models import register_source_model
    from quantgate.models.tabular import TabularPreprocessor, train_mlp
    from quantgate.models.wrapped import WrappedModel
    from quantgate.settings import get_settings, reset_settings
    from quantgate.validate.sampling import sample_calibration

    reset_settings()
    settings = get_settings()

    train_all, test = load_adult()
    evaluation = test.sample(6000, random_state=1)
    calib = sample_calibration(
        train_all,
        1000,
        sensitive_attributes=["sex", "race"],
        min_group_rows=30,
        exclude=evaluation,
        feature_columns=[c for c in train_all.columns if c != ADULT_LABEL],
    )
    rest = train_all.drop(calib.index)
    train = rest.sample(8000, random_state=0)
    d = project / "data" / "adult-int4-probe"
    d.mkdir(parents=True)
    for name, frame in {"calibration": calib, "evaluation": evaluation, "reference": rest}.items():
        frame.to_parquet(d / f"{name}.parquet", index=False)
    pre = TabularPreprocessor.fit(train, ADULT_NUMERIC, ADULT_CATEGORICAL)
    model = train_mlp(pre.transform(train), train[ADULT_LABEL].to_numpy(), seed=0)
    wrapped = WrappedModel(model, {"task": "tabular-classification", "preprocessor": pre.to_dict(), "classes": [0, 1]})
    tags = {
        "quantgate.task": "tabular-classification",
        "quantgate.label": "income",
        "quantgate.calibration_data": "data/adult-int4-probe/calibration.parquet",  # relative to the project
        "quantgate.evaluation_data": "data/adult-int4-probe/evaluation.parquet",
        "quantgate.reference_data": "data/adult-int4-probe/reference.parquet",
        "quantgate.sensitive_attributes": "sex,race",
    }
    mv = register_source_model(
        "adult-int4-probe",
        wrapped,
        evaluation[pre.columns].head(5),
        params={"seed": 0},
        metrics={},
        tags=tags,
        description="int4 probe for the group gate test",
        settings=settings,
    )
    strict, loose = project / "policies" / "groups-strict.yaml", project / "policies" / "groups-loose.yaml"
    strict.write_text(STRICT)
    loose.write_text(LOOSE)
    assert mlflow.get_tracking_uri() == settings.tracking_uri
    # named as a user names a policy of the project: relative to it (the flow resolves it there)
    return {
        "ref": f"{mv.name}/{mv.version}",
        "strict": "policies/groups-strict.yaml",
        "loose": "policies/groups-loose.yaml",
    }


def _flow() -> Any:

    from quantgate.flows.quantize import quantize_model

    return quantize_model


def test_int4_everywhere_is_rejected_on_groups_while_overall_passes(probe: dict[str, Any], in_project: Any) -> None:
    from quantgate.registry.mlflow_registry import client

    r = _flow()(probe["ref"], policy=probe["strict"], recipe="int4-weight-only")
    rules = {x["rule_id"]: x for x in r["verdict_rules"]}
    assert rules["accuracy-drop"]["outcome"] == "pass"  # overall: well inside 1 point, even on the upper bound
    assert abs(rules["accuracy-drop"]["observed"]) < 0.005
    assert rules["group-accuracy-drop"]["outcome"] == "fail"  # ... but a race group loses more than 1 point
    assert "race" in rules["group-accuracy-drop"]["evidence"]
    assert r["verdict"] == "fail" and r["failed_rules"] == ["group-accuracy-drop"]
    mv = client(in_project).get_model_version(*r["registered"].split("/"))
    assert mv.tags["quantgate.failed_rules"] == "group-accuracy-drop" and not mv.aliases


def test_a_looser_policy_accepts_the_same_recipe(probe: dict[str, Any], in_project: Any) -> None:
    r = _flow()(probe["ref"], policy=probe["loose"], recipe="int4-weight-only")
    assert r["verdict"] == "pass", r["verdict_rules"]
    assert "candidate" in r["aliases"]
