"""Language-model evaluation: a quantized causal LM against its fp32 source, teacher-forced on
held-out text (no labels needed), per slice, with paired-bootstrap intervals over passages.

What is measured (the anchors: llama.cpp ``perplexity --kl-divergence-base``, lm-evaluation-harness):

- **perplexity** of each model, ``exp(sum NLL / sum tokens)`` over the predicted tokens of all
  passages (token-weighted, as llama.cpp does), and the candidate/fp32 **perplexity ratio**;
- **nll_increase**: candidate minus fp32 NLL per token, in nats (``log`` of the ratio): the "loss
  increase" a per-slice rule compares with the overall one;
- **bits per byte**: ``sum NLL / (ln 2 * sum UTF-8 bytes)`` of the predicted text, comparable
  across tokenizers;
- **kl_mean / kl_p99**: mean and 99th percentile (inverted CDF) of the per-token KL(fp32 || candidate)
  of the next-token distributions, in nats;
- **top1_agreement**: share of predicted positions where both models' most likely next token is the same;
- **generation_agreement**: share of prompts whose first N greedy tokens are identical (exact match),
  with **generation_prefix** the mean share of the N tokens matched before the first difference.

Intervals come from the project's one paired bootstrap (:func:`quantgate.evaluate.metrics.paired_bootstrap`,
``scipy.stats.bootstrap``), resampling whole passages (prompts for the generation figures): fp32 and
the candidate always see the same resample. Unlike the classifier's intervals (on a change), an LM
interval is on the named figure itself (the ratio, the KL, the agreement).

The math is pure (tensors / arrays in, values out); :func:`teacher_forced`,
:func:`greedy_continuations` and :func:`evaluate_lm` run models. torch is imported lazily.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

    from quantgate.evaluate.metrics import Interval

#: figures where larger is better / worse; agreements are rates in [0, 1]
LM_HIGHER_IS_BETTER = frozenset({"top1_agreement", "generation_agreement", "generation_prefix"})
LM_LOWER_IS_BETTER = frozenset(
    {"perplexity", "bits_per_byte", "perplexity_ratio", "nll_increase", "bits_per_byte_increase", "kl_mean", "kl_p99"}
)
LM_RATES = frozenset({"top1_agreement", "generation_agreement", "generation_prefix"})
LM_METRICS = tuple(sorted(LM_HIGHER_IS_BETTER | LM_LOWER_IS_BETTER))
LM_DEFINITIONS: dict[str, str] = {
    "perplexity": "exp(sum of next-token NLL / predicted tokens) over all passages (token-weighted)",
    "perplexity_ratio": "candidate perplexity / fp32 perplexity on the same passages",
    "nll_increase": "candidate minus fp32 mean NLL per predicted token, in nats (log of the perplexity ratio)",
    "bits_per_byte": "sum of NLL / (ln 2 x UTF-8 bytes of the predicted text): tokenizer-independent",
    "bits_per_byte_increase": "candidate minus fp32 bits per byte",
    "kl_mean": "mean over predicted tokens of KL(fp32 || candidate) of the next-token distributions, nats",
    "kl_p99": "99th percentile (inverted CDF) of the per-token KL(fp32 || candidate), nats",
    "top1_agreement": "share of predicted positions where fp32 and the candidate rank the same token first",
    "generation_agreement": "share of prompts whose first N greedy tokens are identical for fp32 and the candidate",
    "generation_prefix": "mean share of the N greedy tokens generated identically before the first difference",
}
KL_QUANTILE = 0.99
#: (resamples x tokens) cells per vectorized chunk of the weighted-quantile bootstrap (~80 MB of float64)
_QUANTILE_CELLS = 10_000_000
_NAN = float("nan")


# --- pure math on logits -----------------------------------------------------------------------


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.log_softmax(logits.to(torch.float64), dim=-1)


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood (nats) of each target under its position's logits: ``(..., V), (...)
    -> (...)``."""
    return -_log_probs(logits).gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)


def kl_divergence(base_logits: torch.Tensor, cand_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_base || p_cand) per position, nats, in float64: ``(..., V) -> (...)``; never negative."""
    lb = _log_probs(base_logits)
    lc = _log_probs(cand_logits)
    return (lb.exp() * (lb - lc)).sum(-1).clamp_min(0.0)


def top1_agree(base_logits: torch.Tensor, cand_logits: torch.Tensor) -> torch.Tensor:
    """Whether both rank the same token first, per position (first index on ties, like argmax)."""
    return base_logits.float().argmax(-1) == cand_logits.float().argmax(-1)


def perplexity(nll_sum: float, tokens: float) -> float:
    return math.exp(nll_sum / tokens) if tokens > 0 else _NAN


def bits_per_byte(nll_sum: float, n_bytes: float) -> float:
    return nll_sum / (math.log(2) * n_bytes) if n_bytes > 0 else _NAN


def generation_match(base_tokens: np.ndarray, cand_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt: exact match of the N generated tokens, and how many matched before the first
    difference (``(P, N), (P, N) -> (P,) bool, (P,) int``)."""
    b, c = np.asarray(base_tokens), np.asarray(cand_tokens)
    if b.shape != c.shape:
        raise ValueError(f"generated token arrays differ in shape: {b.shape} vs {c.shape}")
    same = b == c
    matched = np.where(same.all(axis=1), b.shape[1], np.argmin(same, axis=1))
    return same.all(axis=1), matched.astype(np.int64)


def weighted_quantile_draws(
    values: np.ndarray, owner: np.ndarray, counts: np.ndarray, q: float = KL_QUANTILE
) -> np.ndarray:
    """The ``q`` quantile (inverted CDF) of ``values`` when each value is repeated as often as its
    owner passage is drawn: ``counts`` is ``(R, n_passages)``, one row per resample; returns ``(R,)``.
    With every count 1 it equals ``np.quantile(values, q, method="inverted_cdf")``."""
    counts = np.atleast_2d(counts)
    r = counts.shape[0]
    if len(values) == 0:
        return np.full(r, _NAN)
    order = np.argsort(values, kind="stable")
    v, o = values[order], owner[order]
    out = np.empty(r)
    step = max(1, _QUANTILE_CELLS // len(v))
    for s in range(0, r, step):
        cw = np.cumsum(counts[s : s + step][:, o], axis=1, dtype=np.float64)
        total = cw[:, -1]
        pos = (cw < (q * total)[:, None] - 1e-9).sum(axis=1)
        out[s : s + step] = np.where(total > 0, v[np.minimum(pos, len(v) - 1)], _NAN)
    return out


# --- scores of one evaluation (arrays, one row per passage / prompt) ---------------------------


@dataclass
class PassageScores:
    """fp32 and the candidate teacher-forced on the same passages: one entry per passage, and the
    per-token KL of every predicted token (``token_passage`` names its passage)."""

    base_nll: np.ndarray
    cand_nll: np.ndarray
    tokens: np.ndarray
    n_bytes: np.ndarray
    agree: np.ndarray
    kl_sum: np.ndarray
    token_kl: np.ndarray
    token_passage: np.ndarray
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, rows: np.ndarray) -> PassageScores:
        rows = np.asarray(rows, dtype=np.int64)
        remap = np.full(len(self), -1, dtype=np.int64)
        remap[rows] = np.arange(len(rows))
        keep = remap[self.token_passage] >= 0
        return PassageScores(
            self.base_nll[rows],
            self.cand_nll[rows],
            self.tokens[rows],
            self.n_bytes[rows],
            self.agree[rows],
            self.kl_sum[rows],
            self.token_kl[keep],
            remap[self.token_passage[keep]],
        )


@dataclass
class GenerationScores:
    """Greedy continuations of fp32 and the candidate on the same prompts."""

    match: np.ndarray
    matched: np.ndarray
    new_tokens: int
    passage: np.ndarray
    """index of the passage each prompt was cut from (its slices are the passage's)"""
    examples: list[dict[str, str]] = field(default_factory=list)

    def subset(self, rows: np.ndarray) -> GenerationScores:
        return GenerationScores(self.match[rows], self.matched[rows], self.new_tokens, self.passage[rows])


# --- figures -----------------------------------------------------------------------------------


@dataclass
class LMFigures:
    """The figures of one population of passages (all of them, or one slice)."""

    passages: int
    tokens: int
    bytes: int
    baseline_perplexity: float
    candidate_perplexity: float
    perplexity_ratio: float
    nll_increase: float
    baseline_bits_per_byte: float
    candidate_bits_per_byte: float
    bits_per_byte_increase: float
    kl_mean: float
    kl_p99: float
    top1_agreement: float
    prompts: int = 0
    generation_agreement: float = _NAN
    generation_prefix: float = _NAN
    intervals: dict[str, Interval] = field(default_factory=dict)

    def value(self, metric: str) -> float:
        """The candidate's figure a rule judges: ``perplexity`` / ``bits_per_byte`` are the candidate's."""
        if metric in ("perplexity", "bits_per_byte"):
            return float(getattr(self, f"candidate_{metric}"))
        return float(getattr(self, metric))


@dataclass
class SliceFigures:
    column: str
    value: str
    figures: LMFigures
    disagreement_ratio: float
    """the slice's share of all top-1 disagreements / its share of predicted tokens (1 = even;
    the flip-audit analogue: disagreements concentrated in a slice)"""

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"


@dataclass
class SliceGap:
    """Within one slice column: the slices with the highest and lowest perplexity ratio."""

    column: str
    worst: str
    best: str
    worst_ratio: float
    best_ratio: float

    @property
    def gap(self) -> float:
        return self.worst_ratio - self.best_ratio


@dataclass
class LMEvaluation:
    overall: LMFigures
    slices: list[SliceFigures] = field(default_factory=list)
    small_slices: list[tuple[str, str, int]] = field(default_factory=list)
    """(column, value, passages) of slices under ``min_slice_size``: listed, not evaluated"""
    gaps: list[SliceGap] = field(default_factory=list)
    min_slice_size: int = 30
    settings: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)

    def worst_slice(self, metric: str = "perplexity_ratio") -> SliceFigures | None:
        """The evaluated slice with the worst value of ``metric`` (None: no slice evaluated)."""
        ok = [s for s in self.slices if not math.isnan(s.figures.value(metric))]
        if not ok:
            return None
        sign = -1.0 if metric in LM_HIGHER_IS_BETTER else 1.0
        return max(ok, key=lambda s: sign * s.figures.value(metric))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gaps"] = [{**asdict(g), "gap": g.gap} for g in self.gaps]
        worst = self.worst_slice()
        d["worst_slice"] = worst.name if worst else None
        return d


def _draw_stats(s: PassageScores, idx: np.ndarray) -> np.ndarray:
    """Bootstrap draws of the passage figures for resampled indices ``(R, n)`` -> ``(6, R)``."""
    idx = np.atleast_2d(idx)
    r, n = idx.shape
    b, c = s.base_nll[idx].sum(1), s.cand_nll[idx].sum(1)
    t, y = s.tokens[idx].sum(1), s.n_bytes[idx].sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inc = (c - b) / t
        counts = np.bincount((idx + n * np.arange(r)[:, None]).ravel(), minlength=r * n).reshape(r, n)
        return np.stack(
            [
                np.exp(inc),
                inc,
                (c - b) / (math.log(2) * y),
                s.kl_sum[idx].sum(1) / t,
                weighted_quantile_draws(s.token_kl, s.token_passage, counts),
                s.agree[idx].sum(1) / t,
            ]
        )


_PASSAGE_STATS = ("perplexity_ratio", "nll_increase", "bits_per_byte_increase", "kl_mean", "kl_p99", "top1_agreement")


def figures(
    s: PassageScores,
    gen: GenerationScores | None = None,
    *,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> LMFigures:
    """Point estimates and paired-bootstrap intervals for one population of passages."""
    from quantgate.evaluate.metrics import paired_bootstrap

    n = len(s)
    tb, tc = float(s.base_nll.sum()), float(s.cand_nll.sum())
    tokens, nbytes = float(s.tokens.sum()), float(s.n_bytes.sum())
    point = _draw_stats(s, np.arange(n)[None, :])[:, 0] if n else np.full(len(_PASSAGE_STATS), _NAN)
    f = LMFigures(
        passages=n,
        tokens=int(tokens),
        bytes=int(nbytes),
        baseline_perplexity=perplexity(tb, tokens),
        candidate_perplexity=perplexity(tc, tokens),
        perplexity_ratio=float(point[0]),
        nll_increase=float(point[1]),
        baseline_bits_per_byte=bits_per_byte(tb, nbytes),
        candidate_bits_per_byte=bits_per_byte(tc, nbytes),
        bits_per_byte_increase=float(point[2]),
        kl_mean=float(point[3]),
        kl_p99=float(point[4]),
        top1_agreement=float(point[5]),
    )
    if n:
        ivs = paired_bootstrap(
            n, lambda idx: _draw_stats(s, idx), point, resamples=resamples, confidence=confidence, seed=seed
        )
        f.intervals = dict(zip(_PASSAGE_STATS, ivs, strict=True))
    if gen is not None and len(gen.match):
        share = gen.matched / max(1, gen.new_tokens)
        match = gen.match.astype(np.float64)
        f.prompts = len(match)
        f.generation_agreement = float(match.mean())
        f.generation_prefix = float(share.mean())
        gi = paired_bootstrap(
            len(match),
            lambda idx: np.stack([match[idx].mean(axis=1), share[idx].mean(axis=1)]),
            [f.generation_agreement, f.generation_prefix],
            resamples=resamples,
            confidence=confidence,
            seed=seed,
        )
        f.intervals |= {"generation_agreement": gi[0], "generation_prefix": gi[1]}
    return f


def _slice_table(slices: pd.DataFrame | Mapping[str, Sequence[Any]] | None, n: int) -> dict[str, np.ndarray]:
    if slices is None:
        return {}
    cols = {str(c): np.asarray(slices[c]).astype(str) for c in slices.keys()}  # a DataFrame or a mapping
    for c, v in cols.items():
        if len(v) != n:
            raise ValueError(f"slice column {c!r} has {len(v)} values for {n} passages")
    return cols


def summarize(
    scores: PassageScores,
    generations: GenerationScores | None = None,
    slices: pd.DataFrame | Mapping[str, Sequence[Any]] | None = None,
    *,
    min_slice_size: int = 30,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> LMEvaluation:
    """Overall figures, then the same figures for every slice value (of every slice column) with
    at least ``min_slice_size`` passages, the gap between slices per column and the top-1
    disagreement concentration. Pure: arrays in, figures out."""
    n = len(scores)
    table = _slice_table(slices, n)
    kw = {"resamples": resamples, "confidence": confidence, "seed": seed}
    ev = LMEvaluation(figures(scores, generations, **kw), min_slice_size=min_slice_size)
    total_tokens = float(scores.tokens.sum())
    total_disagree = float((scores.tokens - scores.agree).sum())
    for col, labels in table.items():
        done: list[SliceFigures] = []
        for value in sorted(set(labels.tolist())):
            rows = np.flatnonzero(labels == value)
            if len(rows) < min_slice_size:
                ev.small_slices.append((col, value, len(rows)))
                continue
            sub = scores.subset(rows)
            gen = None
            if generations is not None:
                prompt_rows = np.flatnonzero(np.isin(generations.passage, rows))
                gen = generations.subset(prompt_rows)
            token_share = float(sub.tokens.sum()) / total_tokens if total_tokens else _NAN
            dis_share = float((sub.tokens - sub.agree).sum()) / total_disagree if total_disagree else _NAN
            ratio = dis_share / token_share if token_share and not math.isnan(dis_share) else _NAN
            done.append(SliceFigures(col, value, figures(sub, gen, **kw), ratio))
        ev.slices.extend(done)
        if len(done) >= 2:
            worst = max(done, key=lambda x: x.figures.perplexity_ratio)
            best = min(done, key=lambda x: x.figures.perplexity_ratio)
            ev.gaps.append(
                SliceGap(col, worst.value, best.value, worst.figures.perplexity_ratio, best.figures.perplexity_ratio)
            )
    return ev


# --- running models ----------------------------------------------------------------------------


def _logits(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    out = model(input_ids=ids, attention_mask=mask, use_cache=False)
    logits = out.logits if hasattr(out, "logits") else out[0]
    return logits.float()


def encode_passages(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> tuple[list[list[int]], list[int], int]:
    """Token ids of each passage (at most ``max_tokens``), the UTF-8 bytes of the text each one's
    predicted tokens (all but the first) decode to, and how many passages were cut."""
    windows: list[list[int]] = []
    n_bytes: list[int] = []
    truncated = 0
    for ids in tokenizer(list(texts))["input_ids"]:
        if len(ids) > max_tokens:
            truncated += 1
            ids = ids[:max_tokens]
        windows.append(list(ids))
        text = tokenizer.decode(ids[1:], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        n_bytes.append(len(text.encode("utf-8")))
    return windows, n_bytes, truncated


def teacher_forced(
    base: nn.Module,
    cand: nn.Module,
    windows: Sequence[Sequence[int]],
    n_bytes: Sequence[int],
    *,
    batch_size: int = 8,
    pad_id: int = 0,
) -> PassageScores:
    """Both models on the same token windows (right-padded, sorted by length into batches):
    every position predicts the next token. Windows under 2 tokens predict nothing (0 tokens)."""
    import torch

    n = len(windows)
    base_nll, cand_nll = np.zeros(n), np.zeros(n)
    tokens, agree, kl_sum = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n)
    token_kl: list[np.ndarray] = [np.zeros(0)] * n
    order = sorted(range(n), key=lambda i: len(windows[i]))
    with torch.inference_mode():
        for s in range(0, n, batch_size):
            rows = [i for i in order[s : s + batch_size] if len(windows[i]) >= 2]
            if not rows:
                continue
            width = max(len(windows[i]) for i in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(rows):
                ids[j, : len(windows[i])] = torch.tensor(windows[i], dtype=torch.long)
                mask[j, : len(windows[i])] = 1
            lb, lc = _logits(base, ids, mask), _logits(cand, ids, mask)
            for j, i in enumerate(rows):
                m = len(windows[i]) - 1
                tgt = ids[j, 1 : m + 1]
                b, c = lb[j, :m], lc[j, :m]
                base_nll[i] = float(token_nll(b, tgt).sum())
                cand_nll[i] = float(token_nll(c, tgt).sum())
                kl = kl_divergence(b, c).numpy()
                token_kl[i] = kl
                kl_sum[i] = float(kl.sum())
                agree[i] = int(top1_agree(b, c).sum())
                tokens[i] = m
    owner = np.concatenate([np.full(len(k), i, dtype=np.int64) for i, k in enumerate(token_kl)]) if n else np.zeros(0)
    return PassageScores(
        base_nll,
        cand_nll,
        tokens,
        np.asarray(n_bytes, dtype=np.float64),
        agree,
        kl_sum,
        np.concatenate(token_kl) if n else np.zeros(0),
        owner.astype(np.int64),
    )


def greedy_continuations(model: nn.Module, prompts: torch.Tensor, new_tokens: int, batch_size: int = 16) -> np.ndarray:
    """The first ``new_tokens`` greedy tokens after each prompt (prompts of equal length, no
    padding), with the model's KV cache; ``(P, Lp) -> (P, new_tokens)``. Own loop, not
    ``generate()``: no generation config (end-of-text, repetition settings) changes what is compared."""
    import torch

    outs = []
    with torch.inference_mode():
        for s in range(0, len(prompts), batch_size):
            x = prompts[s : s + batch_size]
            out = model(input_ids=x, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1].float().argmax(-1)
            toks = [nxt]
            for _ in range(new_tokens - 1):
                out = model(input_ids=nxt[:, None], past_key_values=past, use_cache=True)
                past = out.past_key_values
                nxt = out.logits[:, -1].float().argmax(-1)
                toks.append(nxt)
            outs.append(torch.stack(toks, dim=1))
    return torch.cat(outs).numpy() if outs else np.zeros((0, new_tokens), dtype=np.int64)


def _greedy_by_length(model: nn.Module, prompts: list[list[int]], new_tokens: int, batch_size: int) -> np.ndarray:
    """:func:`greedy_continuations` on prompts of unequal lengths: batched by length (no padding),
    returned in the prompts' order."""
    import torch

    out = np.zeros((len(prompts), new_tokens), dtype=np.int64)
    for length in sorted({len(p) for p in prompts}):
        rows = [i for i, p in enumerate(prompts) if len(p) == length]
        ids = torch.tensor([prompts[i] for i in rows], dtype=torch.long)
        out[rows] = greedy_continuations(model, ids, new_tokens, batch_size=batch_size)
    return out


def decode_ms_per_token(model: nn.Module, prompt: torch.Tensor, new_tokens: int = 32, repeats: int = 3) -> float:
    """Median wall-clock milliseconds per greedy decoded token at batch 1 (prefill excluded)."""
    import torch

    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            out = model(input_ids=prompt[:1], use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].float().argmax(-1)
            t0 = time.perf_counter()
            for _ in range(new_tokens):
                out = model(input_ids=nxt[:, None], past_key_values=past, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1].float().argmax(-1)
            times.append((time.perf_counter() - t0) * 1000 / new_tokens)
    return float(np.median(times))


def prompts_from(windows: Sequence[Sequence[int]], prompt_tokens: int, max_prompts: int, seed: int = 0) -> np.ndarray:
    """Indices of the passages prompts are cut from: those with more than ``prompt_tokens``
    tokens, a seeded sample of at most ``max_prompts`` (in passage order)."""
    ok = np.flatnonzero(np.array([len(w) > prompt_tokens for w in windows], dtype=bool))
    if len(ok) > max_prompts:
        ok = np.sort(np.random.default_rng(seed).choice(ok, size=max_prompts, replace=False))
    return ok


def evaluate_lm(
    base: nn.Module,
    cand: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    slices: pd.DataFrame | Mapping[str, Sequence[Any]] | None = None,
    *,
    max_tokens: int = 256,
    prompt_tokens: int = 32,
    new_tokens: int = 16,
    max_prompts: int = 64,
    batch_size: int = 8,
    min_slice_size: int = 30,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    examples: int = 3,
    prompt_texts: Sequence[str] | None = None,
) -> LMEvaluation:
    """fp32 ``base`` vs ``cand`` on held-out passages ``texts`` (one slice label per passage in
    each ``slices`` column): teacher-forced figures, greedy-generation agreement on prompts cut
    from the passages, per slice, with paired-bootstrap intervals. ``prompt_texts`` (a prompts
    file) replaces the prompts cut from the passages: each is cut to ``prompt_tokens`` tokens;
    such prompts belong to no passage, so the generation figures are overall only."""

    if not len(texts):
        raise ValueError("no passages to evaluate")
    windows, n_bytes, truncated = encode_passages(tokenizer, texts, max_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    t0 = time.perf_counter()
    scores = teacher_forced(base, cand, windows, n_bytes, batch_size=batch_size, pad_id=int(pad))
    scores.truncated = truncated
    t1 = time.perf_counter()
    gen = None
    if prompt_texts is not None:
        cut = [list(tokenizer(str(p))["input_ids"][:prompt_tokens]) for p in prompt_texts]
        prompt_ids = [ids for ids in cut if ids][:max_prompts] if max_prompts else []
        which = np.full(len(prompt_ids), -1, dtype=np.int64)  # from a file: no passage, no slice
    else:
        which = prompts_from(windows, prompt_tokens, max_prompts, seed)
        prompt_ids = [list(windows[i][:prompt_tokens]) for i in which]
    if len(which) and new_tokens > 0:
        gb = _greedy_by_length(base, prompt_ids, new_tokens, 2 * batch_size)
        gc = _greedy_by_length(cand, prompt_ids, new_tokens, 2 * batch_size)
        match, matched = generation_match(gb, gc)
        gen = GenerationScores(match, matched, new_tokens, which)
        gen.examples = [
            {
                "prompt": tokenizer.decode(prompt_ids[k], skip_special_tokens=True),
                "fp32": tokenizer.decode(gb[k].tolist(), skip_special_tokens=True),
                "candidate": tokenizer.decode(gc[k].tolist(), skip_special_tokens=True),
            }
            for k in range(min(examples, len(which)))
        ]
    t2 = time.perf_counter()
    ev = summarize(
        scores, gen, slices, min_slice_size=min_slice_size, resamples=resamples, confidence=confidence, seed=seed
    )
    ev.examples = gen.examples if gen is not None else []
    ev.settings = {
        "max_tokens": max_tokens,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "prompts": len(which) if gen is not None else 0,
        "prompts_from": "prompts file" if prompt_texts is not None else "the passages' first tokens",
        "passages": len(texts),
        "truncated_passages": truncated,
        "resamples": resamples,
        "confidence": confidence,
        "seed": seed,
        "seconds_teacher_forced": round(t1 - t0, 2),
        "seconds_generation": round(t2 - t1, 2),
    }
    return ev
