"""Packed rows: several short windows share one row of an encoder call.

A batch of windows padded to its longest is much padding when its windows are of all lengths,
as the posts arriving together at a server are. Packed, the batch's rows keep the longest
window's width and each holds as many whole windows as fit: first fit, longest first. Attention
stays within each window (:meth:`PackedRows.attention`), so a window's states are what they
would be in a row of its own. The Twitter-2017 test posts in groups of 16 as they come
(all-MiniLM-L6-v2 pieces): one padded batch a group is 36% padding; cut by length, 17% in two
calls a group; packed, 16% in one call.

Only encoders whose layers see no positions (absolute position embeddings, added before the
layers) can be packed: :class:`umt.pipeline.modules.encoders.PretrainedEncoder` says which.
Evaluation batching prices packed rows the same way (:func:`umt.pipeline.data.batching.cut_by_length`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


class FirstFit:
    """Rows of ``width`` positions filled one window at a time, each into the first row with room
    (windows added longest first make first-fit decreasing)."""

    def __init__(self, width: int):
        self.width = width
        self.room: list[int] = []  # free positions of each row

    def add(self, length: int) -> int:
        """Place a window of ``length`` positions; its row."""
        if not 0 < length <= self.width:
            raise ValueError(f"a window of {length} positions does not fit rows of {self.width}")
        for row, free in enumerate(self.room):
            if free >= length:
                self.room[row] -= length
                return row
        self.room.append(self.width - length)
        return len(self.room) - 1

    @property
    def rows(self) -> int:
        """The rows filled so far."""
        return len(self.room)


def first_fit(lengths: Sequence[int], width: int) -> list[list[int]]:
    """The windows (indices into ``lengths``) of each row of ``width``, longest first, first fit."""
    rows: list[list[int]] = []
    fit = FirstFit(width)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = fit.add(lengths[i])
        if row == len(rows):
            rows.append([])
        rows[row].append(i)
    return rows


@dataclass(frozen=True)
class PackedRows:
    """Where each position of a padded (B, L) batch goes in R packed rows of width L."""

    source: torch.Tensor  # (R, L) long: the flat position b * L + t each slot holds (0 on padding)
    segment: torch.Tensor  # (R, L) long: which window of its row each slot is (-1 on padding)

    @classmethod
    def of(cls, lengths: Sequence[int], width: int, device: torch.device | str = "cpu") -> PackedRows:
        """The rows of windows of ``lengths`` real positions (each starting at position 0 of its
        row of a padded batch of width ``width``)."""
        rows = first_fit(lengths, width)
        source = np.zeros((len(rows), width), dtype=np.int64)
        segment = np.full((len(rows), width), -1, dtype=np.int64)
        for r, windows in enumerate(rows):
            at = 0
            for s, b in enumerate(windows):
                n = lengths[b]
                source[r, at : at + n] = np.arange(b * width, b * width + n)
                segment[r, at : at + n] = s
                at += n
        return cls(torch.from_numpy(source).to(device), torch.from_numpy(segment).to(device))

    @property
    def real(self) -> torch.Tensor:
        """(R, L) bool, True on the slots that hold a window's position."""
        return self.segment >= 0

    def attention(self) -> torch.Tensor:
        """(R, 1, L, L) bool, True where a query slot may attend a key slot: the same window. An
        empty slot attends itself only, so that no query row is all masked."""
        same = (self.segment[:, :, None] == self.segment[:, None, :]) & self.real[:, None, :]  # (R, L, L)
        width = self.segment.shape[1]
        return (same | torch.eye(width, dtype=torch.bool, device=same.device))[:, None]

    def pack(self, states: torch.Tensor) -> torch.Tensor:
        """(B, L, d) padded states -> (R, L, d) packed rows (empty slots hold position 0's state)."""
        return states.reshape(-1, states.shape[-1])[self.source]

    def unpack(self, rows: torch.Tensor, batch: int) -> torch.Tensor:
        """(R, L, d) packed rows -> (B, L, d) padded states, zeros on padding."""
        width, dim = rows.shape[1], rows.shape[-1]
        real = self.real
        out = rows.new_zeros(batch * width, dim)
        out[self.source[real]] = rows[real]
        return out.view(batch, width, dim)
