"""Vision-transformer backbones from transformers: CLIP's vision tower and ViT, read as patch grids.

A ViT cuts a 224 x 224 image into P x P patches (P = 32 for CLIP ViT-B/32: a 7 x 7 grid; P = 16
for ViT-B/16: 14 x 14) and its last hidden state holds one vector per patch after the class
token. The grid is those patch vectors laid back on their rows and columns; the class token is
dropped (it belongs to no cell, and the fusions and ``--explain`` read the grid as a spatial map).
Which normalisation the vectors carry is the backbone's ``layer``: CLIP's last hidden state comes
before its post-layernorm (which CLIP applies to the class token only), ViT's after its final
layernorm.

``--weights``:

- a Hugging Face name (``openai/clip-vit-base-patch32``, the default): resolved through
  ``huggingface_hub``'s cache, ``config.json`` and safetensors weights only (never pickles, never
  code: no ``trust_remote_code``); with ``HF_HUB_OFFLINE=1`` a cached snapshot loads and a missing
  one fails with one line;
- a local folder with ``config.json`` and ``*.safetensors``;
- ``random``: the architecture's default configuration, initialised with a fixed seed (tests, demos).

The manifest records the name (for a hub model), the snapshot's commit and the sha256 of the
config and weights files, so a cache says exactly which weights made it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from umt.pipeline.errors import ConfigError
from umt.pipeline.vision.backbones import WEIGHTS_RANDOM
from umt.pipeline.vision.grid_extractor import RANDOM_SEED, GridExtractor, file_sha256, seeded_init

if TYPE_CHECKING:
    from umt.pipeline.vision.backbones import Backbone

CONFIG_FILE = "config.json"
WEIGHTS_PATTERN = "*.safetensors"


def _classes(arch: str):
    """(config class, model class, model keyword arguments) of a registered architecture."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, ViTConfig, ViTModel

    return {
        "clip_vision_model": (CLIPVisionConfig, CLIPVisionModel, {}),
        "vit": (ViTConfig, ViTModel, {"add_pooling_layer": False}),
    }[arch]


def _files(folder: Path) -> list[Path]:
    """The files a folder's weights are identified by: its config and safetensors weights."""
    weights = sorted(folder.glob(WEIGHTS_PATTERN))
    if not (folder / CONFIG_FILE).is_file() or not weights:
        raise ConfigError(
            f"--weights {folder}: expected {CONFIG_FILE} and safetensors weights ({WEIGHTS_PATTERN}) in the folder; "
            "umt loads no pickled weights"
        )
    return [folder / CONFIG_FILE, *weights]


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def _snapshot(name: str) -> Path:
    """The local snapshot of hub model ``name`` (downloaded unless offline): config and safetensors only."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    try:
        folder = snapshot_download(name, allow_patterns=[CONFIG_FILE, WEIGHTS_PATTERN], local_files_only=offline)
    except HFValidationError:
        raise ConfigError(f"--weights {name}: no such folder, and not a Hugging Face name (owner/name)") from None
    except Exception as e:  # network, missing repository or missing cache: all the user's to fix
        hint = " (HF_HUB_OFFLINE=1: download it once on a machine with network, or pass a local folder)"
        raise ConfigError(
            f"--weights {name}: could not get it from the Hugging Face hub{hint if offline else ''}: {type(e).__name__}"
        ) from e
    return Path(folder)


def _resolve(spec: str) -> tuple[Path, dict[str, Any]]:
    """The folder ``spec`` names and what the manifest records of it (before the digest)."""
    path = Path(spec)
    if path.is_dir():
        return path, {"source": "folder"}
    if path.exists() or spec.startswith((".", "/", "~")):
        raise ConfigError(f"--weights {spec}: not a folder with {CONFIG_FILE} and safetensors weights")
    folder = _snapshot(spec)
    return folder, {"source": "huggingface", "name": spec, "revision": folder.name}


def weights_identity(backbone: Backbone, spec: str) -> dict[str, Any]:
    """What the manifest records for ``--weights spec``; resolves it before any work."""
    if spec == WEIGHTS_RANDOM:
        return {"source": "random", "seed": RANDOM_SEED, "init": f"transformers default {backbone.arch} config"}
    folder, identity = _resolve(spec)
    return {**identity, "sha256": _digest(_files(folder))}


def rebuild_spec(backbone: Backbone, recorded: Any, option: str) -> str:
    """The ``--weights`` that rebuild what a manifest records: random, or the hub name; a folder
    only the user has, so a ConfigError names ``option`` to pass it with."""
    source = recorded.get("source") if isinstance(recorded, Mapping) else None
    if source == "random":
        return WEIGHTS_RANDOM
    if source == "huggingface" and isinstance(recorded.get("name"), str):
        return recorded["name"]
    if source == "folder":
        raise ConfigError(
            f"the features were extracted with {backbone.name} weights from a local folder: pass that folder with "
            f"{option} (its sha256 is checked against the cache's)"
        )
    raise ConfigError(f"the cache's {backbone.name} weights record is not one umt writes: {recorded!r:.80}")


class PatchTrunk(nn.Module):
    """A ViT as a trunk: pixels (B, 3, H_in, W_in) -> patch map (B, C, rows, cols), class token dropped."""

    def __init__(self, model: nn.Module, rows: int, cols: int):
        super().__init__()
        self.model = model
        self.rows, self.cols = rows, cols

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.model(pixel_values=pixels.contiguous()).last_hidden_state  # (B, 1 + rows*cols, C)
        patches = hidden[:, 1:]  # (B, rows*cols, C), row-major like the patch convolution's output
        grid = patches.reshape(patches.shape[0], self.rows, self.cols, patches.shape[-1])  # (B, rows, cols, C)
        return grid.permute(0, 3, 1, 2)  # (B, C, rows, cols), channels_last in memory


def _check_config(backbone: Backbone, config: Any, spec: str) -> None:
    """The configuration gives the backbone's grid: image size / patch size cells of hidden size."""
    height, width = backbone.resize.size
    patch = config.patch_size
    found = (height // patch, width // patch, config.hidden_size)
    image = config.image_size
    if found != backbone.grid.stored or image != height:
        raise ConfigError(
            f"--weights {spec}: a {config.model_type} of {image}-pixel images, {patch}-pixel patches and "
            f"{config.hidden_size} channels gives {found[0]}x{found[1]}x{found[2]} grids, not {backbone.name}'s "
            f"{backbone.grid}"
        )


def build(backbone: Backbone, spec: str) -> GridExtractor:
    """The frozen, eval-mode grid extractor of ``backbone`` for ``--weights spec``, on the CPU."""
    config_class, model_class, kwargs = _classes(backbone.arch)
    if spec == WEIGHTS_RANDOM:
        config = config_class()
        _check_config(backbone, config, spec)
        with seeded_init():
            model = model_class(config, **kwargs)
    else:
        folder, _ = _resolve(spec)
        _files(folder)
        try:
            config = config_class.from_pretrained(folder)
            _check_config(backbone, config, spec)
            model = model_class.from_pretrained(folder, config=config, use_safetensors=True, **kwargs)
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"--weights {spec}: not {backbone.name} weights transformers can load ({e})") from e
    trunk = PatchTrunk(model.eval(), backbone.grid.rows, backbone.grid.cols)
    extractor = GridExtractor(trunk, backbone.grid, backbone.mean, backbone.std).eval().requires_grad_(False)
    return extractor
