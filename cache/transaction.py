"""The write transaction of one cache: lock, up-to-date check, work folder, chunks, assemble, clean.

An extraction (``umt extract-images``) only decodes images and runs the backbone; everything
that makes writing the cache safe lives here::

    with CacheTransaction(out, overwrite=False) as tx:   # takes <out>.lock, or refuses at once
        if tx.prepare(plan, manifest):               # False: out is up to date, nothing to do
            ...expensive setup (load the model)...
            tx.begin()                                # creates or resumes <out>.partial/
            for index in tx.todo:
                tx.write(index, chunk)                # one durable file per finished chunk
            tx.commit()                               # assemble <out> atomically, drop the work folder

- The lock (:mod:`umt.cache.lock`) refuses a second writer of the same output at once.
- An existing ``out`` made with the same settings is up to date: nothing to do. One made with
  other settings is refused unless ``overwrite``.
- Unfinished work (:mod:`umt.cache.workdir`) with the same plan is resumed (its damaged chunk
  files are discarded and listed in ``damaged``); with another plan it is refused unless
  ``overwrite``. The folder is created only by :meth:`begin`, so a failing setup leaves nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType
from typing import Any

from umt.cache.errors import CacheError
from umt.cache.lock import HeldLock, exclusive_lock
from umt.cache.manifest import created_now, fingerprint, mismatches, normalise
from umt.cache.workdir import Chunk, Plan, WorkDir, partial_dir, read_plan


def _shard_key(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**fingerprint(manifest), "shard": manifest.get("shard")}


def existing_is_current(out: Path, manifest: dict[str, Any], overwrite: bool) -> bool:
    """True when ``out`` already holds this manifest's cache; refuses a different one unless ``overwrite``."""
    from umt.cache.reader import FeatureCache, is_umt_cache  # h5py: loaded after the lock is held

    if not out.exists() and not out.is_symlink():
        return False
    try:
        with FeatureCache(out) as existing:
            found = existing.manifest
    except CacheError as e:
        if overwrite and is_umt_cache(out):
            return False
        if not is_umt_cache(out):
            raise CacheError(
                f"{out} exists and is not a umt feature cache; umt replaces only its own caches: choose another --out"
            ) from None
        raise CacheError(f"{out} exists and is not a usable umt cache ({e}); pass --overwrite to replace it") from e
    problems = mismatches(_shard_key(found), _shard_key(manifest))
    if not problems:
        return True
    if overwrite:
        return False
    raise CacheError(
        f"{out} already exists and was made with other settings (" + "; ".join(problems) + "); "
        "pass --overwrite to replace it, or choose another --out"
    )


class CacheTransaction:
    """Writes the cache ``out`` for ``plan``; see the module docstring for the sequence."""

    def __init__(self, out: Path, *, overwrite: bool = False):
        self.out = Path(out)
        self.plan: Plan | None = None
        self.manifest: dict[str, Any] = {}
        self.overwrite = overwrite
        self.root = partial_dir(self.out)
        self.lock: HeldLock | None = None
        self.up_to_date = False
        self.todo: list[int] = []
        self.damaged: list[Path] = []
        self._stack = contextlib.ExitStack()
        self._work: WorkDir | None = None

    @property
    def resumed_chunks(self) -> int:
        """Chunks of this plan already finished by an earlier, interrupted run."""
        return len(self.plan.assigned_chunks()) - len(self.todo)

    def __enter__(self) -> CacheTransaction:
        """Take ``<out>.lock`` (CacheError at once when another process writes ``out``)."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.lock = self._stack.enter_context(exclusive_lock(self.out))
        return self

    def prepare(self, plan: Plan, manifest: dict[str, Any]) -> bool:
        """Decide what is left to do for ``plan``; False when ``out`` is already this cache.

        ``manifest`` is the cache's manifest less ``counts`` and ``created`` (added on commit).
        """
        self.plan, self.manifest = plan, manifest
        self.up_to_date = existing_is_current(self.out, manifest, self.overwrite)
        if self.up_to_date:
            if read_plan(self.root) == normalise(plan.to_json()):
                WorkDir(self.root, plan).remove()  # left by a run that died between rename and cleanup
            return False
        WorkDir.check(self.root, plan, reset=self.overwrite)
        work = WorkDir(self.root, plan)
        self.damaged = work.discard_damaged()
        self.todo = work.missing_chunks()
        return True

    def begin(self) -> None:
        """Create (or reopen) the work folder; call once the expensive setup has succeeded."""
        self._work = WorkDir.open(self.root, self.plan)

    def write(self, index: int, chunk: Chunk) -> None:
        """Save finished chunk ``index`` durably (safe from a background thread)."""
        if self._work is None:
            raise RuntimeError("CacheTransaction.write before begin()")
        self._work.write_chunk(index, chunk)

    def commit(self) -> dict[str, Any]:
        """Assemble ``out`` from every chunk, atomically, and remove the work folder; the manifest."""
        if self._work is None:
            self.begin()
        try:
            manifest = self._work.assemble(self.out, {**self.manifest, "created": created_now()})
        except OSError as e:  # h5py reports a full disk or a read-only folder as OSError
            raise CacheError(f"cannot write {self.out}: {e}") from e
        self._work.remove()
        return manifest

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()
