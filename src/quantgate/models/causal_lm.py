"""A causal language model and its tokenizer, as quantgate governs it: the fp32 source read from
MLflow's ``transformers`` flavor, each quantized candidate, and what the logged pyfunc serves.

Saved as three artifacts: ``config/`` (the model's ``config.json``), ``weights.pt`` (its state
dict, quantized tensors included) and ``tokenizer/``; ``spec.json`` records the recipe's compute
dtype. Loading rebuilds the architecture from the config (``from_config``: no hub, no download),
casts it to the saved dtype and assigns the saved tensors (``load_state_dict(assign=True)``), so a
torchao ``Int8Tensor`` / ``Int4OpaqueTensor`` weight comes back as that tensor subclass (checked
with torch 2.13 / torchao 0.18: both round-trip exactly). The state dict is read with
``weights_only=True``: torchao registers its tensor subclasses as safe globals on import, so no
arbitrary pickle is executed when a candidate is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

#: the column a served request's prompts are read from, and the answer's column
PROMPT_COLUMN = "prompt"
OUTPUT_COLUMN = "generated_text"
#: token counts answered (and logged) beside each generated text
PROMPT_TOKENS_COLUMN, OUTPUT_TOKENS_COLUMN = "prompt_tokens", "output_tokens"


@dataclass
class CausalLM:
    """``module``: a ``transformers`` ``*ForCausalLM``; ``spec``: task, text column, dtypes, generation."""

    module: nn.Module
    tokenizer: Any
    spec: dict[str, Any]

    def __post_init__(self) -> None:
        self.module.eval()
        self.spec.setdefault("task", "text-generation")

    @property
    def task(self) -> str:
        return str(self.spec["task"])

    @property
    def text_column(self) -> str:
        return str(self.spec.get("text_column", "text"))

    def with_module(self, module: nn.Module, **spec: Any) -> CausalLM:
        return CausalLM(module, self.tokenizer, {**self.spec, **spec})

    @torch.inference_mode()
    def next_token_log_probs(self, texts: list[str], max_tokens: int = 32) -> list[np.ndarray]:
        """Per text: the log-probabilities of every next token at each position of its first
        ``max_tokens`` tokens (``(positions, vocabulary)``, float64): what the faithful-reading
        checks compare."""
        out = []
        for text in texts:
            ids = self.tokenizer(text, return_tensors="pt")["input_ids"][:, :max_tokens]
            logits = self.module(input_ids=ids).logits[0].to(torch.float64)
            out.append(torch.log_softmax(logits, dim=-1).numpy())
        return out

    @torch.inference_mode()
    def generate(self, prompts: list[str], new_tokens: int | None = None) -> list[str]:
        """Greedy continuations (the evaluation's own loop, KV cache, no generation config)."""
        return [text for text, _, _ in self.generate_counted(prompts, new_tokens)]

    @torch.inference_mode()
    def generate_counted(self, prompts: list[str], new_tokens: int | None = None) -> list[tuple[str, int, int]]:
        """Per prompt: (greedy continuation, prompt tokens, generated tokens)."""
        from quantgate.evaluate.lm import greedy_continuations

        n = int(new_tokens or self.default_new_tokens)
        outs = []
        for prompt in prompts:
            ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
            if ids.shape[1] == 0:
                raise ValueError("an empty prompt has no token to continue from")
            toks = greedy_continuations(self.module, ids, n, batch_size=1)[0]
            outs.append((self.tokenizer.decode(toks.tolist(), skip_special_tokens=True), int(ids.shape[1]), len(toks)))
        return outs

    @property
    def default_new_tokens(self) -> int:
        """Tokens generated when a request does not say: the evaluation's ``new_tokens`` (what the
        gate judged generation agreement on)."""
        return int(self.spec.get("new_tokens", 16))

    @property
    def context_length(self) -> int | None:
        """The most positions the model takes (prompt + generated), from its config; None if unknown."""
        n = getattr(self.module.config, "max_position_embeddings", None)
        return int(n) if n else None

    def predict(self, df: pd.DataFrame, new_tokens: int | None = None) -> pd.DataFrame:
        """``prompt`` column in; ``generated_text`` and the token counts (``prompt_tokens``,
        ``output_tokens``) out, one row per prompt."""
        col = PROMPT_COLUMN if PROMPT_COLUMN in df.columns else self.text_column
        rows = self.generate_counted([str(x) for x in df[col]], new_tokens)
        return pd.DataFrame(
            {
                OUTPUT_COLUMN: [r[0] for r in rows],
                PROMPT_TOKENS_COLUMN: pd.Series([r[1] for r in rows], dtype="int64"),
                OUTPUT_TOKENS_COLUMN: pd.Series([r[2] for r in rows], dtype="int64"),
            }
        )

    # --- persistence -------------------------------------------------------------------
    def save(self, directory: Path) -> dict[str, str]:
        directory.mkdir(parents=True, exist_ok=True)
        config_dir, tok_dir = directory / "config", directory / "tokenizer"
        self.module.config.save_pretrained(config_dir)
        self.tokenizer.save_pretrained(tok_dir)
        torch.save(self.module.state_dict(), directory / "weights.pt")
        dtype = next(iter(self.module.parameters())).dtype
        spec = {**self.spec, "dtype": str(dtype).removeprefix("torch."), "class": type(self.module).__name__}
        (directory / "spec.json").write_text(json.dumps(spec, indent=2, default=str))
        return {
            "config": str(config_dir),
            "tokenizer": str(tok_dir),
            "weights": str(directory / "weights.pt"),
            "spec": str(directory / "spec.json"),
        }

    @classmethod
    def load(cls, artifacts: dict[str, str]) -> CausalLM:
        import transformers
        from transformers import AutoConfig, AutoTokenizer

        spec = json.loads(Path(artifacts["spec"]).read_text())
        config = AutoConfig.from_pretrained(artifacts["config"], local_files_only=True)
        model_cls = getattr(transformers, str(spec["class"]))
        # built on CPU (non-persistent buffers such as rotary frequencies are computed as usual),
        # cast to the saved dtype, then the saved tensors are assigned as they are
        module = model_cls(config).to(getattr(torch, str(spec["dtype"])))
        _register_safe_tensors(spec)

        state = torch.load(artifacts["weights"], map_location="cpu", weights_only=True)
        module.load_state_dict(state, assign=True, strict=True)
        if getattr(config, "tie_word_embeddings", False):
            module.tie_weights()
        tokenizer = AutoTokenizer.from_pretrained(artifacts["tokenizer"], local_files_only=True)
        return cls(module, tokenizer, spec)


def _register_safe_tensors(spec: dict[str, Any]) -> None:
    """Import the torchao modules whose tensor subclasses the weights hold: importing them
    registers those classes as safe globals for ``torch.load(weights_only=True)``. The int4
    tensor (``Int4OpaqueTensor``) lives in torchao's prototype workflow, which
    ``torchao.quantization`` does not import (a fresh process failed to load an int4 candidate
    until it was imported here)."""
    import torchao.quantization

    if (spec.get("recipe") or {}).get("_type") == "lm-int4-weight-only":
        import torchao.prototype.quantization.int4.inference_workflow  # noqa: F401
