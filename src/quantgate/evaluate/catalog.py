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
#: measured over the groups (sensitive attributes, slices, the policy's slices): none named, none measured
GROUP_METRICS = frozenset({"worst_group_accuracy", "max_flip_ratio"})

#: what each evaluated metric means, for k classes (binary is k = 2); the card and policy docs
#: can quote these. Point estimates come from sklearn / fairlearn (see evaluate/metrics.py).
DEFINITIONS: dict[str, str] = {
    "accuracy": "share of rows whose argmax class is the label (sklearn accuracy_score)",
    "balanced_accuracy": "mean recall over the classes present in the labels (sklearn balanced_accuracy_score)",
    "f1": "F1 of class 1 for k = 2; macro F1 over the classes in the labels or predictions for k > 2 (sklearn)",
    "roc_auc": "ROC-AUC of class 1 for k = 2; one-vs-rest macro for k > 2; undefined (NaN) when a class "
    "is absent from the labels (sklearn roc_auc_score)",
    "log_loss": "mean negative log-probability of the label, labels = range(k) (sklearn log_loss)",
    "brier": "classic Brier score for k = 2; for k > 2 half the summed squared error of the probability "
    "vector vs one-hot, in [0, 1] (sklearn brier_score_loss, scale_by_half=True)",
    "ece": "expected calibration error over 10 equal-width bins: positive-class probability for k = 2, "
    "top-label confidence vs correctness for k > 2",
    "dp_difference": "demographic parity difference (fairlearn): max-min selection rate over groups of at "
    "least min_group_size rows, largest over sensitive attributes; for k > 2 the largest one-vs-rest gap",
    "eo_difference": "equalized odds difference (fairlearn): larger of the max-min TPR and FPR gaps, same "
    "groups and one-vs-rest rule as dp_difference",
    "worst_group_accuracy": "lowest accuracy over the evaluated groups and intersections",
    "flip_rate": "share of rows whose argmax class changed between fp32 and the candidate",
    "max_flip_ratio": "largest flip-share / data-share ratio of a group whose excess is significant",
    "speedup": "fp32 latency / candidate latency",
    "size_ratio": "candidate artifact size / fp32 artifact size",
}
