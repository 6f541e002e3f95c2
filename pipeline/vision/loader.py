"""Decoding whole chunks in DataLoader workers while the main process runs the backbone.

One dataset item is one planned chunk (one forward batch), so the plan, not the DataLoader,
decides which images share a batch: that is what makes resumed and sharded runs identical to
a single uninterrupted one. Workers return uint8 pixels of the images that decoded, plus every
image's status and reason.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from umt.cache.format import Status
from umt.cache.lock import HeldLock
from umt.cache.workdir import Plan
from umt.pipeline.vision.decode import Resize, load

#: Chunks each worker decodes ahead of the model: enough to hide decode jitter, bounded memory.
PREFETCH_CHUNKS = 2


@dataclass
class LoadedChunk:
    index: int  # the chunk's number in the plan
    pixels: torch.Tensor  # (n_ok, H_in, W_in, 3) uint8, the images whose status is OK, in plan order
    status: np.ndarray  # (n,) uint8 Status code per id of the chunk
    reasons: list[str]  # (n,) "" for OK

    def pin_memory(self) -> LoadedChunk:
        """Called by the DataLoader when ``pin_memory`` is on, for asynchronous copies to the GPU."""
        return replace(self, pixels=self.pixels.pin_memory())


class ChunkImages(Dataset[LoadedChunk]):
    """Item ``i`` is chunk ``chunks[i]`` of ``plan``, decoded from ``images_dir``."""

    def __init__(self, plan: Plan, chunks: list[int], images_dir: Path, resize: Resize):
        self.plan = plan
        self.chunks = chunks
        self.images_dir = images_dir
        self.resize = resize

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, position: int) -> LoadedChunk:
        index = self.chunks[position]
        decoded = [load(self.images_dir, image_id, self.resize) for image_id in self.plan.chunk(index)]
        good = [d.pixels for d in decoded if d.status is Status.OK]
        pixels = np.stack(good) if good else self.resize.empty()
        return LoadedChunk(
            index=index,
            pixels=torch.from_numpy(pixels),  # (n_ok, H_in, W_in, 3)
            status=np.array([d.status for d in decoded], dtype=np.uint8),
            reasons=[d.reason for d in decoded],
        )


def _worker_init(lock: HeldLock, worker_id: int) -> None:
    lock.close_in_child()


def chunk_loader(dataset: ChunkImages, num_workers: int, pin_memory: bool, lock: HeldLock) -> DataLoader:
    """Chunks in plan order, decoded by ``num_workers`` processes (0: in the main process)."""
    workers = {}
    if num_workers > 0:
        workers = {
            "worker_init_fn": functools.partial(_worker_init, lock),
            "prefetch_factor": PREFETCH_CHUNKS,
        }
    return DataLoader(
        dataset,
        batch_size=None,  # an item is already a batch
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        **workers,
    )
