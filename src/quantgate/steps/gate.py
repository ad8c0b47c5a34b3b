"""Gate: the policy judges the evaluation, rule by rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate.errors import ConfigError
from quantgate.onboarding import ModelConfig
from quantgate.steps.context import Evaluation, group_columns

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
    return gate_candidate(cfg.name, policy, ev.comparison, extra, served)


def check_measurable(cfg: ModelConfig, policy: Policy, policy_path: str) -> None:
    """Refuse, before any check or trial, a policy that blocks on group rules for a model that names
    no groups: every candidate would fail them as not measured, after a whole search."""
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
