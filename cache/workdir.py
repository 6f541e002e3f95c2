"""The work folder ``<out>.partial/`` that makes an extraction resumable.

HDF5 is not crash-safe: a process killed during a write can leave the file unreadable. So an
extraction never writes the cache directly. It writes

    <out>.partial/plan.json            the ordered id list, the batch size and the fingerprint
    <out>.partial/chunk-000042.npz     one file per finished chunk (one forward batch)

each through a temporary name, fsync and ``os.replace``, so a chunk file either exists whole or
not at all. When every chunk is done the cache is assembled from the chunk files and renamed
into place, and the folder is removed. A rerun of the same command finds the plan, skips the
chunks on disk and computes the rest; because the plan fixes which ids share a batch, the
result is bit-for-bit what an uninterrupted run writes. A rerun with other settings is refused.
"""

from __future__ import annotations

import contextlib
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from umt.cache import durable
from umt.cache.errors import CacheError
from umt.cache.format import CacheWriter, Status
from umt.cache.grid import GridShape
from umt.cache.manifest import dumps, mismatches, normalise

PLAN_FILE = "plan.json"
#: What numpy raises for a chunk file that is truncated or not an npz archive.
_UNREADABLE_CHUNK = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
CHUNK_PATTERN = "chunk-{:06d}.npz"
CHUNK_NAME = re.compile(r"chunk-\d{6,}\.npz")
ASSEMBLY_FILE = "assembled.h5"


def _work_file(name: str) -> bool:
    """Whether ``name`` is a file an extraction writes into its work folder."""
    return name in (PLAN_FILE, ASSEMBLY_FILE) or CHUNK_NAME.fullmatch(name) is not None


def clear_work_folder(root: Path) -> None:
    """Remove the files an extraction wrote into ``root``, and ``root`` if nothing else is there."""
    durable.remove_owned(root, _work_file, and_folder=True)


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """:func:`umt.cache.durable.atomic_write`, a full disk or read-only folder as a CacheError."""
    try:
        durable.atomic_write(path, write)
    except OSError as e:  # a full disk or a read-only folder is the user's to fix
        raise CacheError(f"cannot write {path}: {e}") from e


@dataclass(frozen=True)
class Plan:
    """What an extraction computes: ``ids`` in order, cut into chunks of ``chunk_size``.

    Shard ``(k, n)`` (1-based) owns chunks k-1, k-1+n, k-1+2n, ...: every shard sees the same
    chunk boundaries as a single run, which is what makes merged shards identical to it.
    ``fingerprint`` is everything else that must not change between a run and its resumption.
    """

    ids: list[str]
    chunk_size: int
    shard: tuple[int, int]
    fingerprint: dict[str, Any]

    @property
    def num_chunks(self) -> int:
        return -(-len(self.ids) // self.chunk_size)

    def chunk(self, index: int) -> list[str]:
        return self.ids[index * self.chunk_size : (index + 1) * self.chunk_size]

    def assigned_chunks(self) -> list[int]:
        k, n = self.shard
        return list(range(k - 1, self.num_chunks, n))

    def to_json(self) -> dict[str, Any]:
        return {
            "ids": self.ids,
            "chunk_size": self.chunk_size,
            "shard": list(self.shard),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], origin: Path | None = None) -> Plan:
        """A stored plan; one that is not what :meth:`to_json` wrote is a CacheError naming ``origin``."""
        try:
            k, n = data["shard"]
            ids, chunk_size = data["ids"], int(data["chunk_size"])
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or chunk_size < 1:
                raise TypeError("ids must be a list of strings and chunk_size positive")
            return cls(ids, chunk_size, (int(k), int(n)), dict(data["fingerprint"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CacheError(f"{origin or 'the plan'} is damaged ({type(e).__name__}: {e})") from None


@dataclass
class Chunk:
    """One finished batch: rows for ``ids`` in plan order."""

    ids: list[str]
    status: np.ndarray  # (n,) uint8 Status codes
    reasons: list[str]
    grids: np.ndarray  # (n_ok, H, W, C) storage dtype: the rows whose status is OK, in order


class WorkDir:
    """A ``<out>.partial`` folder bound to one :class:`Plan`."""

    def __init__(self, root: Path, plan: Plan):
        self.root = root
        self.plan = plan

    @staticmethod
    def check(root: Path, plan: Plan, reset: bool = False) -> None:
        """Refuse a folder at ``root`` that holds another plan (with ``reset``, discard it).

        Separate from :meth:`open` so that a caller can check before expensive setup and
        create the folder only once that setup has succeeded. A link at ``root`` is refused: the
        work folder is written into, and a link would send those writes elsewhere.
        """
        if root.is_symlink() or (root.exists() and not root.is_dir()):
            raise CacheError(f"{root} is a link or a file, not umt's work folder; remove it and run again")
        stored = read_plan(root)
        if stored is None:
            return
        wanted = normalise(plan.to_json())
        problems = mismatches(stored, {k: v for k, v in wanted.items() if k != "ids"})
        if stored.get("ids") != wanted["ids"]:
            problems.append(f"ids: {len(wanted['ids'])} ids now, {len(stored.get('ids', []))} before")
        if not problems:
            return
        if not reset:
            raise CacheError(
                f"{root} holds an unfinished extraction with other settings ("
                + "; ".join(problems)
                + f"). Rerun with the original options to finish it, or delete {root} "
                "(or pass --overwrite) to start over."
            )
        try:
            clear_work_folder(root)
        except OSError as e:
            raise CacheError(f"cannot clear the unfinished extraction in {root}: {e.strerror}") from None

    @classmethod
    def open(cls, root: Path, plan: Plan, reset: bool = False) -> WorkDir:
        """Resume the folder at ``root`` if it holds ``plan``, create it if absent, else refuse."""
        cls.check(root, plan, reset)
        if read_plan(root) is None:
            root.mkdir(parents=True, exist_ok=True)
            text = json.dumps(plan.to_json(), ensure_ascii=False, indent=1).encode("utf-8")
            atomic_write(root / PLAN_FILE, lambda fh: fh.write(text))
        return cls(root, plan)

    def chunk_path(self, index: int) -> Path:
        return self.root / CHUNK_PATTERN.format(index)

    def is_done(self, index: int) -> bool:
        return self.chunk_path(index).is_file()

    def write_chunk(self, index: int, chunk: Chunk) -> None:
        def write(fh: IO[bytes]) -> None:
            np.savez(
                fh,
                ids=np.asarray(chunk.ids, dtype=str),
                status=chunk.status,
                reasons=np.asarray(chunk.reasons, dtype=str),
                grids=chunk.grids,
            )

        atomic_write(self.chunk_path(index), write)

    def read_chunk(self, index: int, shape: GridShape) -> Chunk:
        """The chunk's rows, grids of ``shape``; a damaged chunk file is removed and reported, so a
        rerun redoes it."""
        path = self.chunk_path(index)
        try:
            with np.load(path, allow_pickle=False) as data:
                chunk = Chunk(
                    ids=[str(i) for i in data["ids"]],
                    status=data["status"],
                    reasons=[str(r) for r in data["reasons"]],
                    grids=data["grids"],
                )
        except _UNREADABLE_CHUNK as e:
            path.unlink(missing_ok=True)
            raise CacheError(
                f"work file {path} was damaged ({e}) and has been removed; run the same command again to recompute it"
            ) from e
        if chunk.ids != self.plan.chunk(index):
            path.unlink(missing_ok=True)
            raise CacheError(f"work file {path} holds other ids than the plan; removed it, run again")
        if chunk.grids.ndim != 4 or tuple(chunk.grids.shape[1:]) != shape.stored:
            path.unlink(missing_ok=True)
            raise CacheError(
                f"work file {path} holds grids of shape {chunk.grids.shape}, not {shape}; removed it, run again"
            )
        return chunk

    def missing_chunks(self) -> list[int]:
        return [i for i in self.plan.assigned_chunks() if not self.is_done(i)]

    def discard_damaged(self) -> list[Path]:
        """Remove finished-chunk files that cannot be opened or hold other ids; returns them.

        Renames are atomic and files are fsynced, so this only happens after a power loss or a
        hand edit; the removed chunks are then simply computed again. Only the ids are read,
        which keeps the check cheap.
        """
        damaged = []
        for index in self.plan.assigned_chunks():
            path = self.chunk_path(index)
            if not path.is_file():
                continue
            try:
                with np.load(path, allow_pickle=False) as data:
                    intact = [str(i) for i in data["ids"]] == self.plan.chunk(index)
            except _UNREADABLE_CHUNK:
                intact = False
            if not intact:
                path.unlink(missing_ok=True)
                damaged.append(path)
        return damaged

    def assemble(self, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write the cache at ``out`` (storage dtype ``manifest["dtype"]``) from the finished chunks,
        one chunk in memory at a time.

        Returns ``manifest`` completed with the per-status counts, as stored in the file.
        """
        assigned = self.plan.assigned_chunks()
        total = sum(len(self.plan.chunk(i)) for i in assigned)
        counts = {s.label: 0 for s in Status}
        shape = GridShape.from_manifest(manifest)
        with CacheWriter(out, self.root / ASSEMBLY_FILE, total, manifest["dtype"], shape) as writer:
            for index in assigned:
                chunk = self.read_chunk(index, shape)
                writer.append(chunk.ids, chunk.status, chunk.reasons, chunk.grids)
                for code in chunk.status:
                    counts[Status(code).label] += 1
            manifest = {**manifest, "counts": {"total": total, **counts}}
            writer.finish(dumps(manifest))
        return manifest

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            clear_work_folder(self.root)


def read_plan(root: Path) -> dict[str, Any] | None:
    """The plan stored in the work folder ``root`` as JSON, or None when there is none.

    A damaged plan file (it is written atomically, so only by hand) is an error, not "none".
    """
    path = root / PLAN_FILE
    if not path.is_file():
        return None
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CacheError(f"{path} is damaged ({' '.join(str(e).split())[:160]}); delete {root} to start over") from e
    except RecursionError:
        raise CacheError(f"{path} is damaged (nested too deeply); delete {root} to start over") from None
    if not isinstance(plan, dict):
        raise CacheError(f"{path} is damaged (not a JSON object); delete {root} to start over")
    return plan


def count_done(root: Path) -> tuple[int, int] | None:
    """(finished chunks, assigned chunks) of the work folder at ``root``, or None if there is none."""
    stored = read_plan(root)
    if stored is None:
        return None
    work = WorkDir(root, Plan.from_json(stored, root / PLAN_FILE))
    assigned = work.plan.assigned_chunks()
    return len(assigned) - len(work.missing_chunks()), len(assigned)
