"""What the benchmarks share: a generated feature cache, encoders of real sizes, peak memory."""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from umt.cache.format import CacheWriter, Status
from umt.cache.grid import GridShape
from umt.cache.manifest import dumps, ids_digest

#: Random encoders of the sizes the timings are about: (hidden, layers, heads).
ENCODER_SIZES = {"minilm": (384, 6, 12), "bert-base": (768, 12, 12)}
_CHUNK = 256


def write_random_cache(path: Path, ids: Sequence[str], dtype: str = "float16", seed: int = 0) -> Path:
    """A feature cache holding a random (7, 7, 2048) grid for each id, written by the cache's own
    writer chunk by chunk (memory stays flat however many ids): what `umt extract-images
    --weights random` leaves, without running a ResNet."""
    rng = np.random.default_rng(seed)
    ids = list(ids)
    manifest = {
        "format_version": 1,
        "backbone": "resnet152",
        "layer": "layer4",
        "grid": [7, 7],
        "channels": 2048,
        "weights": {"source": "random", "seed": seed},
        "preprocessing": {"resize": [224, 224], "interpolation": "bilinear"},
        "dtype": dtype,
        "plan": {"ids_sha256": ids_digest(ids), "total": len(ids), "chunk_size": _CHUNK},
    }
    with CacheWriter(path, path.with_name(path.name + ".tmp"), len(ids), dtype, GridShape(7, 7, 2048)) as writer:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            grids = rng.random((len(chunk), 7, 7, 2048), dtype=np.float32).astype(dtype)
            writer.append(chunk, np.full(len(chunk), Status.OK, np.uint8), [""] * len(chunk), grids)
        writer.finish(dumps(manifest))
    return path


def random_encoder(folder: Path, size: str, words: Sequence[str]) -> Path:
    """A randomly initialised BERT of ``size`` (``ENCODER_SIZES``) whose vocabulary holds ``words``
    whole, so that posts cut into about as many pieces as a real vocabulary cuts them."""
    from umt.pipeline.models.tiny import build_tiny_encoder

    hidden, layers, heads = ENCODER_SIZES[size]
    return build_tiny_encoder(folder, words=words, hidden=hidden, layers=layers, heads=heads)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB. On Linux it is read from
    /proc/self/status (VmHWM): ``ru_maxrss`` would carry over the parent's peak through exec."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
