"""Loading a Hugging Face tokenizer and encoder, with every silent or confusing failure made clear.

- :func:`is_local_path` is the one rule for "a folder, not a hub id": a name that exists on disk,
  starts with ``.``, ``/`` or ``~``, holds a backslash or more than one ``/``. ``owner/name``
  (``dslim/bert-base-NER``) that is not on disk is a hub id.
- :func:`check_model_folder` says what a local folder lacks (no folder, empty, no config.json,
  no tokenizer file) before anything is loaded; the CLI calls it before torch loads.
- A hub name that cannot be fetched (offline, ``HF_HUB_OFFLINE=1``) says how to bring the model
  in as a folder. A hub name is looked up in the local Hugging Face cache first.
- A folder without a vocabulary can load as a fast tokenizer with only its special tokens, which
  would tokenise every word to ``[UNK]``: a vocabulary that small is refused. A slow (Python)
  tokenizer is refused too, since word alignment needs a fast one's word ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from umt.pipeline.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from umt.pipeline.models.config import ModelConfig

#: Any real vocabulary is far larger; the degenerate one has only the special tokens.
MIN_VOCAB_SIZE = 100
MODEL_CONFIG = "config.json"
#: Files any one of which (or pair of which) gives a Hugging Face tokenizer its vocabulary.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
BPE_FILES = ("vocab.json", "merges.txt")
FOLDER_HINT = (
    "on a machine with network run `huggingface-cli download {name} --local-dir DIR` "
    "(or save_pretrained(DIR)), copy DIR here and pass --encoder DIR"
)


def is_local_path(name: str) -> bool:
    """True when ``name`` means a folder on disk rather than a hub id (see the module docstring)."""
    if Path(name).expanduser().exists():
        return True
    return name.startswith((".", "/", "~")) or name.endswith("/") or "\\" in name or name.count("/") > 1 or (
        os.altsep is not None and os.altsep in name
    )


def check_model_folder(name: str, need_weights: bool = False) -> None:
    """ConfigError naming what the local model folder ``name`` lacks; nothing for a hub id."""
    if not is_local_path(name):
        return
    folder = Path(name).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"encoder folder {name} {what}")
    present = sorted(p.name for p in folder.iterdir())
    if not present:
        raise ConfigError(
            f"encoder folder {name} is empty: a Hugging Face model folder holds config.json, a tokenizer "
            "(tokenizer.json or vocab.txt) and the weights (model.safetensors)"
        )
    lacks = []
    if MODEL_CONFIG not in present:
        lacks.append("config.json (the model's configuration)")
    if not any(f in present for f in TOKENIZER_FILES) and not all(f in present for f in BPE_FILES):
        lacks.append(f"a tokenizer ({' or '.join(TOKENIZER_FILES[:2])}, or vocab.json + merges.txt)")
    if need_weights and not any(p.endswith((".safetensors", ".bin")) for p in present):
        lacks.append("weights (model.safetensors or pytorch_model.bin)")
    if lacks:
        shown = ", ".join(present[:8]) + (" ..." if len(present) > 8 else "")
        raise ConfigError(f"encoder folder {name} lacks {' and '.join(lacks)}; it holds: {shown}")


def check_encoder(config: ModelConfig) -> None:
    """The sub-word recipes' input check: a local encoder folder that will be loaded is complete."""
    if config.pretrained_encoder:
        check_model_folder(config.encoder, need_weights=True)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())  # Hugging Face messages span lines; ours are one line


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A fast tokenizer from a local model folder or (when online) a hub name."""
    from transformers import AutoTokenizer

    check_model_folder(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        if is_local_path(name_or_path):
            raise ConfigError(f"cannot load a tokenizer from {name_or_path}: {_one_line(e)}") from None
        raise ConfigError(
            f"cannot load tokenizer {name_or_path!r}: it is not a local folder and could not be fetched "
            "from the Hugging Face hub (offline?). " + FOLDER_HINT.format(name=name_or_path)
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


def _hf_load(source: str, pretrained: bool, local_only: bool) -> PreTrainedModel:
    from transformers import AutoConfig, AutoModel

    if pretrained:
        return AutoModel.from_pretrained(source, local_files_only=local_only)
    return AutoModel.from_config(AutoConfig.from_pretrained(source, local_files_only=local_only))


def load_encoder_model(name: str, pretrained: bool = True) -> PreTrainedModel:
    """A Hugging Face encoder from a local folder or hub name: its pretrained weights, or random
    weights (``pretrained=False``) when a checkpoint will supply them."""
    import huggingface_hub

    check_model_folder(name, need_weights=pretrained)
    if is_local_path(name):
        try:
            return _hf_load(str(Path(name).expanduser()), pretrained, local_only=True)
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot load the encoder from the folder {name}: {_one_line(error)}") from error
    try:  # the local Hugging Face cache first: no network wait when the model is there
        return _hf_load(name, pretrained, local_only=True)
    except (OSError, ValueError) as error:
        if huggingface_hub.is_offline_mode():
            raise ConfigError(
                f"cannot load the encoder {name!r}: it is not a local folder nor in the local Hugging "
                "Face cache, and this machine is offline (HF_HUB_OFFLINE); " + FOLDER_HINT.format(name=name)
            ) from error
    try:
        return _hf_load(name, pretrained, local_only=False)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"cannot load the encoder {name!r} from the Hugging Face hub ({_one_line(error)}); "
            + FOLDER_HINT.format(name=name)
        ) from error


def save_model_files(source: str, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """The encoder's config and tokenizer into ``folder`` (its weights live in the checkpoint)."""
    from transformers import AutoConfig

    AutoConfig.from_pretrained(source).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
