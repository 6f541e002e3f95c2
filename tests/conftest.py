"""Fixtures shared by the test modules: a tiny local encoder and a small synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from umt.pipeline.data.synthetic import generate_synthetic
from umt.pipeline.tiny import build_tiny_encoder

#: Whole-word entries of the tiny vocabulary; any other word is spelled in single characters.
TINY_WORDS = ("Great", "to", "see", "today", "in", "the", "Jordan", "Paris", "Sydney", "Globex")
SYNTHETIC_NAME = "synth"


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer, 48-wide BERT with a cased WordPiece vocabulary, as a Hugging Face folder."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"), words=TINY_WORDS)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding ``synth/{train,valid,test}.txt`` and ``synth_images/`` (default sizes).

    Session-wide and shared: treat it as read-only.
    """
    root = tmp_path_factory.mktemp("synthetic_root")
    generate_synthetic(root, SYNTHETIC_NAME, seed=0)
    return root
