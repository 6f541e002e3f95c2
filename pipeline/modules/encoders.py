"""Sentence encoders: word pieces -> contextual piece states C (section 2.2), and the word gather.

The encoder is any Hugging Face encoder, named on the hub or stored in a local folder, and is
fine-tuned with the rest of the model. A hub name is looked up in the local Hugging Face cache
first; when it is not there and the machine is offline (HF_HUB_OFFLINE=1) loading fails at once
with a ConfigError that says how to bring the model in as a folder.
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from pipeline.errors import ConfigError


def gather_words(pieces: torch.Tensor, word_index: torch.Tensor) -> torch.Tensor:
    """(B, L, d) piece states -> (B, W, d) states of each word's first piece.

    The CRF labels words, not pieces (only a word's first piece carries its label), so every
    head reads word vectors. Padding words gather position 0 ([CLS]) and are masked later.
    """
    index = word_index.unsqueeze(-1).expand(-1, -1, pieces.shape[-1])  # (B, W, d)
    return pieces.gather(1, index)  # (B, W, d)


def _looks_like_path(name: str) -> bool:
    """A hub name is ``name`` or ``owner/name``; anything else is meant as a folder."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


FOLDER_HINT = (
    "on a machine with network run `huggingface-cli download {name} --local-dir DIR` "
    "(or save_pretrained(DIR)), copy DIR here and pass --encoder DIR"
)


class TextEncoder(nn.Module):
    """A Hugging Face encoder returning its last hidden states C = (c_0 .. c_{n+1})."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        self.hidden_size: int = model.config.hidden_size  # d

    @property
    def hf_config(self) -> PretrainedConfig:
        """The encoder's own config: save it beside a checkpoint to rebuild the encoder offline."""
        return self.model.config

    @classmethod
    def load(cls, name: str, pretrained: bool = True) -> TextEncoder:
        """Build from a local folder or hub name: its pretrained weights, or random weights
        (``pretrained=False``) when a checkpoint will supply them."""
        folder = Path(name).expanduser()
        if folder.is_dir():
            if not (folder / "config.json").is_file():
                raise ConfigError(f"encoder folder {name} has no config.json (not a Hugging Face model)")
            try:
                return cls(_hf_load(str(folder), pretrained, local_only=True))
            except (OSError, ValueError) as error:
                raise ConfigError(f"cannot load the encoder from the folder {name}: {error}") from error
        if folder.exists() or _looks_like_path(name):
            raise ConfigError(f"encoder folder {name} does not exist (or is not a folder)")
        try:  # the local Hugging Face cache first: no network wait when the model is there
            return cls(_hf_load(name, pretrained, local_only=True))
        except (OSError, ValueError) as error:
            if huggingface_hub.is_offline_mode():
                raise ConfigError(
                    f"cannot load the encoder {name!r}: it is not a local folder nor in the local Hugging "
                    "Face cache, and this machine is offline (HF_HUB_OFFLINE); "
                    + FOLDER_HINT.format(name=name)
                ) from error
        try:
            return cls(_hf_load(name, pretrained, local_only=False))
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"cannot load the encoder {name!r} from the Hugging Face hub ({error}); "
                + FOLDER_HINT.format(name=name)
            ) from error

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) piece ids and mask -> (B, L, d) contextual piece states C."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _hf_load(source: str, pretrained: bool, local_only: bool) -> PreTrainedModel:
    if pretrained:
        return AutoModel.from_pretrained(source, local_files_only=local_only)
    return AutoModel.from_config(AutoConfig.from_pretrained(source, local_files_only=local_only))
