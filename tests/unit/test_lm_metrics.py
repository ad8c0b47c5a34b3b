"""Language-model metric math on hand-made logits and scores (issue 27), the LM policy rules and
the LM gate, the int4 group-size choice and the LM recipe specs. No model is run here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from quantgate.evaluate import lm
from quantgate.evaluate.lm import (
    GenerationScores,
    PassageScores,
    generation_match,
    kl_divergence,
    summarize,
    token_nll,
    top1_agree,
    weighted_quantile_draws,
)

ROOT = Path(__file__).resolve().parents[2]
GENERATIVE = ROOT / "policies" / "generative.yaml"
DEFAULT = ROOT / "policies" / "default.yaml"

# --- logits -> per-token figures ---------------------------------------------------------------


def test_uniform_logits_give_perplexity_equal_to_vocabulary() -> None:
    v = 50
    logits = torch.zeros(7, v)  # uniform next-token distribution
    targets = torch.arange(7)
    nll = token_nll(logits, targets)
    assert torch.allclose(nll, torch.full((7,), math.log(v), dtype=torch.float64))
    assert lm.perplexity(float(nll.sum()), 7) == pytest.approx(v)


def test_known_nll_of_a_peaked_distribution() -> None:
    # p(target) = e^2 / (e^2 + 3): nll = log(e^2 + 3) - 2
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    assert float(token_nll(logits, torch.tensor([0]))[0]) == pytest.approx(math.log(math.e**2 + 3) - 2)


def test_known_kl_divergence() -> None:
    # p = (1/2, 1/2), q = (3/4, 1/4): KL(p || q) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    base = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    cand = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    assert float(kl_divergence(base, cand)[0]) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)
    # and the other direction differs: KL is not symmetric
    assert float(kl_divergence(cand, base)[0]) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))


def test_kl_is_zero_for_the_same_distribution_and_shift_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, 11, generator=g)
    assert torch.allclose(kl_divergence(a, a + 4.2), torch.zeros(3, 5, dtype=torch.float64), atol=1e-12)
    assert (kl_divergence(a, torch.randn(3, 5, 11, generator=g)) > 0).all()


def test_kl_is_computed_in_float64_from_bf16_logits() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0]])
    assert kl_divergence(a.to(torch.bfloat16), a).dtype == torch.float64


def test_top1_agreement() -> None:
    base = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    cand = torch.tensor([[0.0, 1.0], [0.1, 0.9], [0.2, 0.8]])
    assert top1_agree(base, cand).tolist() == [True, False, True]


def test_bits_per_byte() -> None:
    # 8 bits of surprise per byte: sum NLL = 8 ln 2 per byte
    assert lm.bits_per_byte(8 * math.log(2) * 100, 100) == pytest.approx(8.0)
    assert math.isnan(lm.bits_per_byte(1.0, 0))


def test_generation_match_exact_and_prefix() -> None:
    base = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [5, 6, 7, 8]])
    cand = np.array([[1, 2, 3, 4], [1, 2, 9, 4], [0, 6, 7, 8]])
    match, matched = generation_match(base, cand)
    assert match.tolist() == [True, False, False]
    assert matched.tolist() == [4, 2, 0]
    with pytest.raises(ValueError, match="shape"):
        generation_match(base, cand[:, :2])


# --- weighted quantile (the kl_p99 bootstrap) --------------------------------------------------


def test_weighted_quantile_with_unit_counts_is_numpys_inverted_cdf() -> None:
    rng = np.random.default_rng(0)
    values = rng.exponential(size=1000)
    owner = rng.integers(0, 40, size=1000)
    got = weighted_quantile_draws(values, owner, np.ones((1, 40)), 0.99)[0]
    assert got == np.quantile(values, 0.99, method="inverted_cdf")


def test_weighted_quantile_equals_quantile_of_repeated_passages() -> None:
    rng = np.random.default_rng(1)
    values = rng.exponential(size=300)
    owner = np.repeat(np.arange(30), 10)
    counts = rng.integers(0, 4, size=(5, 30))
    got = weighted_quantile_draws(values, owner, counts, 0.9)
    for r in range(5):
        repeated = np.concatenate([values[owner == p].repeat(1) for p in range(30) for _ in range(counts[r, p])])
        assert got[r] == np.quantile(repeated, 0.9, method="inverted_cdf")


# --- summarize: figures, intervals, slices -----------------------------------------------------


def _scores(n: int = 60, increase: float = 0.0, seed: int = 0, per: int = 20) -> PassageScores:
    """n passages of ``per`` tokens; the candidate's NLL is fp32's + ``increase`` nats per token."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(3.0, 6.0, size=n) * per
    tokens = np.full(n, per)
    kl = rng.exponential(0.01, size=n * per)
    owner = np.repeat(np.arange(n), per)
    return PassageScores(
        base_nll=base,
        cand_nll=base + increase * tokens,
        tokens=tokens,
        n_bytes=tokens * 4.0,
        agree=np.full(n, per - 1),
        kl_sum=np.bincount(owner, weights=kl, minlength=n),
        token_kl=kl,
        token_passage=owner,
    )


def test_figures_of_an_unchanged_candidate() -> None:
    s = _scores()
    s.cand_nll = s.base_nll.copy()
    s.kl_sum[:] = 0
    s.token_kl[:] = 0
    s.agree = s.tokens.copy()
    ev = summarize(s, resamples=50)
    o = ev.overall
    assert o.perplexity_ratio == pytest.approx(1.0)
    assert o.nll_increase == 0 and o.kl_mean == 0 and o.kl_p99 == 0 and o.top1_agreement == 1
    assert o.baseline_perplexity == o.candidate_perplexity
    iv = o.intervals["perplexity_ratio"]
    assert iv.low == pytest.approx(1.0) and iv.high == pytest.approx(1.0)


def test_perplexity_ratio_is_exp_of_the_per_token_increase() -> None:
    s = _scores(increase=0.05)
    o = summarize(s, resamples=100).overall
    assert o.perplexity_ratio == pytest.approx(math.exp(0.05))
    assert o.nll_increase == pytest.approx(0.05)
    assert o.candidate_perplexity / o.baseline_perplexity == pytest.approx(math.exp(0.05))
    assert o.bits_per_byte_increase == pytest.approx(0.05 * 20 / (math.log(2) * 80))
    assert o.top1_agreement == pytest.approx(19 / 20)
    assert o.kl_mean == pytest.approx(s.token_kl.mean())
    assert o.kl_p99 == np.quantile(s.token_kl, 0.99, method="inverted_cdf")
    for name, iv in o.intervals.items():
        assert iv.low <= iv.estimate <= iv.high, name
        assert iv.resamples == 100 and not iv.flagged


def test_intervals_are_seeded() -> None:
    s = _scores(increase=0.02)
    a = summarize(s, resamples=60, seed=3).overall.intervals["kl_p99"]
    b = summarize(s, resamples=60, seed=3).overall.intervals["kl_p99"]
    c = summarize(s, resamples=60, seed=4).overall.intervals["kl_p99"]
    assert (a.low, a.high) == (b.low, b.high)
    assert (a.low, a.high) != (c.low, c.high)


def test_slices_worst_gap_small_and_disagreement_concentration() -> None:
    s = _scores(n=90)
    # passages 0..29: increase 0.10 nats/token and every token a disagreement; the rest 0.01
    inc = np.where(np.arange(90) < 30, 0.10, 0.01)
    s.cand_nll = s.base_nll + inc * s.tokens
    s.agree = np.where(np.arange(90) < 30, 0, s.tokens)
    genre = np.array(["tragedy"] * 30 + ["comedy"] * 55 + ["poetry"] * 5)
    gen = GenerationScores(
        match=np.array([False, True, True, True]),
        matched=np.array([1, 4, 4, 4]),
        new_tokens=4,
        passage=np.array([0, 1, 40, 50]),
    )
    ev = summarize(s, gen, {"genre": genre}, min_slice_size=10, resamples=50)
    names = {x.name for x in ev.slices}
    assert names == {"genre=tragedy", "genre=comedy"}
    assert ev.small_slices == [("genre", "poetry", 5)]
    worst = ev.worst_slice()
    assert worst is not None and worst.name == "genre=tragedy"
    assert worst.figures.perplexity_ratio == pytest.approx(math.exp(0.10))
    assert worst.figures.nll_increase == pytest.approx(0.10)
    assert worst.disagreement_ratio == pytest.approx(1 / (30 / 90))  # all disagreements, a third of the tokens
    [gap] = ev.gaps
    assert (gap.column, gap.worst, gap.best) == ("genre", "tragedy", "comedy")
    assert gap.gap == pytest.approx(math.exp(0.10) - math.exp(0.01))
    assert worst.figures.prompts == 2 and worst.figures.generation_agreement == 0.5
    assert ev.overall.generation_agreement == 0.75 and ev.overall.generation_prefix == pytest.approx(13 / 16)
    assert ev.to_dict()["worst_slice"] == "genre=tragedy"


def test_slice_column_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="slice column 'work' has 3 values for 60"):
        summarize(_scores(), slices={"work": ["a", "b", "c"]}, resamples=0)


# --- policy: LM rules --------------------------------------------------------------------------

_BASE = "name: t\nrules:\n  - {id: size, kind: max, metric: size_ratio, threshold: 0.6, severity: warn}\n"


def _policy(lm_rules: str, extra: str = ""):  # type: ignore[no-untyped-def]
    from quantgate.policy.schema import parse_policy

    return parse_policy(_BASE + extra + "lm_rules:\n" + lm_rules)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "{id: a, kind: max, metric: perplexity_typo, threshold: 1}",
            "unknown language-model metric 'perplexity_typo'",
        ),
        ("{id: a, kind: max_ratio, metric: kl_mean, threshold: 1.1}", "max_ratio is judged on perplexity"),
        ("{id: a, kind: max_ratio, metric: perplexity, threshold: 0.9}", "below 1 would block fp32"),
        ("{id: a, kind: max, metric: top1_agreement, threshold: 0.9}", "max needs one of"),
        ("{id: a, kind: min, metric: kl_mean, threshold: 0.9}", "min needs one of"),
        ("{id: a, kind: min, metric: top1_agreement, threshold: 1.5}", "impossible for a rate"),
        ("{id: a, kind: max_slice_excess, metric: kl_mean, threshold: 1.5}", "compares slices' nll_increase"),
        ("{id: a, kind: max_slice_excess, metric: nll_increase, threshold: 0.5}", "multiple of the overall"),
        ("{id: a, kind: max_slice_excess, metric: nll_increase, threshold: 1.5, scope: overall}", "judged per slice"),
        ("{id: a, kind: max, metric: kl_mean, threshold: 0.1, floor: 0.01}", "floor (>= 0) applies"),
        ("{id: a, kind: max, metric: kl_mean, threshold: 0.1, judge_on: significant}", "significant applies"),
        ("{id: a, kind: max, metric: kl_mean, threshold: 0.1, weight_bits: []}", "weight_bits lists"),
        ("{id: a, kind: max, metric: kl_mean, threshold: 0.1, typo: 1}", "lm_rules.0.typo: unknown key"),
        ("{id: size, kind: max, metric: kl_mean, threshold: 0.1}", "duplicate rule id(s) across rules and lm_rules"),
    ],
)
def test_bad_lm_rules_name_what_is_wrong(rule: str, message: str) -> None:
    from quantgate.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        _policy(f"  - {rule}\n")
    assert message in str(exc.value)


def test_lm_evaluation_settings_are_strict() -> None:
    from quantgate.errors import ConfigError

    p = _policy("  - {id: a, kind: max, metric: kl_mean, threshold: 0.1}\n", "lm_evaluation: {new_tokens: 8}\n")
    assert p.lm_evaluation.new_tokens == 8 and p.lm_evaluation.max_tokens == 256
    with pytest.raises(ConfigError, match=r"lm_evaluation\.max_token: unknown key"):
        _policy("  - {id: a, kind: max, metric: kl_mean, threshold: 0.1}\n", "lm_evaluation: {max_token: 8}\n")


def test_shipped_generative_policy() -> None:
    from quantgate.policy.schema import explain, load_policy

    p = load_policy(GENERATIVE)
    ratio = {r.id: r for r in p.lm_rules if r.kind == "max_ratio" and r.judged_scope == "overall"}
    assert ratio["perplexity-ratio-8bit"].threshold == 1.02 and ratio["perplexity-ratio-8bit"].applies_to(8)
    assert ratio["perplexity-ratio-4bit"].threshold == 1.10 and not ratio["perplexity-ratio-4bit"].applies_to(8)
    excess = next(r for r in p.lm_rules if r.kind == "max_slice_excess")
    assert excess.threshold == 1.5 and excess.severity == "block" and excess.judged_scope == "worst_slice"
    lines = explain(p)
    assert any("perplexity may be at most 1.02x fp32's" in line for line in lines)


# --- gate ---------------------------------------------------------------------------------------


def _evaluation(overall_increase: float, slice_increases: dict[str, float], n: int = 40):  # type: ignore[no-untyped-def]
    parts, labels = [], []
    for i, (name, inc) in enumerate(slice_increases.items()):
        parts.append((_scores(n=n, increase=inc, seed=i), name))
        labels += [name] * n
    s = PassageScores(
        *(np.concatenate([getattr(p, f) for p, _ in parts]) for f in ("base_nll", "cand_nll", "tokens", "n_bytes")),
        np.concatenate([p.agree for p, _ in parts]),
        np.concatenate([p.kl_sum for p, _ in parts]),
        np.concatenate([p.token_kl for p, _ in parts]),
        np.concatenate([p.token_passage + k * n for k, (p, _) in enumerate(parts)]),
    )
    ev = summarize(s, slices={"genre": labels}, min_slice_size=10, resamples=100)
    assert ev.overall.nll_increase == pytest.approx(overall_increase, rel=0.2)
    return ev


def test_gate_passes_and_skips_rules_for_other_bits() -> None:
    from quantgate.policy.schema import load_policy
    from quantgate.policy.verdict import gate_lm_candidate

    ev = _evaluation(0.005, {"comedy": 0.005, "tragedy": 0.005})
    v = gate_lm_candidate("m", load_policy(GENERATIVE), ev, weight_bits=8, extra={"size_ratio": 0.3})
    by = {r.rule_id: r for r in v.results}
    assert v.passed, v.failed_rules
    assert by["perplexity-ratio-8bit"].outcome == "pass"
    assert by["perplexity-ratio-8bit"].interval is not None
    assert by["perplexity-ratio-4bit"].outcome == "n/a" and "4-bit" in by["perplexity-ratio-4bit"].evidence
    assert by["size-ratio"].outcome == "pass"


def test_gate_blocks_a_perplexity_ratio_over_the_8bit_bound() -> None:
    from quantgate.policy.schema import load_policy
    from quantgate.policy.verdict import gate_lm_candidate

    ev = _evaluation(0.04, {"comedy": 0.04, "tragedy": 0.04})  # ratio e^0.04 = 1.041
    pol = load_policy(GENERATIVE)
    v8 = gate_lm_candidate("m", pol, ev, weight_bits=8)
    assert "perplexity-ratio-8bit" in v8.failed_rules
    v4 = gate_lm_candidate("m", pol, ev, weight_bits=4)
    assert "perplexity-ratio-4bit" not in v4.failed_rules
    # size_ratio was not measured: a warning rule, so it does not fail the gate
    size = next(r for r in v4.results if r.rule_id == "size-ratio")
    assert size.outcome == "not measured" and "size-ratio" not in v4.failed_rules


def test_gate_blocks_a_slice_far_above_the_overall_increase() -> None:
    from quantgate.policy.schema import load_policy
    from quantgate.policy.verdict import gate_lm_candidate

    ev = _evaluation(0.03, {"comedy": 0.005, "history": 0.005, "tragedy": 0.08})
    v = gate_lm_candidate("m", load_policy(GENERATIVE), ev, weight_bits=4)
    res = next(r for r in v.results if r.rule_id == "slice-loss-excess")
    assert res.outcome == "fail", res.evidence
    assert "worst slice genre=tragedy" in res.evidence and "allowed" in res.evidence


def test_gate_within_the_floor_passes_a_near_lossless_candidate() -> None:
    from quantgate.policy.schema import load_policy
    from quantgate.policy.verdict import gate_lm_candidate

    ev = _evaluation(0.00105, {"comedy": 0.0001, "tragedy": 0.002})  # ~1.9x the overall, but under 0.005 nats
    v = gate_lm_candidate("m", load_policy(GENERATIVE), ev, weight_bits=8)
    assert next(r for r in v.results if r.rule_id == "slice-loss-excess").outcome == "pass"


def test_gate_with_no_slice_evaluated_is_not_measured_and_blocks() -> None:
    from quantgate.policy.schema import load_policy
    from quantgate.policy.verdict import gate_lm_candidate

    ev = summarize(_scores(increase=0.001), resamples=50)
    v = gate_lm_candidate("m", load_policy(GENERATIVE), ev, weight_bits=8)
    res = next(r for r in v.results if r.rule_id == "slice-loss-excess")
    assert res.outcome == "not measured" and "slice-loss-excess" in v.failed_rules


def test_gate_refuses_a_policy_without_lm_rules() -> None:
    from quantgate.errors import ConfigError
    from quantgate.policy.schema import load_policy
    from quantgate.policy.verdict import gate_lm_candidate

    with pytest.raises(ConfigError, match="has no lm_rules"):
        gate_lm_candidate("m", load_policy(DEFAULT), summarize(_scores(), resamples=0), weight_bits=8)


def test_gate_marks_classifier_rules_not_applicable() -> None:
    from quantgate.policy.schema import parse_policy
    from quantgate.policy.verdict import gate_lm_candidate

    p = parse_policy(
        "name: t\nrules:\n  - {id: acc, kind: max_drop, metric: accuracy, threshold: 0.01}\n"
        "lm_rules:\n  - {id: kl, kind: max, metric: kl_mean, threshold: 0.1, judge_on: estimate}\n"
    )
    v = gate_lm_candidate("m", p, summarize(_scores(), resamples=0), weight_bits=4)
    by = {r.rule_id: r for r in v.results}
    assert by["acc"].outcome == "n/a" and "classifier metric" in by["acc"].evidence
    assert by["kl"].outcome == "pass" and v.passed


def test_interval_judgment_without_an_interval_is_not_measured() -> None:
    from quantgate.policy.verdict import gate_lm_candidate

    p = _policy("  - {id: ppl, kind: max, metric: perplexity, threshold: 1000}\n")
    v = gate_lm_candidate("m", p, summarize(_scores(), resamples=50), weight_bits=8)
    res = next(r for r in v.results if r.rule_id == "ppl")
    assert res.outcome == "not measured" and "judge_on: estimate" in res.evidence


# --- int4 group size and recipe specs ----------------------------------------------------------


def test_int4_group_size_per_layer() -> None:
    from quantgate.quantize.lm import int4_group_size

    assert int4_group_size(576, 576, (128, 64, 32)) == (64, "")  # SmolLM2's hidden: 128 does not divide it
    assert int4_group_size(1536, 576, (128, 64, 32)) == (128, "")
    assert int4_group_size(352, 128, (128, 64, 32)) == (32, "")
    g, why = int4_group_size(200, 128, (128, 64, 32))
    assert g is None and "input width 200 is divisible by none of the group sizes [32, 64, 128]" in why
    g, why = int4_group_size(128, 200, (128, 64, 32))
    assert g is None and "output width 200 is not a multiple of 16" in why


def test_lm_recipe_specs_round_trip_and_stay_apart_from_the_classifier_registry() -> None:
    from quantgate.errors import ConfigError
    from quantgate.quantize.base import recipe_to_dict
    from quantgate.quantize.lm import LMInt4WeightOnlyRecipe, get_lm_recipe, list_lm_recipes, lm_recipe_from_dict
    from quantgate.quantize.recipes import REGISTRY

    names = {r.TYPE for r in list_lm_recipes()}
    assert names == {"lm-bf16", "lm-int8-weight-only", "lm-int4-weight-only"}
    assert not names & set(REGISTRY)
    r = get_lm_recipe("lm-int4-weight-only", group_sizes=(64, 32), include_embeddings=True)
    d = recipe_to_dict(r)
    assert d == {
        "_type": "lm-int4-weight-only",
        "_version": 1,
        "_data": {"exclude": [], "include_embeddings": True, "group_sizes": [64, 32]},
    }
    assert lm_recipe_from_dict(d) == r and lm_recipe_from_dict(d).digest == r.digest
    assert r.digest != LMInt4WeightOnlyRecipe().digest
    with pytest.raises(ConfigError, match="not a language-model recipe"):
        lm_recipe_from_dict({"_type": "int4-weight-only", "_version": 1, "_data": {}})
    with pytest.raises(ConfigError, match="unknown field"):
        lm_recipe_from_dict({"_type": "lm-bf16", "_version": 1, "_data": {"group_sizes": [32]}})
    with pytest.raises(ConfigError, match="group sizes"):
        LMInt4WeightOnlyRecipe(group_sizes=(48,))
    with pytest.raises(ConfigError, match="cannot keep modules in fp32"):
        get_lm_recipe("lm-bf16", exclude=("lm_head",))
