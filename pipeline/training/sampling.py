"""Which training windows each optimiser step uses, and each process's share of them.

Epoch ``e`` visits the windows in one order, a permutation seeded by ``(seed, e)`` that every
process computes alike (``set_epoch``, as a ``DistributedSampler``). Step ``s`` takes the next
``batch_size`` windows of that order, the same step whatever the number of processes or of
accumulation parts: the step's windows are cut into ``world_size * accum`` contiguous parts of
near-equal size, process ``r`` taking parts ``r * accum`` .. ``r * accum + accum - 1``. Each part
carries its share of the step (``Part.size / Part.step_size``), by which its mean loss is
weighted, so that 1 process, N processes and accumulation all compute the gradient of the
step's mean loss. A part left with no window (a last step smaller than the number of parts)
repeats the step's first window with size 0: it adds nothing, yet keeps the processes in step.
Nothing is padded with duplicates and no window is dropped.

Length buckets (``bucket`` > 0): the epoch's order is then cut into pools of ``bucket`` steps,
each pool sorted by window length and cut into steps, and the pool's full steps shuffled (a
short last step stays last). A step then holds windows of similar length, so less of the
encoder's work goes to padding, while every epoch still visits the windows in a new order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Seeds the per-epoch order together with the run seed.
EPOCH_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Part:
    indices: list[int]
    size: int  # real windows (0 for a placeholder part)
    step_size: int  # windows of the whole step, over every process


class StepSampler:
    """This process's parts of every step of an epoch, in order (:meth:`parts`)."""

    def __init__(self, n: int, batch_size: int, seed: int, accum: int = 1, rank: int = 0, world_size: int = 1,
                 lengths: list[int] | None = None, bucket: int = 0):  # fmt: skip
        if n < 1:
            raise ValueError("nothing to train on: the dataset has no windows")
        if bucket and (lengths is None or len(lengths) != n):
            raise ValueError("length buckets need the length of every window")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.lengths, self.bucket = lengths, bucket
        self.accum, self.rank, self.world_size = accum, rank, world_size
        self.epoch = 0

    @property
    def steps(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        if not self.bucket:
            return order
        pool, out = self.bucket * self.batch_size, []
        for start in range(0, self.n, pool):
            ranked = sorted(order[start : start + pool], key=lambda i: self.lengths[i])
            steps = [ranked[s : s + self.batch_size] for s in range(0, len(ranked), self.batch_size)]
            full = [step for step in steps if len(step) == self.batch_size]
            shuffled = [full[k] for k in torch.randperm(len(full), generator=generator).tolist()]
            out.extend(i for step in shuffled + steps[len(full) :] for i in step)
        return out

    def parts(self) -> list[Part]:
        """This process's parts of every step, ``accum`` per step."""
        order, cuts = self.order(), self.world_size * self.accum
        out = []
        for start in range(0, self.n, self.batch_size):
            step = order[start : start + self.batch_size]
            base, extra = divmod(len(step), cuts)
            bounds = [k * base + min(k, extra) for k in range(cuts + 1)]  # part k: step[bounds[k]:bounds[k + 1]]
            for k in range(self.rank * self.accum, (self.rank + 1) * self.accum):
                chunk = step[bounds[k] : bounds[k + 1]]
                out.append(Part(chunk or step[:1], len(chunk), len(step)))
        return out
