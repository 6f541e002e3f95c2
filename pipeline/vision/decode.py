"""From an image file to the backbone's input pixels, or to a status that says why not.

Preprocessing (paper, section 2.2: "resize it to 224x224 pixels"), deterministic, recorded in
every cache manifest (``Backbone.preprocessing`` in ``umt.pipeline.vision.backbones``: the
steps below with the backbone's size, filter, mean and std):

1. Decode the first frame with Pillow; the file's content decides the format, not its name
   (a PNG named .jpg is fine), among :data:`ALLOWED_FORMATS` only (see below). EXIF
   orientation is not applied, as in the reference implementation and torchvision's ImageNet
   pipeline.
2. Convert to 8-bit RGB. Transparent images (RGBA, LA, palette or grey with transparency) are
   composited over white rather than having the alpha dropped, which would expose whatever
   colour the invisible pixels happen to hold. 16-bit grey is scaled to 8 bits (v * 255 / 65535)
   rather than clipped, which is what a plain ``convert`` does and would turn most of the
   image white. CMYK, grey, bilevel and palette images use Pillow's conversion.
3. Resize to the backbone's input size (224x224 for every registered one; aspect ratio not
   kept, no crop) with the backbone's Pillow filter (:class:`Resize`: bilinear, or bicubic for
   CLIP), which antialiases when shrinking.
4. In the model (``umt.pipeline.vision.grid_extractor``): scale to [0, 1], subtract the
   backbone's mean, divide by its std (ImageNet's for the torchvision CNNs).

Images are untrusted input (users' posts, folders others share), so every image umt opens goes
through :func:`open_image`, which lets Pillow try only the formats of the documented file
extensions (``umt.pipeline.data.images.IMAGE_EXTENSIONS``): JPEG (and MPO, as Pillow reads the
multi-picture JPEGs phones write), PNG, GIF, BMP, WebP and TIFF. Pillow's other parsers never
see a byte: EPS would make Pillow run Ghostscript where it is installed, and the rarer parsers
are the likelier to hold bugs. A file in another format is unreadable, with the accepted formats
as the reason. The allow-list is not part of the preprocessing record (:func:`preprocessing`):
it decides which files are read, not how, so grids of the accepted formats are bit-identical to
those of earlier versions and existing caches and runs stay valid. Only regular files are opened (a FIFO named x.jpg
would block the reader forever).

Images larger than :data:`MAX_PIXELS` are not decoded and get status unreadable with their
size as the reason: decoding one would take gigabytes in every worker, Twitter serves nothing
near that size, and such a file is far more likely a decompression bomb than a photo. Every
other failure (empty file, truncated data, not an image) is caught here as well, so one bad
file costs one image, never the run.
"""

from __future__ import annotations

import io
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from umt.cache.format import Status
from umt.pipeline.data.images import ImagePathError, resolve_image

#: 64 megapixels (8192 x 8192): 16 times Twitter's largest image, 192 MB once decoded to RGB.
MAX_PIXELS = 8192 * 8192
ALPHA_BACKGROUND = (255, 255, 255)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
UINT16_MAX = 65535
UINT8_MAX = 255
#: Pillow's names of the formats of ``IMAGE_EXTENSIONS``; MPO is how Pillow reads phones' JPEGs.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF")
#: The openers ``Image.open`` is given: Pillow has no MPO opener (a KeyError if asked for one), its
#: JPEG opener returns an MPO image for a multi-picture file.
OPENERS = tuple(f for f in ALLOWED_FORMATS if f != "MPO")
EMPTY_FILE = "empty file (0 bytes)"
#: Pillow's filters by the names manifests record.
FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class Resize:
    """Step 3: the backbone's input size (height, width) and filter."""

    size: tuple[int, int] = (224, 224)
    interpolation: str = "bilinear"

    def __call__(self, img: Image.Image) -> Image.Image:
        height, width = self.size
        return img.resize((width, height), FILTERS[self.interpolation])

    def empty(self) -> np.ndarray:
        """(0, height, width, 3) uint8: a batch of no images."""
        return np.empty((0, *self.size, 3), dtype=np.uint8)


def preprocessing(resize: Resize, mean: tuple[float, ...], std: tuple[float, ...]) -> dict:
    """What a manifest records of the steps above, for a backbone's size, filter, mean and std."""
    return {
        "decoder": "Pillow, first frame, EXIF orientation not applied",
        "to_rgb": "alpha composited over white; 16-bit scaled to 8-bit; other modes by Pillow convert",
        "resize": list(resize.size),  # (height, width) like a tensor
        "interpolation": resize.interpolation,
        "antialias": True,
        "crop": None,
        "scale": 1 / UINT8_MAX,
        "mean": list(mean),
        "std": list(std),
        "max_pixels": MAX_PIXELS,
    }


@dataclass
class Decoded:
    """One image's outcome: ``pixels`` (height, width, 3) uint8 RGB when ``status`` is OK, else None."""

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


def open_image(source: Path | BinaryIO) -> Image.Image:
    """``Image.open`` limited to :data:`ALLOWED_FORMATS`: the one way umt opens an image.

    Raises ``UnidentifiedImageError`` for a file in any other format, and Pillow's
    ``DecompressionBombError`` for one whose header claims over twice Pillow's pixel limit.
    """
    return Image.open(source, formats=OPENERS)


def _too_many_pixels(width: int, height: int) -> str:
    """The reason an image of this size is not decoded, or "" when it may be."""
    if width * height <= MAX_PIXELS:
        return ""
    return f"{width}x{height} pixels exceeds the limit of {MAX_PIXELS} (decompression-bomb guard)"


def _failure_reason(error: Exception, size: int) -> str:
    """One line for why opening or decoding an image of ``size`` bytes failed."""
    if isinstance(error, Image.DecompressionBombError):  # Pillow's own guard, above ours: no size is known
        pillow_limit = 2 * Image.MAX_IMAGE_PIXELS
        return f"more than {pillow_limit} pixels, over the limit of {MAX_PIXELS} (decompression-bomb guard)"
    if isinstance(error, UnidentifiedImageError):
        accepted = ", ".join(ALLOWED_FORMATS[:-1]) + f" or {ALLOWED_FORMATS[-1]}"
        return f"not an image format umt accepts ({accepted}; {size} bytes)"
    return f"{type(error).__name__}: {error}"


def header_problem(data: bytes) -> str:
    """Why the image in ``data`` must not be decoded (format, pixel count), or "" when it may be.

    Reads the header only, so a bomb costs nothing; a truncated body is found by the decode.
    """
    if not data:
        return EMPTY_FILE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # see _decode_opened
            with open_image(io.BytesIO(data)) as img:
                return _too_many_pixels(*img.size)
    except Exception as e:  # untrusted input: any parser error costs this image only
        return _failure_reason(e, len(data))


def _decode_opened(source: Path | BinaryIO, size: int, resize: Resize) -> Decoded:
    """Decode and resize the image in ``source`` (``size`` bytes, at least one)."""
    try:
        # Pillow's warnings concern metadata or the bomb check we do ourselves; the status
        # and reason are the report, so keep them out of the progress display.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_image(source) as img:
                too_many = _too_many_pixels(*img.size)
                if too_many:
                    return _unreadable(too_many)
                rgb = resize(to_rgb(img))
                return Decoded(
                    np.array(rgb), Status.OK
                )  # (height, width, 3) uint8, writable: safe for torch.from_numpy
    except Exception as e:  # untrusted input: any decoder error costs this image only
        return _unreadable(_failure_reason(e, size))


def decode(path: Path, resize: Resize) -> Decoded:
    """Decode and resize the file at ``path``; any failure becomes an unreadable status."""
    try:
        info = path.stat()
    except OSError as e:
        return _unreadable(f"cannot read file: {e}")
    if not stat.S_ISREG(info.st_mode):  # checked before opening: opening a FIFO blocks
        return _unreadable("not a regular file")
    if info.st_size == 0:
        return _unreadable(EMPTY_FILE)
    return _decode_opened(path, info.st_size, resize)


def decode_bytes(data: bytes, resize: Resize) -> Decoded:
    """:func:`decode` of a file's bytes already read, for a caller that hashed the same bytes."""
    if not data:
        return _unreadable(EMPTY_FILE)
    return _decode_opened(io.BytesIO(data), len(data), resize)


def load(images_dir: Path, image_id: str, resize: Resize) -> Decoded:
    """The image for ``image_id`` in ``images_dir`` (see ``resolve_image``), decoded."""
    try:
        path = resolve_image(images_dir, image_id)
    except ImagePathError as e:
        return Decoded(None, Status.UNREADABLE, str(e))
    if path is None:
        return Decoded(None, Status.MISSING, f"no file for this id in {images_dir}")
    return decode(path, resize)
