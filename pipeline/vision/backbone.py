"""The frozen visual backbone: torchvision ResNet-152 up to its last convolutional block.

Paper, section 2.2: "we keep the output from the last convolutional layer in a pretrained
152-layer ResNet", a 7 x 7 grid of 2048-d vectors for a 224 x 224 input. So the network is cut
after ``layer4`` (average pooling and the classifier are dropped) and run in eval mode, where
BatchNorm uses its running statistics; a frozen backbone left in train mode would normalise
each batch by its own statistics and make an image's features depend on its batch-mates.

In eval mode a BatchNorm is a fixed per-channel affine map, so it is folded into the
convolution before it (:func:`fold_batchnorm`): the same function up to float rounding
(~1e-6 relative), with 155 fewer passes over the activations -- about 20% less CPU time for
ResNet-152. The manifest's ``compute`` records it.

``--weights`` chooses the parameters:

- ``imagenet``: torchvision's IMAGENET1K_V1 weights (the original ResNet-152 release, the one
  available when the paper was written), fetched through torchvision's own loader, which
  caches the file under ``$TORCH_HOME/hub/checkpoints`` and checks its hash.
- a path: a local ``state_dict`` for torchvision's ``resnet152`` (the classifier ``fc.*`` may
  be absent); identified in the manifest by the file's sha256.
- ``random``: a fixed-seed random initialisation, for tests and offline demos only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import ResNet152_Weights, resnet152

from umt.pipeline.errors import ConfigError
from umt.pipeline.vision.decode import IMAGENET_MEAN, IMAGENET_STD, UINT8_MAX

BACKBONE = "resnet152"
LAYER = "layer4"
#: The modules kept, in order: everything before average pooling.
TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
IMAGENET_WEIGHTS = ResNet152_Weights.IMAGENET1K_V1
RANDOM_SEED = 0
WEIGHTS_IMAGENET = "imagenet"
WEIGHTS_RANDOM = "random"
HASH_BLOCK = 1 << 20
#: Keys of the classifier, which the trunk does not use; a state_dict may leave them out.
CLASSIFIER_PREFIX = "fc."
#: Recorded in the manifest's ``compute``: folding changes the last bits of the grids.
BATCHNORM = "folded into the preceding convolution"
#: How torchvision's ResNet names a convolution and the BatchNorm that follows it (conv1/bn1, ...).
CONV_PREFIX, BN_PREFIX = "conv", "bn"


class GridExtractor(nn.Module):
    """uint8 RGB pixels in, the backbone's grid out, channels last.

    Normalisation lives in the module so that workers ship uint8 (4 times less data than
    float) and, on a GPU, the arithmetic happens on the device.
    """

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # An NHWC tensor seen as NCHW is exactly the channels_last layout: no copy.
        x = pixels.permute(0, 3, 1, 2).float()  # (B, 3, 224, 224) channels_last
        x = x.div(UINT8_MAX).sub(self.mean).div(self.std)  # same arithmetic as ToTensor + Normalize
        x = x.contiguous(memory_format=torch.channels_last)
        grid = self.trunk(x)  # (B, 2048, 7, 7) channels_last
        return grid.permute(0, 2, 3, 1)  # (B, 7, 7, 2048), contiguous in memory


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(spec: str) -> dict[str, Any]:
    """What the manifest records for ``--weights spec``; checks a path exists before any work."""
    if spec == WEIGHTS_IMAGENET:
        return {"source": "torchvision", "name": str(IMAGENET_WEIGHTS), "url": IMAGENET_WEIGHTS.url}
    if spec == WEIGHTS_RANDOM:
        return {"source": "random", "seed": RANDOM_SEED, "init": "torchvision default, zero_init_residual"}
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"--weights {spec}: no such file; use 'imagenet', 'random' or the path of a ResNet-152 state_dict"
        )
    return {"source": "file", "sha256": file_sha256(path)}


def _imagenet_state() -> Mapping[str, Any]:
    try:
        return IMAGENET_WEIGHTS.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad hash is a RuntimeError
        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
        raise ConfigError(
            f"could not get the ImageNet weights for ResNet-152 ({e}). On a machine without network, "
            f"download {IMAGENET_WEIGHTS.url} elsewhere and pass it with --weights PATH "
            f"(or copy it into {checkpoints}/)"
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


def _load_into(model: nn.Module, state: Mapping[str, Any], origin: str) -> None:
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ConfigError(f"--weights {origin}: does not fit torchvision's resnet152 ({e})") from e
    missing = [k for k in missing if not k.startswith(CLASSIFIER_PREFIX)]
    if missing or unexpected:
        raise ConfigError(
            f"--weights {origin}: not a torchvision resnet152 state_dict "
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


def build_extractor(spec: str) -> GridExtractor:
    """The frozen, eval-mode grid extractor for ``--weights spec``, on the CPU."""
    if spec == WEIGHTS_RANDOM:
        with torch.random.fork_rng(devices=[]):  # fixed weights without touching the caller's RNG
            torch.manual_seed(RANDOM_SEED)
            # Zero-initialised residual branches keep random activations in float16 range.
            model = resnet152(weights=None, zero_init_residual=True)
    else:
        model = resnet152(weights=None)
        if spec == WEIGHTS_IMAGENET:
            _load_into(model, _imagenet_state(), spec)
        else:
            _load_into(model, _file_state(Path(spec)), spec)
    trunk = nn.Sequential(OrderedDict((name, getattr(model, name)) for name in TRUNK)).eval()
    fold_batchnorm(trunk)
    if any(isinstance(m, nn.BatchNorm2d) for m in trunk.modules()):
        raise RuntimeError("a BatchNorm was left unfolded: the ResNet layout is not the one expected")
    extractor = GridExtractor(trunk).eval().requires_grad_(False)
    return extractor.to(memory_format=torch.channels_last)
