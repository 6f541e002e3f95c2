"""Stage-one throughput: the bare backbone forward against the whole ``extract-images`` job.

For one backbone, device and batch size it prints

- bare: images/s of the grid extractor's forward on pixels decoded beforehand and already on
  the device (no file I/O, no decoding, no writes);
- full: images/s of ``extract-images`` over the same files: decoding in DataLoader workers,
  forward, chunk writes. "steady" is the rate of the extraction loop (what the progress bar
  shows); "end to end" adds the model load, the lock and the final HDF5 assembly;
- their ratio. The target is full (steady) >= 0.9 x bare.

Rounds alternate bare and full so that other load on the machine hits both alike; the
median of each is reported. Without ``--images`` it writes photo-like 500x375 JPEGs (the size
of a typical tweet image) to a temporary folder.

    python benchmarks/bench_extract.py --num-images 96 --batch-size 16 --num-workers 1
    python benchmarks/bench_extract.py --backbone vit-b16 --num-images 32   # any registered backbone
    python benchmarks/bench_extract.py --images ../shared/data/mner-real-sample/twitter_2017/images/train
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from umt.cache.format import Status
from umt.pipeline.runtime.devices import resolve_device
from umt.pipeline.vision.backbones import DEFAULT_BACKBONE, backbone_names, get_backbone
from umt.pipeline.vision.decode import Resize, decode
from umt.pipeline.vision.extract import AUTOCAST_DTYPE
from umt.pipeline.vision.grid_extractor import GridExtractor
from umt.stages.extract_images import run
from umt.stages.requests import ExtractRequest

PHOTO_SIZE = (500, 375)
JPEG_QUALITY = 90
NOISE = 48


def write_photos(folder: Path, count: int, seed: int) -> None:
    """Gradients plus noise: JPEG sizes and decode costs close to real photos."""
    rng = np.random.default_rng(seed)
    width, height = PHOTO_SIZE
    y, x = np.mgrid[0:height, 0:width]
    for i in range(count):
        phase = rng.uniform(0, 255, size=3)
        base = np.stack([(x * (c + 1) // 2 + y + phase[c]) % 256 for c in range(3)], axis=-1)
        pixels = np.clip(base + rng.integers(-NOISE, NOISE, size=base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=JPEG_QUALITY)


def predecode(folder: Path, batch_size: int, device: torch.device, resize: Resize) -> list[torch.Tensor]:
    """The folder's images decoded exactly as the job decodes them, in batches on ``device``."""
    pixels = []
    for path in sorted(folder.iterdir()):
        decoded = decode(path, resize)
        if decoded.status is Status.OK:
            pixels.append(torch.from_numpy(decoded.pixels))  # (H_in, W_in, 3) uint8
    stacked = torch.stack(pixels)  # (N, H_in, W_in, 3)
    return [batch.to(device) for batch in stacked.split(batch_size)]


def bare_rate(extractor: GridExtractor, batches: list[torch.Tensor], dtype: str, device: torch.device) -> float:
    on_gpu = device.type == "cuda"
    amp = torch.autocast("cuda", dtype=AUTOCAST_DTYPE) if on_gpu else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        extractor(batches[0])  # warm-up: kernel selection and first-call allocations
        if on_gpu:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for pixels in batches:
            extractor(pixels).to(getattr(torch, dtype))  # (B, rows, cols, C)
        if on_gpu:
            torch.cuda.synchronize()
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


def _extract_once(config: ExtractRequest) -> tuple[float, float]:
    # A spawned child inherits "spawn" as its start method; the command runs with the platform's
    # default (fork on Linux), which decides how its DataLoader workers start.
    multiprocessing.set_start_method(multiprocessing.get_all_start_methods()[0], force=True)
    started = time.perf_counter()
    result = run(config, console=Console(file=io.StringIO()))
    wall = time.perf_counter() - started
    return result.processed / result.seconds, result.processed / wall


def full_rates(config: ExtractRequest) -> tuple[float, float]:
    """(steady, end-to-end) images/s of one complete extraction, in a fresh process.

    A fresh (spawned) process is what ``umt extract-images`` runs in; running it here would
    fork its decoding workers from a process already holding the bare-forward model.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_extract_once, config).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, help="folder of images [default: generate --num-images JPEGs]")
    parser.add_argument("--num-images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=None, help="[default: the command's default]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=backbone_names())
    parser.add_argument("--weights", default="random", help="as `umt extract-images --weights` [default: random]")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads [default: torch's]")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    console = Console(width=130)
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        work = Path(tmp)
        folder = args.images
        if folder is None:
            folder = work / "images"
            folder.mkdir()
            write_photos(folder, args.num_images, args.seed)
        backbone = get_backbone(args.backbone)
        batches = predecode(folder, args.batch_size, device, backbone.resize)
        extractor = backbone.build(args.weights).to(device)
        rows = []
        for round_index in range(args.rounds):
            bare = bare_rate(extractor, batches, args.dtype, device)
            config = ExtractRequest(
                images=folder,
                out=work / f"round{round_index}.h5",
                backbone=args.backbone,
                weights=args.weights,
                dtype=args.dtype,
                device=args.device,
                batch_size=args.batch_size,
                num_workers=args.num_workers,
            )
            steady, end_to_end = full_rates(config)
            rows.append((bare, steady, end_to_end))
            (work / f"round{round_index}.h5").unlink()
    images = sum(len(b) for b in batches)
    title = (
        f"{args.backbone} ({backbone.grid}) on {device} ({torch.get_num_threads()} threads), {images} images "
        f"from {folder.name}, "
        f"batch {args.batch_size}, workers {args.num_workers if args.num_workers is not None else 'default'}, "
        f"{args.dtype}"
    )
    table = Table(title=title, title_justify="left")
    columns = ("round", "bare img/s", "full img/s (steady)", "full img/s (end to end)", "steady / bare", "e2e / bare")
    for column in columns:
        table.add_column(column, justify="right")
    for i, (bare, steady, e2e) in enumerate(rows, 1):
        table.add_row(str(i), f"{bare:.2f}", f"{steady:.2f}", f"{e2e:.2f}", f"{steady / bare:.3f}", f"{e2e / bare:.3f}")
    bare, steady, e2e = (statistics.median(column) for column in zip(*rows, strict=True))
    table.add_row("median", f"{bare:.2f}", f"{steady:.2f}", f"{e2e:.2f}", f"{steady / bare:.3f}", f"{e2e / bare:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
