"""The registry of image backbones: the names ``umt extract-images --backbone NAME`` accepts.

A backbone is a frozen network that turns a 224 x 224 image into a grid of block vectors, plus
the preprocessing that feeds it. Each entry says everything a cache records about it (its
grid shape, the layer read, the preprocessing) and which module builds it: ``torchvision``
(``umt.pipeline.vision.cnn``: a CNN cut after its last convolutional stage) or
``transformers`` (``umt.pipeline.vision.patches``: a ViT's patch tokens, the class token
dropped, since it belongs to no cell of the grid and the grid stays the spatial map the
fusions attend over and ``--explain`` draws).

- ``resnet152``: 7 x 7 x 2048, torchvision's IMAGENET1K_V1; UMT (Yu et al., 2020), the paper umt
  implements, and the default.
- ``resnet50``: 7 x 7 x 2048, torchvision's IMAGENET1K_V1; HVPNeT (Chen et al., 2022).
- ``vgg16``: 7 x 7 x 512 (the last max pool), torchvision's IMAGENET1K_V1; ACN (Zhang et al.,
  2018), the AdaCAN baseline.
- ``clip-vit-b32``: 7 x 7 x 768, ``openai/clip-vit-base-patch32``; MKGformer (Chen et al., 2022).
- ``vit-b16``: 14 x 14 x 768, ``google/vit-base-patch16-224-in21k``: the finest grid here.

Preprocessing is umt's for every backbone (``umt.pipeline.vision.decode``): the whole image
squashed to 224 x 224, no crop, with the backbone's own filter, mean and std. CLIP's and
ImageNet's own pipelines resize the shorter side and crop the centre; umt keeps the whole image,
because an entity's picture may sit at its edge, and so that cell (r, c) of every grid covers
the same part of the picture, which the overlay relies on. The choice is recorded in each
manifest's ``preprocessing`` (``"crop": null``).

This module is light (no torch): the command line checks a name in milliseconds. Adding a
backbone is one :class:`Backbone` entry (and, for a new family, its builder module).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from umt.cache.grid import GridShape, GridShapeError
from umt.pipeline.errors import ConfigError, did_you_mean
from umt.pipeline.vision.decode import Resize, preprocessing

if TYPE_CHECKING:
    from umt.pipeline.vision.grid_extractor import GridExtractor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
#: ``--weights random``: the architecture with a fixed-seed random initialisation (tests, demos).
WEIGHTS_RANDOM = "random"
#: The backbone of the paper, of every run trained before backbones were a choice, and the default.
DEFAULT_BACKBONE = "resnet152"
#: The module that builds and identifies each family's backbones.
FAMILIES = {"torchvision": "umt.pipeline.vision.cnn", "transformers": "umt.pipeline.vision.patches"}


@dataclass(frozen=True)
class Backbone:
    """One registered backbone. ``arch`` is the family module's name for the network (a
    torchvision constructor, a transformers model type); ``default_weights`` what ``--weights``
    means when not given."""

    name: str
    family: str
    arch: str
    grid: GridShape
    layer: str
    default_weights: str
    weights_help: str
    used_by: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: Resize = Resize()
    #: What the manifest's ``compute`` records beside the device (e.g. BatchNorm folding).
    compute: tuple[tuple[str, str], ...] = ()

    @property
    def preprocessing(self) -> dict[str, Any]:
        return preprocessing(self.resize, self.mean, self.std)

    def _family(self):
        return importlib.import_module(FAMILIES[self.family])

    def weights_identity(self, spec: str) -> dict[str, Any]:
        """What the manifest records for ``--weights spec`` (checked before any work)."""
        return self._family().weights_identity(self, spec)

    def build(self, spec: str) -> GridExtractor:
        """The frozen, eval-mode grid extractor with the weights ``spec``, on the CPU."""
        return self._family().build(self, spec)

    def rebuild_spec(self, recorded: Any, option: str) -> str:
        """The ``--weights`` that rebuild the weights a manifest records, or a ConfigError saying
        which option passes them (a file or folder only the user has)."""
        return self._family().rebuild_spec(self, recorded, option)


_REGISTRY: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    if backbone.name in _REGISTRY:
        raise ValueError(f"backbone {backbone.name!r} is registered twice")
    if backbone.grid.rows != backbone.grid.cols:  # a model records blocks only; the overlay lays them on a square
        raise ValueError(f"backbone {backbone.name!r}: the grid must be square, got {backbone.grid}")
    if backbone.family not in FAMILIES:
        raise ValueError(f"backbone {backbone.name!r}: unknown family {backbone.family!r}")
    _REGISTRY[backbone.name] = backbone
    return backbone


def backbone_names() -> list[str]:
    return list(_REGISTRY)


def get_backbone(name: str) -> Backbone:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown backbone {name!r}{did_you_mean(name, _REGISTRY)}; known: {', '.join(_REGISTRY)}"
        ) from None


def recorded_backbone(manifest: Any, origin: str) -> Backbone:
    """The registered backbone a features manifest (a cache's, or a run's pin of it) names, checked
    against what the manifest says of it: a manifest that says vgg16 over 2048 channels was not
    written by umt. A manifest recording its grid shape records its layer too; the pins of runs
    trained before backbones were a choice record neither, and are taken as the backbone's.
    ``origin`` begins each message (the file, or "the run's features")."""
    name = manifest.get("backbone") if isinstance(manifest, dict) else None
    if not isinstance(name, str):
        raise ConfigError(f"{origin}: the manifest names no image backbone (found {name!r:.40})")
    try:
        backbone = get_backbone(name)
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None
    if "grid" in manifest or "channels" in manifest:
        try:
            shape = GridShape.from_manifest(manifest)
        except GridShapeError as e:
            raise ConfigError(f"{origin}: a damaged grid shape ({e})") from None
        layer = manifest.get("layer")
    else:
        shape, layer = backbone.grid, backbone.layer
    if shape != backbone.grid or layer != backbone.layer:
        raise ConfigError(
            f"{origin}: a {name} cache holds {backbone.grid} grids of {backbone.layer!r}, this one says "
            f"{shape} of {layer!r:.60}"
        )
    return backbone


FOLDED = (("batchnorm", "folded into the preceding convolution"),)
TORCHVISION_WEIGHTS = "imagenet (torchvision's download), random, or a torchvision state_dict PATH"
HF_WEIGHTS = "a Hugging Face name or local folder (safetensors weights), or random"

register(
    Backbone(
        "resnet152",
        "torchvision",
        "resnet152",
        GridShape(7, 7, 2048),
        "layer4",
        "imagenet",
        TORCHVISION_WEIGHTS,
        "UMT (Yu et al., 2020), the paper umt implements",
        compute=FOLDED,
    )
)
register(
    Backbone(
        "resnet50",
        "torchvision",
        "resnet50",
        GridShape(7, 7, 2048),
        "layer4",
        "imagenet",
        TORCHVISION_WEIGHTS,
        "HVPNeT (Chen et al., 2022), which reads its stages as a visual prefix pyramid",
        compute=FOLDED,
    )
)
register(
    Backbone(
        "vgg16",
        "torchvision",
        "vgg16",
        GridShape(7, 7, 512),
        "features (after the last max pool)",
        "imagenet",
        TORCHVISION_WEIGHTS,
        "ACN (Zhang et al., 2018), the AdaCAN baseline: VGG-16's 7 x 7 x 512 regions",
    )
)
register(
    Backbone(
        "clip-vit-b32",
        "transformers",
        "clip_vision_model",
        GridShape(7, 7, 768),
        "last_hidden_state, patch tokens (class token dropped; before CLIP's post-layernorm)",
        "openai/clip-vit-base-patch32",
        HF_WEIGHTS,
        "MKGformer (Chen et al., 2022) and the CLIP-based MNER models after it",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        resize=Resize((224, 224), "bicubic"),
    )
)
register(
    Backbone(
        "vit-b16",
        "transformers",
        "vit",
        GridShape(14, 14, 768),
        "last_hidden_state, patch tokens (class token dropped; after ViT's final layernorm)",
        "google/vit-base-patch16-224-in21k",
        HF_WEIGHTS,
        "a 14 x 14 patch grid, four times finer than the others",
        mean=HALF,
        std=HALF,
    )
)
