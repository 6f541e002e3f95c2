"""Where caches live: a dataset's default cache, and the file of one shard of a split extraction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from umt.cache.errors import CacheError


def default_cache_path(data_root: Path | str, dataset: str, backbone: str) -> Path:
    """``<data root>/<dataset>_<backbone>.h5``, beside the ``<dataset>_images/`` folder it is made from."""
    return Path(data_root) / f"{dataset}_{backbone}.h5"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based), from ``--shard K/N``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise CacheError(f"--shard {text!r}: expected K/N, e.g. 2/4") from None
        if not 1 <= k <= n:
            raise CacheError(f"--shard {text!r}: K must be between 1 and N")
        return cls(k, n)

    def path_for(self, out: Path) -> Path:
        """``feats.h5`` -> ``feats.shard-2-of-4.h5``: each shard writes its own file."""
        return out.with_name(f"{out.stem}.shard-{self.index}-of-{self.count}{out.suffix}")
