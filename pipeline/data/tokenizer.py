"""Loading a Hugging Face tokenizer with the failures that would otherwise pass silently refused.

Three traps are turned into a clear :class:`ConfigError`:

- a local folder that does not exist is reported as such (Hugging Face reads it as a
  malformed hub repository id and says so);
- a hub name that cannot be fetched (no network, ``HF_HUB_OFFLINE=1``) says how to pass a
  local folder instead;
- a folder without a vocabulary can load as a fast tokenizer with only its few special tokens,
  which would tokenise every word to ``[UNK]``; a vocabulary that small is refused. A slow
  (Python) tokenizer is refused too, since word alignment needs a fast one's word ids.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from pipeline.errors import ConfigError

#: Any real vocabulary is far larger; the degenerate one has only the special tokens.
MIN_VOCAB_SIZE = 100


def _looks_local(name_or_path: str) -> bool:
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return name_or_path.startswith(".") or any(s in name_or_path for s in separators) or Path(name_or_path).exists()


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A fast tokenizer from a local model folder or (when online) a hub name."""
    if _looks_local(name_or_path) and not Path(name_or_path).is_dir():
        what = "is not a folder" if Path(name_or_path).exists() else "does not exist"
        raise ConfigError(f"tokenizer folder {name_or_path} {what}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        if _looks_local(name_or_path):
            reason = " ".join(str(e).split())  # Hugging Face messages span lines; ours are one line
            raise ConfigError(f"cannot load a tokenizer from {name_or_path}: {reason}") from None
        raise ConfigError(
            f"cannot load tokenizer {name_or_path!r}: it is not a local folder and could not be fetched "
            "from the Hugging Face hub (offline?). Pass the path of a local model folder holding "
            "tokenizer.json or vocab.txt instead."
        ) from None
    if not tokenizer.is_fast:
        raise ConfigError(
            f"tokenizer {name_or_path} is a slow (Python) tokenizer; word alignment needs a fast one "
            "(a folder with tokenizer.json)"
        )
    if len(tokenizer) < MIN_VOCAB_SIZE:
        raise ConfigError(
            f"tokenizer {name_or_path} has only {len(tokenizer)} entries: its vocabulary file is missing "
            f"(expected at least {MIN_VOCAB_SIZE})"
        )
    return tokenizer
