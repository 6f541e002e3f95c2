"""Fixtures shared by the test modules: a tiny local encoder and a small synthetic dataset."""

from __future__ import annotations

import random
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


PEOPLE = ["Anna", "Brian", "Chloe", "Dmitri", "Elena", "Farid"]
PLACES = ["Paris", "Lagos", "Osaka", "Quito", "Oslo", "Perth"]
FILLER = ["great", "day", "with", "today", "so", "happy", "the", "we", "love", "new"]


def _post(rng: random.Random) -> tuple[list[str], list[str]]:
    person, place = rng.choice(PEOPLE), rng.choice(PLACES)
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 3))]
    tokens = [*words, person, "visits", place, "!"]
    labels = ["O"] * len(words) + ["B-PER", "O", "B-LOC", "O"]
    return tokens, labels


def write_tiny_dataset(root: Path, name: str = "tiny", sizes=(48, 12, 12), seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder = root / name
    folder.mkdir(parents=True)
    for split, n in zip(("train", "valid", "test"), sizes, strict=True):
        lines = []
        for i in range(n):
            tokens, labels = _post(rng)
            lines.append(f"IMGID:{split}{i}")
            lines.extend(f"{t}\t{lab}" for t, lab in zip(tokens, labels, strict=True))
            lines.append("")
        (folder / f"{split}.txt").write_text("\n".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """``tiny/{train,valid,test}.txt``: 48/12/12 posts "<filler> <PER> visits <LOC> !" (read-only)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("data"))
