"""From an image file to the backbone's input pixels, or to a status that says why not.

Preprocessing (paper, section 2.2: "resize it to 224x224 pixels"), deterministic, recorded in
every cache manifest as :data:`PREPROCESSING`:

1. Decode the first frame with Pillow; the file's content decides the format, not its name
   (a PNG named .jpg is fine). EXIF orientation is not applied, as in the reference
   implementation and torchvision's ImageNet pipeline.
2. Convert to 8-bit RGB. Transparent images (RGBA, LA, palette or grey with transparency) are
   composited over white rather than having the alpha dropped, which would expose whatever
   colour the invisible pixels happen to hold. 16-bit grey is scaled to 8 bits (v * 255 / 65535)
   rather than clipped, which is what a plain ``convert`` does and would turn most of the
   image white. CMYK, grey, bilevel and palette images use Pillow's conversion.
3. Resize to 224x224 (aspect ratio not kept, no crop) with Pillow's bilinear filter, which
   antialiases when shrinking.
4. In the model (see ``umt.pipeline.vision.backbone``): scale to [0, 1], subtract the ImageNet mean, divide by
   the ImageNet std.

Images larger than :data:`MAX_PIXELS` are not decoded and get status unreadable with their
size as the reason: decoding one would take gigabytes in every worker, Twitter serves nothing
near that size, and such a file is far more likely a decompression bomb than a photo. Every
other failure (empty file, truncated data, not an image) is caught here as well, so one bad
file costs one image, never the run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from umt.cache.format import Status
from umt.pipeline.data.images import resolve_image

IMAGE_SIZE = (224, 224)  # (width, height)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: 64 megapixels (8192 x 8192): 16 times Twitter's largest image, 192 MB once decoded to RGB.
MAX_PIXELS = 8192 * 8192
ALPHA_BACKGROUND = (255, 255, 255)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
UINT16_MAX = 65535
UINT8_MAX = 255

PREPROCESSING = {
    "decoder": "Pillow, first frame, EXIF orientation not applied",
    "to_rgb": "alpha composited over white; 16-bit scaled to 8-bit; other modes by Pillow convert",
    "resize": [IMAGE_SIZE[1], IMAGE_SIZE[0]],  # (height, width) like a tensor
    "interpolation": "bilinear",
    "antialias": True,
    "crop": None,
    "scale": 1 / UINT8_MAX,
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
    "max_pixels": MAX_PIXELS,
}


@dataclass
class Decoded:
    """One image's outcome: ``pixels`` (224, 224, 3) uint8 RGB when ``status`` is OK, else None."""

    pixels: np.ndarray | None
    status: Status
    reason: str = ""


def _unreadable(reason: str) -> Decoded:
    return Decoded(None, Status.UNREADABLE, reason)


def _scale_sixteen_bit(img: Image.Image) -> Image.Image:
    values = np.clip(np.asarray(img, dtype=np.int64), 0, UINT16_MAX)
    eight = (values * UINT8_MAX + UINT16_MAX // 2) // UINT16_MAX  # rounded v * 255 / 65535
    return Image.fromarray(eight.astype(np.uint8))  # 2-D uint8: mode L


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB, following the rules in the module docstring."""
    if img.mode in SIXTEEN_BIT_MODES:
        return _scale_sixteen_bit(img).convert("RGB")
    if img.mode == "F":
        raise ValueError("floating-point pixels (mode F) have no defined 8-bit range")
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, UINT8_MAX))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode(path: Path) -> Decoded:
    """Decode and resize the file at ``path``; any failure becomes an unreadable status."""
    try:
        size = path.stat().st_size
    except OSError as e:
        return _unreadable(f"cannot read file: {e}")
    if size == 0:
        return _unreadable("empty file (0 bytes)")
    try:
        # Pillow's warnings concern metadata or the bomb check we do ourselves; the status
        # and reason are the report, so keep them out of the progress display.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    return _unreadable(
                        f"{width}x{height} pixels exceeds the limit of {MAX_PIXELS} (decompression-bomb guard)"
                    )
                rgb = to_rgb(img).resize(IMAGE_SIZE, Image.Resampling.BILINEAR)
                return Decoded(np.array(rgb), Status.OK)  # a writable copy, safe for torch.from_numpy
    except Image.DecompressionBombError as e:
        return _unreadable(f"decompression-bomb guard: {e}")
    except UnidentifiedImageError:
        return _unreadable(f"not an image format Pillow recognises ({size} bytes)")
    except Exception as e:  # untrusted input: any decoder error costs this image only
        return _unreadable(f"{type(e).__name__}: {e}")


def load(images_dir: Path, image_id: str) -> Decoded:
    """The image for ``image_id`` in ``images_dir`` (see ``resolve_image``), decoded."""
    path = resolve_image(images_dir, image_id)
    if path is None:
        return Decoded(None, Status.MISSING, f"no file for this id in {images_dir}")
    return decode(path)
