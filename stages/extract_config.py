"""Typed options of ``umt extract-images`` and ``umt cache info|merge``.

Kept free of torch and h5py imports so that the CLI, which reads its defaults from here, starts
in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigError

DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_FAILURES = 30


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
            raise ConfigError(f"--shard {text!r}: expected K/N, e.g. 2/4") from None
        if not 1 <= k <= n:
            raise ConfigError(f"--shard {text!r}: K must be between 1 and N")
        return cls(k, n)

    def path_for(self, out: Path) -> Path:
        """``feats.h5`` -> ``feats.shard-2-of-4.h5``: each shard writes its own file."""
        return out.with_name(f"{out.stem}.shard-{self.index}-of-{self.count}{out.suffix}")


@dataclass
class ExtractConfig:
    """Options of ``umt extract-images`` (the CLI help describes each)."""

    dataset: str | None = None
    data_root: Path | None = None
    images: Path | None = None
    ids_from: Path | None = None
    out: Path | None = None
    weights: str = "imagenet"
    dtype: str = "float16"
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    num_workers: int | None = None  # None: one on a CPU, up to eight on a GPU
    amp: bool = True
    shard: Shard | None = None
    strict: bool = False
    overwrite: bool = False


@dataclass
class InfoConfig:
    path: Path
    max_failures: int = DEFAULT_MAX_FAILURES  # 0 lists every failure


@dataclass
class MergeConfig:
    out: Path
    shards: list[Path] = field(default_factory=list)
    overwrite: bool = False
