"""Loading a Hugging Face tokenizer and encoder, with every silent or confusing failure made clear.

- :func:`is_local_path` is the one rule for "a folder, not a hub id": a name that exists on disk,
  starts with ``.``, ``/`` or ``~``, holds a backslash or more than one ``/``. ``owner/name``
  (``dslim/bert-base-NER``) that is not on disk is a hub id.
- :func:`check_model_folder` says what a local folder lacks (no folder, empty, no config.json,
  no tokenizer file) before anything is loaded; the CLI calls it before torch loads.
- No code from a model folder ever runs: every load passes ``trust_remote_code=False``, so a
  ``config.json`` or ``tokenizer_config.json`` with an ``auto_map`` (custom Python classes) is
  refused instead of executed, and transformers never stops to ask ``[y/N]`` on standard input
  (which ``umt predict`` may be reading posts from).
- A hub name is looked up in the local Hugging Face cache first. When it is not there and the
  hub cannot be had (``HF_HUB_OFFLINE=1``, or no answer from the hub's host within
  :data:`HUB_PROBE_SECONDS`), the error comes at once and says how to bring the model in as a
  folder (``hf download``), instead of after transformers' retries (about a minute).
- A folder without a vocabulary can load as a fast tokenizer with only its special tokens, which
  would tokenise every word to ``[UNK]``: a vocabulary that small is refused. A slow (Python)
  tokenizer is refused too, since word alignment needs a fast one's word ids.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from umt.pipeline.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from umt.pipeline.models.config import ModelConfig

T = TypeVar("T")

#: Any real vocabulary is far larger; the degenerate one has only the special tokens.
MIN_VOCAB_SIZE = 100
MODEL_CONFIG = "config.json"
#: Files any one of which (or pair of which) gives a Hugging Face tokenizer its vocabulary.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
BPE_FILES = ("vocab.json", "merges.txt")
FOLDER_HINT = (
    "on a machine with network run `hf download {name} --local-dir DIR` "
    "(or save_pretrained(DIR)), copy DIR here and pass --encoder DIR"
)
#: How long the hub's host may take to accept a connection (name lookup included) before it counts as unreachable.
HUB_PROBE_SECONDS = 1.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def is_local_path(name: str) -> bool:
    """True when ``name`` means a folder on disk rather than a hub id (see the module docstring)."""
    if Path(name).expanduser().exists():
        return True
    return (
        name.startswith((".", "/", "~"))
        or name.endswith("/")
        or "\\" in name
        or name.count("/") > 1
        or (os.altsep is not None and os.altsep in name)
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
    """The sub-word recipes' input check, before torch loads: a local encoder folder that will be
    loaded is complete, and a hub id is in the local Hugging Face cache or the hub can be reached."""
    if config.pretrained_encoder:
        check_model_folder(config.encoder, need_weights=True)
        if not is_local_path(config.encoder):
            check_hub_model(config.encoder)


def check_hub_model(name: str) -> None:
    """The one-line error for a hub id that is not cached here and cannot be fetched, at once
    (huggingface_hub alone answers in a fraction of a second; transformers would take ten)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, MODEL_CONFIG)
    except Exception:  # noqa: BLE001 - a name the hub refuses as an id: not cached, and loading says why
        cached = None
    if not isinstance(cached, str):
        _unfetchable(name, "encoder")


def _unfetchable(name: str, what: str) -> None:
    """Raise the ConfigError with the folder hint when the hub cannot be had (offline, unreachable)."""
    import huggingface_hub

    offline = huggingface_hub.is_offline_mode()
    if offline or not hub_reachable():
        why = "this machine is offline (HF_HUB_OFFLINE)" if offline else "the Hugging Face hub cannot be reached"
        raise ConfigError(
            f"cannot load the {what} {name!r}: it is not a local folder nor in the local Hugging Face cache, and "
            f"{why}; " + FOLDER_HINT.format(name=name)
        )


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())  # Hugging Face messages span lines; ours are one line


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the Hugging Face hub's host (or the HTTPS proxy, when one is set) accepts a TCP
    connection within ``timeout`` seconds, name lookup included."""
    from huggingface_hub import constants

    proxy = next((os.environ[v] for v in PROXY_VARIABLES if os.environ.get(v)), None)
    target = urlsplit(proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else constants.ENDPOINT)
    port = target.port or (443 if target.scheme == "https" else 80)
    answered: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((target.hostname, port), timeout=timeout):
                answered.append(True)
        except (OSError, UnicodeError):
            answered.append(False)

    worker = threading.Thread(target=attempt, daemon=True)  # a name lookup has no timeout of its own
    worker.start()
    worker.join(timeout)
    return bool(answered and answered[0])


def _from_hub(load: Callable[[bool], T], name: str, what: str) -> T:
    """``load(local_only)`` for the hub id ``name``: from the local Hugging Face cache first, then
    from the hub when it can be reached; a ConfigError with the folder hint otherwise."""
    try:
        return load(True)
    except (OSError, ValueError):
        pass
    _unfetchable(name, what)
    try:
        return load(False)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"cannot load the {what} {name!r} from the Hugging Face hub ({_one_line(error)}); "
            + FOLDER_HINT.format(name=name)
        ) from None


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A fast tokenizer from a local model folder or a hub name (never running code from it)."""
    from transformers import AutoTokenizer

    check_model_folder(name_or_path)

    def load(local_only: bool):
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False, local_files_only=local_only)

    if is_local_path(name_or_path):
        try:
            tokenizer = load(True)
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception for a damaged file
            raise ConfigError(f"cannot load a tokenizer from {name_or_path}: {_one_line(e)[:300]}") from None
    else:
        tokenizer = _from_hub(load, name_or_path, "tokenizer")
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
        return AutoModel.from_pretrained(source, local_files_only=local_only, trust_remote_code=False)
    config = AutoConfig.from_pretrained(source, local_files_only=local_only, trust_remote_code=False)
    return AutoModel.from_config(config, trust_remote_code=False)


def load_encoder_model(name: str, pretrained: bool = True) -> PreTrainedModel:
    """A Hugging Face encoder from a local folder or hub name: its pretrained weights, or random
    weights (``pretrained=False``) when a checkpoint will supply them. No code from the folder runs."""
    check_model_folder(name, need_weights=pretrained)
    if is_local_path(name):
        try:
            return _hf_load(str(Path(name).expanduser()), pretrained, local_only=True)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"cannot load the encoder from the folder {name}: {_one_line(error)[:300]}") from None
    return _from_hub(lambda local_only: _hf_load(name, pretrained, local_only), name, "encoder")


def save_model_files(source: str, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """The encoder's config and tokenizer into ``folder`` (its weights live in the run's weights file)."""
    from transformers import AutoConfig

    AutoConfig.from_pretrained(source, trust_remote_code=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
