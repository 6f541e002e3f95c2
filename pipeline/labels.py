"""Label vocabularies, BIO2 <-> spans and the ESD labels.

Labels follow BIO2: ``O``, ``B-<type>`` and ``I-<type>``. The entity types are whatever the
data contains (never a fixed list), except that Twitter-2015's ``OTHER`` is reported as
``MISC`` like the paper does (:func:`normalize_type`).

Spans are read the way seqeval's default mode and conlleval read them, because that is how
the paper's numbers were scored: an ``I-`` tag after ``O`` or after a tag of another type
opens a new entity instead of being dropped. Twitter-2015 has a few hundred such tags.

The entity span detection (ESD) task of section 2.4 uses the type-free labels B, I, O; the
conversion matrix that ties them to the typed labels (``umt.pipeline.heads.conversion``) is
built from label names alone, so it follows any type set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

OUTSIDE = "O"
BEGIN = "B"
INSIDE = "I"
ESD_LABELS: tuple[str, ...] = (OUTSIDE, BEGIN, INSIDE)
PREFIX_SEPARATOR = "-"

#: Type names that mean the same thing across datasets; the value is the name we report.
TYPE_ALIASES = {"OTHER": "MISC"}


def normalize_type(t: str) -> str:
    """The reported name of entity type ``t`` (``OTHER`` -> ``MISC``, others unchanged)."""
    return TYPE_ALIASES.get(t, t)


def _check_type(t: str, tag: str) -> None:
    if not t or any(ch.isspace() for ch in t):
        raise ValueError(f"bad entity type in label {tag!r}: types are non-empty and contain no spaces")


def split_label(tag: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", None)``; anything else is a ValueError.

    Only BIO2 is accepted: ``X-PER``, ``BPER``, ``B_PER``, ``S-PER`` (BIOES) and a bare ``B``
    are refused rather than guessed at, since a silently misread label corrupts every score.
    """
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, entity_type = tag.partition(PREFIX_SEPARATOR)
    if not sep or prefix not in (BEGIN, INSIDE):
        raise ValueError(f"unknown label {tag!r}: expected BIO2 labels 'O', 'B-<type>' or 'I-<type>'")
    _check_type(entity_type, tag)
    return prefix, entity_type


def normalize_label(tag: str) -> str:
    """Validate a BIO2 label and return it with its type normalised (``B-OTHER`` -> ``B-MISC``)."""
    prefix, entity_type = split_label(tag)
    if entity_type is None:
        return prefix
    return f"{prefix}{PREFIX_SEPARATOR}{normalize_type(entity_type)}"


def esd_tag(tag: str) -> str:
    """The ESD label of a BIO2 label: its type dropped (``B-PER`` -> ``B``, ``O`` -> ``O``)."""
    return split_label(tag)[0]


def bio_to_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities as ``(type, start, end_exclusive)``, read like seqeval's default scheme.

    An entity starts at every ``B-`` and at every ``I-`` whose predecessor is ``O`` or has
    another type; it continues over ``I-`` tags of its own type.
    """
    spans: list[tuple[str, int, int]] = []
    current: str | None = None  # type of the open entity
    start = 0
    for i, tag in enumerate(tags):
        prefix, entity_type = split_label(tag)
        if current is not None and (prefix != INSIDE or entity_type != current):
            spans.append((current, start, i))
            current = None
        if entity_type is not None and current is None:
            current, start = entity_type, i
    if current is not None:
        spans.append((current, start, len(tags)))
    return spans


def spans_to_bio(spans: Iterable[tuple[str, int, int]], length: int) -> list[str]:
    """BIO2 tags of ``length`` words with the given entities; spans must not overlap."""
    tags = [OUTSIDE] * length
    for entity_type, start, end in spans:
        _check_type(entity_type, f"{BEGIN}{PREFIX_SEPARATOR}{entity_type}")
        if not 0 <= start < end <= length:
            raise ValueError(f"span ({entity_type!r}, {start}, {end}) is outside 0..{length} or empty")
        if any(tag != OUTSIDE for tag in tags[start:end]):
            raise ValueError(f"span ({entity_type!r}, {start}, {end}) overlaps another span")
        tags[start] = f"{BEGIN}{PREFIX_SEPARATOR}{entity_type}"
        for i in range(start + 1, end):
            tags[i] = f"{INSIDE}{PREFIX_SEPARATOR}{entity_type}"
    return tags


def _labels_for(types: Iterable[str]) -> tuple[str, ...]:
    ordered = sorted({normalize_type(t) for t in types})
    for t in ordered:
        _check_type(t, f"{BEGIN}{PREFIX_SEPARATOR}{t}")
    typed = (f"{prefix}{PREFIX_SEPARATOR}{t}" for t in ordered for prefix in (BEGIN, INSIDE))
    return (OUTSIDE, *typed)


@dataclass(frozen=True)
class LabelVocab:
    """The BIO2 label set of a dataset: ``O`` first, then ``B-T``, ``I-T`` per type, types sorted.

    The order is canonical (checked on construction), so equal type sets give equal ids and a
    vocabulary saved in a run directory means the same thing when it is loaded back.
    """

    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        types = {split_label(label)[1] for label in self.labels} - {None}
        expected = _labels_for(types)
        if tuple(self.labels) != expected:
            raise ValueError(f"label vocabulary {list(self.labels)} is not in canonical order {list(expected)}")

    @classmethod
    def from_types(cls, types: Iterable[str]) -> LabelVocab:
        return cls(_labels_for(types))

    @classmethod
    def from_sequences(cls, seqs: Iterable[Sequence[str]]) -> LabelVocab:
        """The vocabulary of the types that occur in ``seqs`` (``OTHER`` read as ``MISC``)."""
        found = {split_label(tag)[1] for seq in seqs for tag in seq} - {None}
        return cls.from_types(found)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(t for prefix, t in map(split_label, self.labels) if prefix == BEGIN)

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        try:
            return self.labels.index(normalize_label(label))
        except ValueError:
            raise ValueError(f"label {label!r} is not in the vocabulary {list(self.labels)}") from None

    def encode(self, tags: Sequence[str]) -> list[int]:
        return [self.index(tag) for tag in tags]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.labels[i] for i in ids]

    def to_json(self) -> dict:
        return {"labels": list(self.labels)}

    @classmethod
    def from_json(cls, d: dict) -> LabelVocab:
        """A vocabulary read back from a file; anything but a canonical list of labels is a ValueError."""
        labels = d["labels"] if isinstance(d, dict) else None
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ValueError('expected {"labels": ["O", "B-<type>", ...]}')
        return cls(tuple(labels))
