"""Reading a feature cache: one image's grid by id, safely from many DataLoader workers."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from umt.cache.errors import CacheError
from umt.cache.format import (
    ATTR_FORMAT,
    ATTR_MANIFEST,
    ATTR_VERSION,
    FEATURES,
    FORMAT_NAME,
    FORMAT_VERSION,
    IDS,
    REASON,
    STATUS,
    Status,
)
from umt.cache.grid import BLOCKS, CHANNELS, GRID
from umt.cache.manifest import mismatches

if TYPE_CHECKING:  # torch loads on the first get(): opening a cache stays fast
    import torch


class UnknownImageError(CacheError, KeyError):
    """An id the cache holds no row for (neither features nor a failure status)."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class FeatureCache:
    """Read access to one cache file.

    The ids, statuses and reasons are read once into memory (a few bytes per image); the grids
    stay on disk and :meth:`get` reads one image's chunk. The HDF5 handle is opened lazily and
    remembered per process id, because an h5py handle must not cross a ``fork``: each DataLoader
    worker opens its own on first use, and pickling drops the handle.

    ``expect`` names manifest values the caller relies on (nested dicts compare only the keys
    given); any difference raises :class:`CacheError` naming the key, the expected and the found
    value.
    """

    def __init__(self, path: Path | str, expect: dict[str, Any] | None = None):
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._file_pid: int | None = None
        with self._open() as f:
            self.manifest: dict[str, Any] = self._read_manifest(f)
            self.ids: list[str] = list(f[IDS].asstr()[:])
            self._status = np.asarray(f[STATUS][:], dtype=np.uint8)
            self._reasons: list[str] = list(f[REASON].asstr()[:])
            self.dtype = str(f[FEATURES].dtype)
            shape = f[FEATURES].shape
        n = len(self.ids)
        if shape != (n, GRID, GRID, CHANNELS) or len(self._status) != n or len(self._reasons) != n:
            raise CacheError(
                f"{self.path} is damaged: {n} ids, {len(self._status)} statuses and features of shape "
                f"{shape} (expected ({n}, {GRID}, {GRID}, {CHANNELS}))"
            )
        self._row = {image_id: row for row, image_id in enumerate(self.ids)}
        if len(self._row) != n:
            raise CacheError(f"{self.path} is damaged: its ids are not distinct")
        if expect:
            problems = mismatches(self.manifest, expect)
            if problems:
                raise CacheError(
                    f"{self.path} was built with other settings than expected: "
                    + "; ".join(problems)
                    + ". Extract the images again with matching options (umt extract-images)."
                )

    def _open(self) -> h5py.File:
        if not self.path.is_file():
            raise CacheError(f"feature cache {self.path} does not exist (create it with umt extract-images)")
        try:
            return h5py.File(self.path, "r")
        except OSError as e:
            raise CacheError(f"{self.path} is not a umt feature cache (not a readable HDF5 file: {e})") from e

    def _read_manifest(self, f: h5py.File) -> dict[str, Any]:
        fmt = f.attrs.get(ATTR_FORMAT)
        if fmt != FORMAT_NAME or any(name not in f for name in (IDS, STATUS, REASON, FEATURES)):
            raise CacheError(
                f"{self.path} is an HDF5 file but not a umt feature cache "
                f"(format attribute {fmt!r}, datasets {sorted(f.keys())})"
            )
        version = int(f.attrs.get(ATTR_VERSION, -1))
        if version > FORMAT_VERSION:
            raise CacheError(
                f"{self.path} has cache format version {version}; this umt reads up to {FORMAT_VERSION} "
                "(upgrade umt)"
            )
        try:
            return json.loads(f.attrs[ATTR_MANIFEST])
        except (KeyError, TypeError, ValueError) as e:
            raise CacheError(f"{self.path} is damaged: its manifest is not JSON ({e})") from e

    def _features(self) -> h5py.Dataset:
        pid = os.getpid()
        if self._file is None or self._file_pid != pid:
            # A handle inherited through fork belongs to the parent: leave it alone, open our own.
            self._file = self._open()
            self._file_pid = pid
        return self._file[FEATURES]

    def _row_of(self, image_id: str) -> int:
        try:
            return self._row[image_id]
        except KeyError:
            raise UnknownImageError(
                f"image id {image_id!r} is not in the feature cache {self.path} ({len(self.ids)} ids); "
                "was the cache extracted for this dataset?"
            ) from None

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._row

    def __len__(self) -> int:
        return len(self.ids)

    def status(self, image_id: str) -> str:
        """``"ok"``, ``"missing"`` or ``"unreadable"``."""
        return Status(self._status[self._row_of(image_id)]).label

    def reason(self, image_id: str) -> str:
        """Why the image has no grid ("" when its status is ok)."""
        return self._reasons[self._row_of(image_id)]

    def get(self, image_id: str) -> tuple[torch.Tensor, bool]:
        """The image's (49, 2048) float32 grid and True, or zeros and False when it has none."""
        import torch

        row = self._row_of(image_id)
        if self._status[row] != Status.OK:
            return torch.zeros(BLOCKS, CHANNELS), False
        grid = self._features()[row]  # (7, 7, 2048) in the storage dtype
        return torch.from_numpy(grid.astype(np.float32).reshape(BLOCKS, CHANNELS)), True  # (49, 2048)

    def stored_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of ``/features`` as stored, (n, 7, 7, 2048): for bulk copies."""
        return self._features()[start:stop]

    def counts(self) -> dict[str, int]:
        """Number of images per status label, every label present."""
        found = Counter(int(code) for code in self._status)
        return {s.label: found.get(s.value, 0) for s in Status}

    def failures(self) -> list[tuple[str, str, str]]:
        """(id, status, reason) of every image whose status is not ok, in id order."""
        rows = np.flatnonzero(self._status != Status.OK)
        return [(self.ids[r], Status(self._status[r]).label, self._reasons[r]) for r in rows]

    def close(self) -> None:
        if self._file is not None and self._file_pid == os.getpid():
            self._file.close()
        self._file = None
        self._file_pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_file_pid"] = None
        return state

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
