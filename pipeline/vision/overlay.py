"""A picture of where a decision looked: an image with a 7x7 attention map laid over it.

The model saw the image squashed to 224 x 224 (no crop, aspect not kept), so grid cell (r, c)
covers the same fraction of the original picture whatever its shape: the 7 x 7 map is
stretched over the original image, smoothed bilinearly, and blended in with a colour scale from
the least attended cell (dark) to the most (yellow). The scale is relative, so the caption says
how peaked the attention is: its largest cell, and that as a multiple of the 1/49 of a uniform spread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from umt.pipeline.vision.decode import open_image, to_rgb

MAX_SIDE = 640  # longest side of the picture written: larger images are shrunk,
MIN_SIDE = 448  # smaller ones enlarged
MIN_WIDTH = 520  # room for the caption
CAPTION_HEIGHT = 44
BLEND = 0.55
#: A perceptually ordered scale (after matplotlib's "inferno"), as RGB stops from 0 to 1.
_STOPS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float32,
)


def colour_scale(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) float RGB in [0, 255]."""
    position = np.clip(values, 0.0, 1.0) * (len(_STOPS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_STOPS) - 2)
    frac = (position - low)[..., None]
    return _STOPS[low] * (1 - frac) + _STOPS[low + 1] * frac


def attention_overlay(image_path: Path, attention: np.ndarray, caption: str) -> Image.Image:
    """The image at ``image_path`` with ``attention`` (grid*grid,) over it and ``caption`` above.

    The file is opened like any image umt reads (``decode.open_image``: the accepted formats only).
    """
    grid = int(round(len(attention) ** 0.5))
    with open_image(image_path) as img:
        rgb = to_rgb(img)
    longest = max(rgb.size)
    scale = MAX_SIDE / longest if longest > MAX_SIDE else (MIN_SIDE / longest if longest < MIN_SIDE else 1.0)
    if scale != 1.0:
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR)
    cells = attention.reshape(grid, grid).astype(np.float32)
    spread = float(cells.max() - cells.min())
    relative = (cells - cells.min()) / spread if spread > 0 else np.zeros_like(cells)  # (grid, grid) in [0, 1]
    heat = np.asarray(Image.fromarray(relative).resize(rgb.size, Image.Resampling.BILINEAR))  # (H, W)
    blended = np.asarray(rgb, dtype=np.float32) * (1 - BLEND) + colour_scale(heat) * BLEND
    picture = Image.fromarray(blended.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for k in range(1, grid):  # faint grid lines: the cells the model attends over
        x, y = round(k * picture.width / grid), round(k * picture.height / grid)
        draw.line([(x, 0), (x, picture.height)], fill=(255, 255, 255), width=1)
        draw.line([(0, y), (picture.width, y)], fill=(255, 255, 255), width=1)
    canvas = Image.new("RGB", (max(picture.width, MIN_WIDTH), picture.height + CAPTION_HEIGHT), (255, 255, 255))
    canvas.paste(picture, (0, CAPTION_HEIGHT))
    font = ImageFont.load_default(size=15)
    peak = f"largest cell {cells.max():.4f} = {cells.max() * cells.size:.2f} x uniform (1/{cells.size})"
    text = ImageDraw.Draw(canvas)
    text.text((6, 4), caption, fill=(0, 0, 0), font=font)
    text.text((6, 24), peak, fill=(90, 90, 90), font=font)
    return canvas
