"""The search's pick (pure) and the certification loop on the evaluation rows (issue 28).

The pick's order is lexicographic: covering the heavy layers, then speed only where timing
separates it, then smaller size, then higher quantized share. Certification runs the gate on the
searched candidates best first until one passes, each at the Bonferroni-corrected confidence.
The evaluate/gate steps are stand-ins here (the loop is pure over them); the flow's real ones are
exercised in tests/integration/test_search_certify.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from quantgate.policy.schema import parse_policy
from quantgate.policy.verdict import RuleResult, Verdict
from quantgate.quantize.tuner import Contender, rank_passing, speed_separated

FLOOR = 1e-4
ROUNDS = 12


def _times(ms: float, jitter: float = 0.01) -> tuple[float, ...]:
    return tuple(ms * (1 + jitter * ((-1) ** k)) for k in range(ROUNDS))


FP32 = Contender("ort-fp32", True, 0.0, 90.4e6, _times(10.0))
INT8 = Contender("ort-dynamic-int8", False, 1.0, 58.7e6, _times(10.2))


def test_tied_speed_goes_to_the_smaller_quantized_recipe() -> None:
    order = rank_passing([FP32, INT8], "latency", FLOOR)
    assert [i for i, _ in order] == [1, 0]
    why = order[0][1]
    assert why.startswith("#1: ort-dynamic-int8, speed tied") and "58.70 MB and 100% quantized" in why
    assert "vs ort-fp32 (90.40 MB, 0% quantized)" in why
    assert order[1][1].startswith("#2: ort-fp32")


def test_a_clearly_faster_recipe_wins_on_speed() -> None:
    fast_fp32 = Contender("ort-fp32", True, 0.0, 90.4e6, _times(5.0))
    order = rank_passing([fast_fp32, INT8], "latency", FLOOR)
    assert [i for i, _ in order] == [0, 1]
    assert "fastest (ort-dynamic-int8: ort-fp32 2.04x faster (beyond the timing noise" in order[0][1]


def test_timing_that_cannot_separate_is_a_tie() -> None:
    few = [Contender(c.label, c.lossless, c.share, c.bytes, c.times_ms[:3]) for c in (FP32, INT8)]
    separated, why = speed_separated(few[1], few[0], FLOOR)
    assert not separated and "timing could not separate" in why and "paired round" in why
    assert [i for i, _ in rank_passing(few, "latency", FLOOR)] == [1, 0]
    noisy = Contender("ort-dynamic-int8", False, 1.0, 58.7e6, _times(13.0, jitter=0.3))
    assert speed_separated(noisy, FP32, FLOOR)[0] is False  # 1.3x, but the rounds spread as much
    untimed = [Contender(c.label, c.lossless, c.share, c.bytes) for c in (FP32, INT8)]
    assert [i for i, _ in rank_passing(untimed, "latency", FLOOR)] == [1, 0]


def test_low_coverage_ranks_after_covering_recipes_and_size_objective() -> None:
    partial = Contender("dynamic-int8[-30]", False, 0.2, 30e6, _times(10.0))
    order = rank_passing([FP32, partial, INT8], "latency", FLOOR)
    assert [i for i, _ in order] == [2, 0, 1]
    assert "quantized < 50% of the parameters" in order[2][1]
    same_size = Contender("int8-weight-only", False, 0.9, 58.7e6, _times(30.0))
    by_size = rank_passing([FP32, same_size, INT8], "size", FLOOR)
    assert [i for i, _ in by_size] == [2, 1, 0]  # equal bytes: the higher share first
    assert by_size[0][1] == "#1: ort-dynamic-int8, smallest"


# --- certification ---------------------------------------------------------------------------

POLICY = """name: p
bootstrap: {resamples: 200, confidence: 0.95, seed: 0}
search: {certify: 3}
rules:
  - {id: acc, kind: max_drop, metric: accuracy, threshold: 0.01}
"""


def _verdict(passed: bool) -> Verdict:
    outcome = "pass" if passed else "fail"
    r = RuleResult("acc", "max_drop", "accuracy", "block", outcome, 0.0, 0.01, (0.0, 0.02), "upper bound +0.0200")
    return Verdict("m", "p", "sha256:x", [r])


def _found(labels: list[tuple[str, int]]) -> Any:
    from quantgate.steps.context import Search

    search: dict[str, Any] = {}
    trace = [
        {"label": lb, "passed": True, "quantized": q, "pick": f"#{i + 1}: {lb}"} for i, (lb, q) in enumerate(labels)
    ]
    search["trace"] = trace
    ranked = [
        (
            SimpleNamespace(label=lb),
            SimpleNamespace(spec={"quantization": {"search": search}}, label=lb),
            SimpleNamespace(n_quantized=q),
            i,
        )
        for i, (lb, q) in enumerate(labels)
    ]
    return Search(ranked[0][0], ranked[0][1], ranked[0][2], trace, {}, ranked=ranked, search=search)  # type: ignore[arg-type]


def test_certify_goes_down_the_ranking_at_the_corrected_confidence() -> None:
    from quantgate.steps.quantize import certify, certify_confidence

    policy = parse_policy(POLICY, "p.yaml")
    assert certify_confidence(policy, 2)[0] == pytest.approx(0.975)  # K = min(certify, passing)
    assert certify_confidence(policy, 1) == (0.95, 200)  # one candidate: nothing to correct for
    found = _found([("ort-dynamic-int8", 38), ("dynamic-int8", 38), ("ort-fp32", 0), ("bf16", 38)])
    seen: list[tuple[str, float]] = []

    def evaluate(judged: Any, cand: Any) -> Any:
        seen.append((cand.label, judged.bootstrap.confidence))
        return SimpleNamespace(label=cand.label)

    out = certify(policy, found, evaluate, lambda judged, ev: _verdict(ev.label == "dynamic-int8"))
    assert [s[0] for s in seen] == ["ort-dynamic-int8", "dynamic-int8"]
    assert [s[1] for s in seen] == pytest.approx([1 - 0.05 / 3] * 2)
    assert out.recipe.label == "dynamic-int8" and out.verdict.passed
    assert out.policy.bootstrap.resamples >= 10 / (0.05 / 3 / 2) and out.policy.digest == policy.digest
    t = found.trace
    assert (
        t[0]["certified"]["status"] == "fail"
        and "certified 1/3 on the evaluation rows at 98.33%: fail (acc:" in t[0]["pick"]
    )
    assert t[1]["certified"]["status"] == "pass" and t[1]["pick"].endswith(
        "certified 2/3 on the evaluation rows at 98.33%: pass"
    )
    assert "certified" not in t[2] and t[2]["pick"].endswith("; not certified")
    assert "ort-dynamic-int8 fail (acc); dynamic-int8 pass; certified dynamic-int8" in out.summary
    assert found.search["summary"] == out.summary and found.search["certified"]["candidates"] == 3


def test_when_no_certification_passes_the_pick_is_refused_and_an_unquantized_run_says_why() -> None:
    from quantgate.steps.quantize import certify

    policy = parse_policy(POLICY.replace("certify: 3", "certify: 2"), "p.yaml")
    found = _found([("ort-fp32", 0), ("ort-dynamic-int8", 38), ("bf16", 38)])
    found.trace.append(
        {"label": "dynamic-int8", "passed": False, "quantized": 38, "reason": "accuracy drop 0.02 > 0.01"}
    )
    out = certify(policy, found, lambda judged, cand: SimpleNamespace(), lambda judged, ev: _verdict(False))
    assert out.recipe.label == "ort-fp32" and not out.verdict.passed
    assert "no candidate passed the gate: recorded the pick, refused ort-fp32" in out.summary
    assert found.trace[2]["pick"].endswith("not certified (only 2 may be: search.certify)")
    # unquantized: the summary names why each quantized recipe was not kept
    assert "It is not quantized: ort-dynamic-int8: #2: ort-dynamic-int8; certified 2/2" in out.summary
    assert "dynamic-int8: accuracy drop 0.02 > 0.01" in out.summary
