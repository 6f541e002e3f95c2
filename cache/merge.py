"""Joining the shard files of ``umt extract-images --shard K/N`` into one cache.

Every shard records the plan it was cut from (the digest of the full sorted id list and the
batch size) and which shard it is. Merging checks that the shards are exactly shards 1..N of
the same plan made with the same settings, that no id appears twice, and that together they
cover the plan; then it copies the rows in id order. The result equals what one process
running the whole plan writes, bit for bit (only the provenance fields differ).

A shard file may be damaged or crafted: its "shard" and "plan" entries are checked to be objects
of the expected integers and text before they are used (a CacheError naming the file), and a
count of shards claiming a trillion is answered by naming only the first few absent.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umt.cache.errors import CacheError
from umt.cache.format import CacheWriter, Status
from umt.cache.lock import exclusive_lock
from umt.cache.manifest import created_now, dumps, identity, ids_digest, mismatches
from umt.cache.reader import FeatureCache, is_umt_cache, shown

#: Rows copied per read; bounds memory at about 25 MB (float32) whatever the cache size.
COPY_ROWS = 64
#: Absent shard indices named in the error; a crafted count may claim a trillion shards.
SHOWN_ABSENT = 10


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shard_of(cache: FeatureCache) -> tuple[int, int]:
    """(K, N) of the shard's --shard K/N."""
    shard = cache.manifest.get("shard")
    if not isinstance(shard, dict):
        raise CacheError(f"{cache.path} is not a shard (it was not made with --shard K/N)")
    index, count = shard.get("index"), shard.get("count")
    if not (_is_int(index) and _is_int(count) and 1 <= index <= count):
        raise CacheError(
            f"{cache.path} is damaged: its manifest's shard is {shown(shard)}, "
            'not {"index": K, "count": N} with integers 1 <= K <= N'
        )
    return index, count


def _plan_of(cache: FeatureCache) -> tuple[int, str]:
    """(total, ids_sha256) of the plan the shard was cut from."""
    plan = cache.manifest.get("plan")
    if plan is None:
        raise CacheError(f"{cache.path} is damaged: its manifest has no plan (the id list the shards were cut from)")
    if not (isinstance(plan, dict) and _is_int(plan.get("total")) and isinstance(plan.get("ids_sha256"), str)):
        raise CacheError(
            f"{cache.path} is damaged: its manifest's plan is {shown(plan)}, "
            "not an object with an integer total and an ids_sha256 text"
        )
    return plan["total"], plan["ids_sha256"]


def _absent(present: set[int], count: int) -> list[int]:
    """The first SHOWN_ABSENT indices of 1..count not in ``present``, without walking all of a huge count."""
    return list(itertools.islice((i for i in range(1, count + 1) if i not in present), SHOWN_ABSENT))


def _check_complete_set(caches: Sequence[FeatureCache]) -> list[FeatureCache]:
    """The caches ordered by shard index, if they are shards 1..N of one split, each once."""
    by_index: dict[int, FeatureCache] = {}
    counts = set()
    for cache in caches:
        index, count = _shard_of(cache)
        counts.add(count)
        if index in by_index:
            raise CacheError(f"shard {index} given twice: {by_index[index].path} and {cache.path}")
        by_index[index] = cache
    if len(counts) != 1:
        raise CacheError(f"the shards come from different splits (--shard K/N with N = {sorted(counts)})")
    (count,) = counts
    missing = count - len(by_index)  # every index lies in 1..count
    if missing:
        absent = _absent(set(by_index), count)
        more = f" and {missing - len(absent)} more" if missing > len(absent) else ""
        raise CacheError(f"shards {absent}{more} of {count} are missing; pass all {count} shard files")
    return [by_index[i] for i in range(1, count + 1)]


def _check_same_settings(shards: Sequence[FeatureCache]) -> None:
    first = identity(shards[0].manifest)
    for cache in shards[1:]:
        problems = mismatches(identity(cache.manifest), first)
        if problems:
            raise CacheError(f"{cache.path} was made with other settings than {shards[0].path}: " + "; ".join(problems))


def _sources(shards: Sequence[FeatureCache]) -> list[tuple[str, int, int]]:
    """(id, shard position, row) for every id, sorted by id; refuses an id held by two shards."""
    owner: dict[str, tuple[int, int]] = {}
    for position, cache in enumerate(shards):
        for row, image_id in enumerate(cache.ids):
            if image_id in owner:
                other = shards[owner[image_id][0]].path
                raise CacheError(f"image id {image_id!r} is in two shards: {other} and {cache.path}")
            owner[image_id] = (position, row)
    return [(image_id, *owner[image_id]) for image_id in sorted(owner)]


def _runs(sources: list[tuple[str, int, int]]) -> list[tuple[int, int, int]]:
    """Group output rows into (shard position, first row, row count) reads of consecutive rows."""
    runs: list[tuple[int, int, int]] = []
    for _, position, row in sources:
        if runs:
            last_pos, first, n = runs[-1]
            if last_pos == position and first + n == row and n < COPY_ROWS:
                runs[-1] = (position, first, n + 1)
                continue
        runs.append((position, row, 1))
    return runs


def merge_shards(out: Path, shard_paths: Sequence[Path], overwrite: bool = False) -> dict[str, Any]:
    """Write the cache ``out`` from all shards of one sharded extraction; returns its manifest."""
    out = Path(out)
    if not shard_paths:
        raise CacheError("no shard files given")
    if out.exists() and not overwrite:
        raise CacheError(f"{out} already exists; pass --overwrite to replace it")
    if (out.exists() or out.is_symlink()) and not is_umt_cache(out):
        raise CacheError(
            f"{out} exists and is not a umt feature cache; umt replaces only its own caches: choose another output"
        )
    shards = _check_complete_set([FeatureCache(p) for p in shard_paths])
    try:
        plans = [_plan_of(cache) for cache in shards]  # each one well formed; equal once the settings agree
        _check_same_settings(shards)
        sources = _sources(shards)
        total, digest = plans[0]
        ids = [image_id for image_id, _, _ in sources]
        if len(ids) != total or ids_digest(ids) != digest:
            raise CacheError(
                f"the shards hold {len(ids)} ids but their plan has {total} "
                "(or other ids): they are not the complete output of one sharded run"
            )
        counts = {s.label: 0 for s in Status}
        with exclusive_lock(out):
            tmp = out.with_name(out.name + ".merging")
            with CacheWriter(out, tmp, len(ids), shards[0].dtype, shards[0].shape) as writer:
                for position, first, n in _runs(sources):
                    cache = shards[position]
                    rows_ids = cache.ids[first : first + n]
                    labels = [cache.status(i) for i in rows_ids]
                    status = np.asarray([Status[label.upper()] for label in labels], dtype=np.uint8)
                    reasons = [cache.reason(i) for i in rows_ids]
                    grids = cache.stored_rows(first, first + n)[status == Status.OK]  # (n_ok, H, W, C)
                    writer.append(rows_ids, status, reasons, grids)
                    for label in labels:
                        counts[label] += 1
                manifest = {k: v for k, v in shards[0].manifest.items() if k != "shard"}
                manifest.update(
                    counts={"total": len(ids), **counts},
                    created=created_now(),
                    merged_from=[p.path.name for p in shards],
                )
                writer.finish(dumps(manifest))
    finally:
        for cache in shards:
            cache.close()
    return manifest
