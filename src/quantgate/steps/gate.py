"""Gate: the policy judges the evaluation, rule by rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate.onboarding import ModelConfig
from quantgate.steps.context import Evaluation

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
