"""The processes of one job: torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or
one process alone. Every command that scales out reads its :class:`World` and nothing else of
torch.distributed, so single-process code paths stay plain.

Under torchrun each process takes ``cuda:LOCAL_RANK`` (or the CPU) and joins one process group:
NCCL on GPUs, gloo on CPUs. Rank 0 is the *main* process: it alone writes files and prints.
torch is imported only when a process group is in use, so commands still check their options
before torch loads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from umt.pipeline.errors import ConfigError, UmtError

T = TypeVar("T")


class PeerFailed(UmtError):
    """The main process failed at a step every process waits on; it reported the reason."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, name: str) -> str:
        """The device this process uses when ``--device name`` was asked: under torchrun, a
        CUDA name means the local rank's GPU."""
        if not self.distributed:
            return name
        import torch

        if name in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        if name.startswith("cuda:"):
            raise ConfigError(f"--device {name}: under torchrun each process takes cuda:LOCAL_RANK; use --device cuda")
        return name

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed

            torch.distributed.barrier()

    def gather(self, obj: T) -> list[T]:
        """Every process's ``obj``, in rank order (``[obj]`` alone)."""
        if not self.distributed:
            return [obj]
        import torch.distributed

        out: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def on_main(self, function: Callable[[], T]) -> T:
        """``function()`` run by the main process, its result given to every process. An error
        there is raised in the main process and reported in the others (no process hangs)."""
        if not self.distributed:
            return function()
        import torch.distributed

        result, error = None, None
        if self.main:
            try:
                result = function()
            except BaseException as e:  # noqa: BLE001 - passed on, then raised again below
                error = e
        box = [(result, None if error is None else f"{type(error).__name__}: {error}")]
        torch.distributed.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        value, message = box[0]
        if message is not None:
            raise PeerFailed(f"rank {self.rank}: the main process stopped ({message})")
        return value


def current_world() -> World:
    """The world torchrun describes in the environment (one process when it does not)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ConfigError(f"the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK) is not numbers: {e}") from None
    return World(rank, size, local)


@contextmanager
def joined(world: World, device: str) -> Iterator[World]:
    """Within, the process belongs to ``world``'s process group (gloo or NCCL by ``device``)."""
    if not world.distributed:
        yield world
        return
    import torch
    import torch.distributed

    if torch.distributed.is_initialized():
        yield world
        return
    use_cuda = device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(world.local_rank)
    torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        yield world
    finally:
        torch.distributed.destroy_process_group()
