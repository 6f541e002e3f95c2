"""A tiny random BERT written as an ordinary Hugging Face model folder.

Tests and ``umt demo`` run offline, where no pretrained encoder can be downloaded. This builds
one locally: a cased WordPiece vocabulary (special tokens, the given words, every single
character of those words plus the printable ASCII ones, each also as a ``##`` continuation,
so that any word made of known characters tokenises into pieces rather than ``[UNK]``), a fast
tokenizer saved with ``save_pretrained`` and a randomly initialised ``BertModel``. The folder
loads with ``AutoModel.from_pretrained`` and :func:`umt.pipeline.text.hf.load_tokenizer`
like any downloaded model, so code paths are the same as with a real encoder.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CONTINUATION = "##"
BASE_ALPHABET = string.ascii_letters + string.digits + string.punctuation
VOCAB_FILE = "vocab.txt"
FFN_MULTIPLIER = 4  # BERT's intermediate size is four times the hidden size
MAX_POSITIONS = 512


def tiny_vocabulary(words: Iterable[str]) -> list[str]:
    """Special tokens, then the words, then single characters and their ``##`` forms; no duplicates."""
    words = [w for w in dict.fromkeys(words) if w and not any(ch.isspace() for ch in w)]
    chars = sorted(set(BASE_ALPHABET).union(*words))
    entries = [*SPECIAL_TOKENS, *words, *chars, *(CONTINUATION + ch for ch in chars)]
    return list(dict.fromkeys(entries))


def build_tiny_encoder(
    out_dir: Path,
    words: Iterable[str] = (),
    hidden: int = 48,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    dropout: float = 0.1,
) -> Path:
    """Write a tiny random BERT (config, weights, vocab.txt, fast tokenizer) to ``out_dir``;
    larger sizes give random encoders for timing (bert-base: 768 wide, 12 layers, 12 heads)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path = out_dir / VOCAB_FILE
    vocab_path.write_text("\n".join(tiny_vocabulary(words)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(vocab_path), do_lower_case=False)
    tokenizer.save_pretrained(out_dir)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=FFN_MULTIPLIER * hidden,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(out_dir)
    return out_dir
