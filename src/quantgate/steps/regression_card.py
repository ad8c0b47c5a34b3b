"""The card's context for a regressor's candidate (values in, a dict out), beside steps.record's for a classifier."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

from quantgate.environment import versions
from quantgate.steps.context import Datasets, Source
from quantgate.steps.record import _coverage_warnings, card_identity
from quantgate.steps.regression import RegressionEvaluation, regression_card_section

if TYPE_CHECKING:
    from quantgate.policy import Policy, Verdict
    from quantgate.quantize.recipes import QuantizationResult, Recipe
    from quantgate.validate import CalibrationReport


def regression_card_context(
    source: Source,
    recipe: Recipe,
    qres: QuantizationResult,
    ev: RegressionEvaluation,
    verdict: Verdict,
    report: CalibrationReport,
    data: Datasets,
    policy: Policy,
    reading: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the regression card template and ``model_card.json`` hold; the provenance takes its
    materials (data, policy, recipe digests) from the same keys as a classifier's."""

    cmp = ev.comparison
    return {
        **card_identity(source, recipe, qres),
        "metrics": {"n": cmp.n, "baseline": cmp.baseline, "candidate": cmp.candidate},
        "groups": [],  # the classifier's accuracy groups; a regressor's are in regression.groups
        "regression": regression_card_section(ev),
        "min_group_size": policy.min_group_size,
        "reading": reading or {},
        "warnings": [*(reading or {}).get("warnings", []), *_coverage_warnings(qres)],
        "runtime": ev.runtime,
        "sizes": ev.sizes,
        "verdict": verdict.to_dict(),
        "validation": {
            "passed": report.passed,
            "checks": len(report.checks),
            "failed": [ch.name for ch in report.failed()],
        },
        "data": {"paths": data.paths, "digests": data.digests},
        "policy": {"name": policy.name, "digest": policy.digest},
        "environment": {"python": platform.python_version(), **versions()},
    }
