"""The metric names the evaluator produces and the gate can rule on (no heavy imports)."""

from __future__ import annotations

#: larger is better
HIGHER_IS_BETTER = frozenset({"accuracy", "balanced_accuracy", "f1", "roc_auc", "worst_group_accuracy", "speedup"})
#: smaller is better
LOWER_IS_BETTER = frozenset(
    {"log_loss", "brier", "ece", "dp_difference", "eo_difference", "flip_rate", "max_flip_ratio", "size_ratio"}
)
#: bounded to [0, 1]: a threshold outside is impossible
RATES = frozenset(
    {
        "accuracy",
        "balanced_accuracy",
        "f1",
        "roc_auc",
        "worst_group_accuracy",
        "brier",
        "ece",
        "dp_difference",
        "eo_difference",
        "flip_rate",
    }
)
KNOWN_METRICS = tuple(sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER))
