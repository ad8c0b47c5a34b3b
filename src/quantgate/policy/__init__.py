"""Gate policies: a strict schema and a pure evaluator that returns a Verdict."""

from quantgate.policy.schema import Policy, Rule, load_policy
from quantgate.policy.verdict import RuleResult, Verdict, gate_candidate

__all__ = ["Policy", "Rule", "RuleResult", "Verdict", "gate_candidate", "load_policy"]
