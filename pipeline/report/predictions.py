"""A finished run's test predictions (``predictions_test.conll``) as entities, post by post.

Entities are read with seqeval's own ``get_entities`` (the default scheme), so that counts made
here agree with the scores in ``metrics.json``: a post's entity is ``(type, first word, last
word)``, and one system's prediction is right about a gold entity when it predicts exactly that
span with that type (the paper's "strict match", footnote 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from umt.pipeline.errors import ConfigError
from umt.pipeline.report.runs import Run
from umt.pipeline.run_dir import RunDir

Entity = tuple[str, int, int]  # type, first word, last word (inclusive)
IMAGE_HEADER = "# image:"


def entities(tags: Sequence[str]) -> frozenset[Entity]:
    """The entities of one post's tags, as seqeval's default scheme reads them."""
    from seqeval.metrics.sequence_labeling import get_entities

    return frozenset(get_entities(list(tags)))


@dataclass(frozen=True)
class Predictions:
    """The test posts of one run: image id, words, gold tags and predicted tags of each post."""

    path: Path
    images: tuple[str, ...]
    words: tuple[tuple[str, ...], ...]
    gold: tuple[tuple[str, ...], ...]
    pred: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.words)

    @cached_property
    def gold_entities(self) -> tuple[frozenset[Entity], ...]:
        return tuple(entities(tags) for tags in self.gold)

    @cached_property
    def pred_entities(self) -> tuple[frozenset[Entity], ...]:
        return tuple(entities(tags) for tags in self.pred)

    def counts(self) -> np.ndarray:
        """Per post: true positives, predicted entities, gold entities (an int array (posts, 3))."""
        return entity_counts(self.gold_entities, self.pred_entities)

    def difference(self, other: Predictions) -> str | None:
        """Why ``other`` was not scored on the same test posts (words and gold tags), or None."""
        if len(self) != len(other):
            return f"{self.path} holds {len(self)} test posts, {other.path} {len(other)}"
        for i, (words, gold, other_words, other_gold) in enumerate(
            zip(self.words, self.gold, other.words, other.gold, strict=True), 1
        ):
            if words != other_words or gold != other_gold:
                what = "words" if words != other_words else "gold tags"
                return f"post {i} has other {what} in {self.path} than in {other.path}"
        return None


def entity_counts(gold: Sequence[frozenset[Entity]], pred: Sequence[frozenset[Entity]]) -> np.ndarray:
    """Per post (tp, predicted, gold): summed over posts they give seqeval's micro P/R/F1."""
    counts = [(len(g & p), len(p), len(g)) for g, p in zip(gold, pred, strict=True)]
    return np.array(counts, dtype=np.int64).reshape(-1, 3)  # (0, 3) for no post


def read_predictions(path: Path) -> Predictions:
    """Parse ``word<TAB>gold<TAB>predicted`` lines, a blank line between posts, ``# image: <id>``
    headers. A malformed line is a ConfigError naming the file and line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    posts: list[tuple[str, list[tuple[str, str, str]]]] = []
    image, rows = "-", []
    for number, line in enumerate(lines, 1):
        if line.startswith(IMAGE_HEADER):
            image = line[len(IMAGE_HEADER) :].strip()
        elif line.strip():
            fields = line.split("\t")
            if len(fields) != 3:
                raise ConfigError(f"{path}:{number}: expected word<TAB>gold<TAB>predicted, found {len(fields)} fields")
            rows.append((fields[0], fields[1], fields[2]))
        elif rows:
            posts.append((image, rows))
            image, rows = "-", []
    if rows:
        posts.append((image, rows))
    return Predictions(
        Path(path),
        tuple(image for image, _ in posts),
        tuple(tuple(w for w, _, _ in rows) for _, rows in posts),
        tuple(tuple(g for _, g, _ in rows) for _, rows in posts),
        tuple(tuple(p for _, _, p in rows) for _, rows in posts),
    )


class PredictionStore:
    """Reads each run's predictions once per report (comparisons, case study and figures share them)."""

    def __init__(self) -> None:
        self._read: dict[Path, Predictions] = {}

    def load(self, run: Run) -> Predictions:
        path = run.path / RunDir.PREDICTIONS
        if path not in self._read:
            self._read[path] = read_predictions(path)
        return self._read[path]
