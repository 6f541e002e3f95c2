"""umt: multimodal named entity recognition for social-media posts (UMT, Yu et al., ACL 2020).

The repository root is this package: ``umt.pipeline`` (the library), ``umt.cache`` (the HDF5
feature store), ``umt.stages`` (one module per command) and ``umt.cli`` (the ``umt`` command).

Public Python API::

    import umt
    run = umt.load("runs/twitter2017/umt/seed1")     # a trained model rebuilt from its run directory
    run.predict([["Kevin", "Durant", "enters", "Oracle", "Arena"]])   # word-level BIO2 tags

Importing ``umt`` is cheap: torch and transformers load on first use of :func:`load`.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from umt.pipeline.inference.trained import TrainedRun

try:
    __version__ = _metadata.version("umt")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__", "load"]


def load(run_dir: str | Path, device: str = "auto", quantize: str = "none") -> TrainedRun:
    """The trained model of ``run_dir``, rebuilt from that folder alone: a run directory ``umt
    train`` wrote, a folder ``umt export`` wrote, or a hub id ``owner/name`` (from the Hugging
    Face cache; see ``umt.pipeline.sharing.source``). ``quantize="int8"``: int8 dynamic
    quantization for faster CPU inference.

    Returns a :class:`umt.pipeline.inference.trained.TrainedRun`: its ``model`` (best dev
    checkpoint, eval mode), label ``vocab``, ``text`` side, ``config``, ``predict(posts)`` and
    ``tag(texts, images)``.
    """
    from umt.pipeline.inference.trained import load_run

    return load_run(run_dir, device=device, quantize=quantize)
