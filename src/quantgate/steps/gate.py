"""Gate: the policy judges the evaluation, rule by rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate.errors import ConfigError
from quantgate.onboarding import ModelConfig
from quantgate.steps.context import Evaluation, group_columns, per_class_groups, per_class_note

if TYPE_CHECKING:
    from quantgate.policy import Policy, Verdict


def gate(cfg: ModelConfig, policy: Policy, ev: Evaluation) -> Verdict:
    from quantgate.policy import gate_candidate

    extra = {
        "speedup": ev.runtime["speedup"],
        "size_ratio": ev.sizes["candidate_bytes"] / ev.sizes["baseline_bytes"],
        "max_flip_ratio": ev.audit.max_ratio if ev.audit is not None else float("nan"),
    }
    served = ev.served.comparisons if ev.served is not None else None
    verdict = gate_candidate(cfg.name, policy, ev.comparison, extra, served)
    if per_class_groups(cfg, policy):
        note_per_class_groups(cfg, verdict)
    return verdict


def note_per_class_groups(cfg: ModelConfig, verdict: Verdict) -> Verdict:
    """Say, in the evidence of each rule over groups, that the groups are the model's classes (the
    default for a classifier that names none), and in each demographic rule's why it is ``n/a``:
    the card and the verdict JSON show the evidence as written."""
    from quantgate.evaluate.catalog import GROUP_METRICS
    from quantgate.policy.verdict import FAIRNESS_GAPS

    note = per_class_note(cfg)
    for r in verdict.results:
        if r.kind == "max_group_drop" or r.metric in GROUP_METRICS:
            r.evidence = f"{note}: {r.evidence}"
        elif r.metric in FAIRNESS_GAPS and r.outcome == "n/a":
            r.evidence += (
                f"; {note}, which are not demographic groups: name sensitive_attributes in "
                f"registry/models/{cfg.name}.yaml to measure it"
            )
    return verdict


def check_measurable(cfg: ModelConfig, policy: Policy, policy_path: str) -> None:
    """Refuse, before any check or trial, a policy that blocks on group rules for a model that has
    no groups: every candidate would fail them as not measured, after a whole search. A classifier
    always has groups (its classes, when it names none: :func:`per_class_groups`), so this refuses
    only a model of another kind that names none."""
    rules = [] if group_columns(cfg, policy) else policy.group_blocks(cfg.name)
    if not rules:
        return
    raise ConfigError(
        f"policy '{policy.name}' ({policy_path}) blocks on group rule(s) {', '.join(r.id for r in rules)}, and the "
        f"onboarding of '{cfg.name}' names no sensitive attributes or slices: no candidate could be measured "
        "against them",
        f"set sensitive_attributes: (or slices:) in registry/models/{cfg.name}.yaml to the columns whose groups "
        "must not lose accuracy, or gate it with a policy where those rules are warnings (policies/permissive.yaml)",
    )
