"""The umt image-feature cache: one HDF5 file, format version 1.

Layout (N images, rows in the order of ``/ids``)::

    /                    attributes:
                           format          "umt-feature-cache"
                           format_version  1
                           manifest        JSON text: backbone, weights, preprocessing, dtype,
                                           counts, versions, creation time (see cache.manifest)
    /ids       (N,)              UTF-8 strings, distinct, sorted by code point
    /status    (N,)              uint8 HDF5 enum {ok: 0, missing: 1, unreadable: 2}
    /reason    (N,)              UTF-8 strings: "" when ok, else why the image has no grid
    /features  (N, H, W, C)      float16 or float32 (the manifest's "dtype"): the backbone's
                                 grid (grid row, grid column, channel), of the shape the
                                 manifest records ("grid": [H, W], "channels": C; 7 x 7 x 2048 for
                                 the paper's ResNet-152); all zeros where the status is not ok

Why this shape: ``/features`` is chunked one image per HDF5 chunk and stored uncompressed, so a
reader fetches one image's grid with one small read, from any number of processes, without
touching the others. Rows of failed images are never written: HDF5 allocates no chunk for
them and reads them as its fill value, zero, so a folder of missing images costs no disk.
Channels come last so that ``features[i].reshape(H * W, C)`` is the sequence of block vectors in
raster order (the paper's 49 blocks of 2048). The status lives beside the grid rather
than being inferred from zeros, so a failed image can never pass for a real one, and the reason
tells the user what to fix. The enum type makes the status readable by any HDF5 tool.

A cache file is only ever published complete: :class:`CacheWriter` writes a temporary file and
renames it over the destination (HDF5 itself is not crash-safe).
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from umt.cache.durable import fsync_dir
from umt.cache.grid import GridShape

FORMAT_NAME = "umt-feature-cache"
FORMAT_VERSION = 1
STORAGE_DTYPES = ("float16", "float32")

IDS = "ids"
STATUS = "status"
REASON = "reason"
FEATURES = "features"
ATTR_FORMAT = "format"
ATTR_VERSION = "format_version"
ATTR_MANIFEST = "manifest"


class Status(enum.IntEnum):
    """Per-image outcome. The integer is what the file stores."""

    OK = 0
    MISSING = 1  # no file for the id
    UNREADABLE = 2  # a file exists but could not be decoded into an image

    @property
    def label(self) -> str:
        return self.name.lower()


STATUS_ENUM = h5py.enum_dtype({s.label: s.value for s in Status}, basetype="u1")
STRING = h5py.string_dtype("utf-8")


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """(first, count) of each run of consecutive integers in the sorted ``rows``."""
    runs: list[tuple[int, int]] = []
    for row in rows.tolist():
        if runs and runs[-1][0] + runs[-1][1] == row:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((row, 1))
    return runs


class CacheWriter:
    """Writes a cache block by block into ``tmp_path``; :meth:`finish` publishes it at ``path``.

    Rows are appended in order, so memory holds one block at a time whatever N is. If the
    writer is left without :meth:`finish` (an exception), the temporary file is removed and
    ``path`` is untouched.
    """

    def __init__(self, path: Path, tmp_path: Path, total: int, dtype: str, shape: GridShape):
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage dtype must be one of {STORAGE_DTYPES}, not {dtype!r}")
        self.path = Path(path)
        self.tmp_path = Path(tmp_path)
        self.total = total
        self.rows = 0
        self.shape = shape
        # The temporary name is ours (the output's lock is held): a file left there by a crash, or a
        # link planted there, is removed rather than written through ("w" would truncate its target).
        self.tmp_path.unlink(missing_ok=True)
        self._file = h5py.File(self.tmp_path, "w-")
        self._file.create_dataset(IDS, shape=(total,), dtype=STRING)
        self._file.create_dataset(STATUS, shape=(total,), dtype=STATUS_ENUM)
        self._file.create_dataset(REASON, shape=(total,), dtype=STRING)
        # maxshape lets HDF5 accept one-image chunks even when N is 0 (an empty shard).
        self._file.create_dataset(
            FEATURES,
            shape=(total, *shape.stored),
            maxshape=(None, *shape.stored),
            chunks=(1, *shape.stored),
            dtype=dtype,
        )

    def append(self, ids: list[str], status: np.ndarray, reasons: list[str], grids: np.ndarray) -> None:
        """Write the next ``len(ids)`` rows.

        ``grids`` holds the (n_ok, H, W, C) grids of the rows whose status is OK, in order,
        in the storage dtype; the other rows stay unwritten, i.e. zero.
        """
        n = len(ids)
        status = np.asarray(status, dtype=np.uint8)
        if not (len(status) == len(reasons) == n):
            raise ValueError("ids, status and reasons must have the same length")
        ok_rows = np.flatnonzero(status == Status.OK)
        if grids.shape[0] != len(ok_rows):
            raise ValueError(f"{len(ok_rows)} rows are ok but {grids.shape[0]} grids were given")
        if tuple(grids.shape[1:]) != self.shape.stored:
            raise ValueError(f"grids of shape {tuple(grids.shape[1:])} given to a cache of {self.shape} grids")
        end = self.rows + n
        if end > self.total:
            raise ValueError(f"writing rows {self.rows}..{end} into a cache of {self.total}")
        f = self._file
        f[IDS][self.rows : end] = ids
        f[STATUS][self.rows : end] = status
        f[REASON][self.rows : end] = reasons
        for first, count in _runs(ok_rows):  # one slice write per run of consecutive ok rows
            position = int(np.searchsorted(ok_rows, first))
            f[FEATURES][self.rows + first : self.rows + first + count] = grids[position : position + count]
        self.rows = end

    def finish(self, manifest_json: str) -> Path:
        """Stamp the format and manifest, flush to disk and atomically rename into place."""
        if self.rows != self.total:
            raise ValueError(f"cache has {self.rows} rows written of {self.total}")
        attrs = self._file.attrs
        attrs[ATTR_FORMAT] = FORMAT_NAME
        attrs[ATTR_VERSION] = FORMAT_VERSION
        attrs[ATTR_MANIFEST] = manifest_json
        self._file.close()
        with open(self.tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp_path, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        if self._file.id.valid:
            self._file.close()
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None or self._file.id.valid:
            self.abort()
