"""torchvision CNN backbones cut after their last convolutional stage (ResNet-152, ResNet-50, VGG-16).

Paper, section 2.2: "we keep the output from the last convolutional layer in a pretrained
152-layer ResNet", a 7 x 7 grid of 2048-d vectors for a 224 x 224 input. A ResNet is cut after
``layer4`` (average pooling and the classifier dropped); VGG-16 after ``features`` (its last max
pool: 7 x 7 x 512, the regions of ACN/AdaCAN). The trunk runs in eval mode, where BatchNorm uses
its running statistics; a frozen backbone left in train mode would normalise each batch by its
own statistics and make an image's features depend on its batch-mates.

In eval mode a BatchNorm is a fixed per-channel affine map, so a ResNet's are folded into the
convolution before each (:func:`fold_batchnorm`): the same function up to float rounding (~1e-6
relative), about 20% less CPU time for ResNet-152. The manifest's ``compute`` records it.

``--weights`` chooses the parameters:

- ``imagenet``: torchvision's IMAGENET1K_V1 weights (for ResNet-152 the original release, the one
  available when the paper was written), fetched through torchvision's own loader, which caches
  the file under ``$TORCH_HOME/hub/checkpoints`` and checks its hash.
- a path: a local ``state_dict`` of the torchvision network (the classifier may be absent);
  identified in the manifest by the file's sha256.
- ``random``: a fixed-seed random initialisation, for tests and offline demos only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision import models

from umt.pipeline.errors import ConfigError
from umt.pipeline.vision.backbones import WEIGHTS_RANDOM
from umt.pipeline.vision.grid_extractor import RANDOM_SEED, GridExtractor, file_sha256, seeded_init

if TYPE_CHECKING:
    from umt.pipeline.vision.backbones import Backbone

WEIGHTS_IMAGENET = "imagenet"
#: How torchvision's ResNet names a convolution and the BatchNorm that follows it (conv1/bn1, ...).
CONV_PREFIX, BN_PREFIX = "conv", "bn"


@dataclass(frozen=True)
class Arch:
    """What umt needs of one torchvision network: its constructor and ImageNet weights, the
    children kept in order (everything before pooling), the classifier's key prefix a state_dict
    may leave out, and how a random initialisation is made and recorded."""

    build: Any
    imagenet: Any
    trunk: tuple[str, ...]
    classifier: str
    random_kwargs: tuple[tuple[str, Any], ...] = ()
    random_init: str = "torchvision default"


RESNET_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
#: Zero-initialised residual branches keep random activations in float16 range.
RESNET_RANDOM = (("zero_init_residual", True),)
RESNET_INIT = "torchvision default, zero_init_residual"
ARCHS = {
    "resnet152": Arch(
        models.resnet152, models.ResNet152_Weights.IMAGENET1K_V1, RESNET_TRUNK, "fc.", RESNET_RANDOM, RESNET_INIT
    ),
    "resnet50": Arch(
        models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1, RESNET_TRUNK, "fc.", RESNET_RANDOM, RESNET_INIT
    ),
    "vgg16": Arch(models.vgg16, models.VGG16_Weights.IMAGENET1K_V1, ("features",), "classifier."),
}


def weights_identity(backbone: Backbone, spec: str) -> dict[str, Any]:
    """What the manifest records for ``--weights spec``; checks a path exists before any work."""
    arch = ARCHS[backbone.arch]
    if spec == WEIGHTS_IMAGENET:
        return {"source": "torchvision", "name": str(arch.imagenet), "url": arch.imagenet.url}
    if spec == WEIGHTS_RANDOM:
        return {"source": "random", "seed": RANDOM_SEED, "init": arch.random_init}
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"--weights {spec}: no such file; use 'imagenet', 'random' or the path of a "
            f"torchvision {backbone.arch} state_dict"
        )
    return {"source": "file", "sha256": file_sha256(path)}


def rebuild_spec(backbone: Backbone, recorded: Any, option: str) -> str:
    """The ``--weights`` that rebuild what a manifest records: imagenet and random by name; a
    file only the user has, so a ConfigError names ``option`` to pass it with."""
    source = recorded.get("source") if isinstance(recorded, Mapping) else None
    if source == "torchvision":
        return WEIGHTS_IMAGENET
    if source == "random":
        return WEIGHTS_RANDOM
    if source == "file":
        raise ConfigError(
            f"the features were extracted with a {backbone.name} state_dict file: pass that file with {option} "
            "(its sha256 is checked against the cache's)"
        )
    raise ConfigError(f"the cache's {backbone.name} weights record is not one umt writes: {recorded!r:.80}")


def _imagenet_state(backbone: Backbone) -> Mapping[str, Any]:
    weights = ARCHS[backbone.arch].imagenet
    try:
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad hash is a RuntimeError
        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
        raise ConfigError(
            f"could not get the ImageNet weights for {backbone.name} ({e}). On a machine without network, "
            f"download {weights.url} elsewhere and pass it with --weights PATH (or copy it into {checkpoints}/)"
        ) from e


def _file_state(path: Path) -> Mapping[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the file is the user's: any parse failure is a bad --weights
        raise ConfigError(
            f"--weights {path}: not a PyTorch state_dict file ({type(e).__name__}: {e}); "
            "save one with torch.save(model.state_dict(), PATH)"
        ) from e
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"--weights {path}: the file holds a {type(state).__name__}, not a state_dict")
    return state


def _load_into(model: nn.Module, state: Mapping[str, Any], backbone: Backbone, origin: str) -> None:
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ConfigError(f"--weights {origin}: does not fit torchvision's {backbone.arch} ({e})") from e
    missing = [k for k in missing if not k.startswith(ARCHS[backbone.arch].classifier)]
    if missing or unexpected:
        raise ConfigError(
            f"--weights {origin}: not a torchvision {backbone.arch} state_dict "
            f"(missing keys {missing[:5]}, unexpected keys {list(unexpected)[:5]})"
        )


def _is_conv_bn(first: nn.Module, second: nn.Module) -> bool:
    return isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d)


def fold_batchnorm(model: nn.Module) -> None:
    """Fold every BatchNorm of a torchvision ResNet (eval mode) into the convolution before it.

    The pairs are ``conv<i>``/``bn<i>`` children (stem and bottlenecks) and the two-module
    ``downsample`` sequences (convolution, BatchNorm); each BatchNorm becomes an Identity.
    """
    for parent in list(model.modules()):
        for name, conv in list(parent.named_children()):
            bn_name = BN_PREFIX + name.removeprefix(CONV_PREFIX)
            bn = getattr(parent, bn_name, None)
            if name.startswith(CONV_PREFIX) and bn is not None and _is_conv_bn(conv, bn):
                setattr(parent, name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
        if isinstance(parent, nn.Sequential) and len(parent) == 2 and _is_conv_bn(parent[0], parent[1]):
            parent[0] = fuse_conv_bn_eval(parent[0], parent[1])
            parent[1] = nn.Identity()


def build(backbone: Backbone, spec: str) -> GridExtractor:
    """The frozen, eval-mode grid extractor of ``backbone`` for ``--weights spec``, on the CPU."""
    arch = ARCHS[backbone.arch]
    if spec == WEIGHTS_RANDOM:
        with seeded_init():
            model = arch.build(weights=None, **dict(arch.random_kwargs))
    else:
        model = arch.build(weights=None)
        state = _imagenet_state(backbone) if spec == WEIGHTS_IMAGENET else _file_state(Path(spec))
        _load_into(model, state, backbone, spec)
    trunk = nn.Sequential(OrderedDict((name, getattr(model, name)) for name in arch.trunk)).eval()
    if backbone.compute:
        fold_batchnorm(trunk)
    if any(isinstance(m, nn.BatchNorm2d) for m in trunk.modules()):
        raise RuntimeError(f"a BatchNorm of {backbone.name} was left unfolded: the layout is not the one expected")
    extractor = GridExtractor(trunk, backbone.grid, backbone.mean, backbone.std).eval().requires_grad_(False)
    return extractor.to(memory_format=torch.channels_last)
