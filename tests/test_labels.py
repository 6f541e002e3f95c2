"""Labels: BIO2 parsing, spans read the seqeval way, the vocabulary and the conversion matrix."""

from __future__ import annotations

import random

import pytest
import torch
from seqeval.metrics.sequence_labeling import get_entities

from umt.pipeline.heads.conversion import conversion_matrix
from umt.pipeline.labels import (
    ESD_LABELS,
    LabelVocab,
    bio_to_spans,
    esd_tag,
    normalize_label,
    normalize_type,
    spans_to_bio,
    split_label,
)


def test_split_and_normalise_valid_labels():
    assert split_label("O") == ("O", None)
    assert split_label("B-PER") == ("B", "PER")
    assert split_label("I-WORK-OF-ART") == ("I", "WORK-OF-ART")
    assert normalize_label("I-OTHER") == "I-MISC"
    assert normalize_label("B-LOC") == "B-LOC"
    assert normalize_type("OTHER") == "MISC"
    assert normalize_type("PER") == "PER"


@pytest.mark.parametrize(
    "bad", ["X-PER", "BPER", "B_PER", "B-", "S-PER", "E-LOC", "b-PER", "B", "I", "", "o", "B-NEW YORK", "B- PER"]
)
def test_labels_outside_bio2_are_refused(bad):
    with pytest.raises(ValueError, match="label"):
        split_label(bad)
    with pytest.raises(ValueError):
        esd_tag(bad)


def test_esd_tag_drops_the_type():
    assert [esd_tag(t) for t in ["B-PER", "I-LOC", "O", "B-OTHER"]] == ["B", "I", "O", "B"]


@pytest.mark.parametrize(
    "tags, spans",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["O", "I-PER", "I-PER", "O"], [("PER", 1, 3)]),  # I- after O opens an entity
        (["I-ORG"], [("ORG", 0, 1)]),  # ... also at the start
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),  # a type change opens one
        (["B-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
        (["O", "O"], []),
        ([], []),
        (["B-MISC", "I-MISC"], [("MISC", 0, 2)]),  # an entity running to the end
    ],
)
def test_bio_to_spans(tags, spans):
    assert bio_to_spans(tags) == spans


def test_spans_to_bio_writes_b_then_i():
    assert spans_to_bio([("LOC", 3, 4), ("PER", 0, 2)], 5) == ["B-PER", "I-PER", "O", "B-LOC", "O"]
    assert spans_to_bio([], 2) == ["O", "O"]


@pytest.mark.parametrize("spans", [[("PER", 0, 2), ("LOC", 1, 3)], [("PER", 2, 5)], [("PER", 1, 1)], [("A B", 0, 1)]])
def test_spans_to_bio_refuses_bad_spans(spans):
    with pytest.raises(ValueError):
        spans_to_bio(spans, 4)


def _random_tags(rng: random.Random, types=("PER", "LOC", "ORG", "MISC")) -> list[str]:
    choices = ["O", *(f"{p}-{t}" for t in types for p in "BI")]
    return [rng.choice(choices) for _ in range(rng.randint(0, 12))]


def test_bio_to_spans_agrees_with_seqeval_on_random_sequences():
    rng = random.Random(0)
    for _ in range(2000):
        tags = _random_tags(rng)
        expected = [(t, start, end + 1) for t, start, end in get_entities(tags)]
        assert sorted(bio_to_spans(tags)) == sorted(expected), tags


def test_round_trips():
    rng = random.Random(1)
    for _ in range(500):
        tags = _random_tags(rng)
        spans = bio_to_spans(tags)
        canonical = spans_to_bio(spans, len(tags))
        assert bio_to_spans(canonical) == spans  # same entities
        assert spans_to_bio(bio_to_spans(canonical), len(tags)) == canonical  # a fixed point
        assert all(not t.startswith("I-") or canonical[i - 1][2:] == t[2:] for i, t in enumerate(canonical))


def test_vocab_from_sequences_uses_the_types_found_in_sorted_order():
    vocab = LabelVocab.from_sequences([["O", "B-PER", "I-PER"], ["B-OTHER", "O"], ["I-LOC"]])
    assert vocab.labels == ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER")
    assert vocab.types == ("LOC", "MISC", "PER")
    assert len(vocab) == 7
    assert vocab == LabelVocab.from_types(["PER", "OTHER", "LOC", "PER"])


def test_vocab_encode_decode_and_json_round_trip():
    vocab = LabelVocab.from_types(["ORG", "PER"])
    tags = ["O", "B-PER", "I-PER", "B-ORG"]
    ids = vocab.encode(tags)
    assert ids == [0, 3, 4, 1]
    assert vocab.decode(ids) == tags
    assert vocab.index("B-ORG") == 1
    assert LabelVocab.from_json(vocab.to_json()) == vocab
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.index("B-LOC")


def test_vocab_refuses_a_non_canonical_label_list():
    with pytest.raises(ValueError, match="canonical"):
        LabelVocab(("O", "B-PER", "I-PER", "B-LOC", "I-LOC"))
    with pytest.raises(ValueError, match="canonical"):
        LabelVocab.from_json({"labels": ["B-PER", "I-PER", "O"]})


def test_vocab_without_entities_is_only_o():
    assert LabelVocab.from_sequences([["O", "O"]]).labels == ("O",)


def test_conversion_matrix_follows_section_2_4():
    vocab = LabelVocab.from_types(["PER", "LOC", "ORG", "MISC"])
    w = conversion_matrix(vocab)
    assert w.shape == (len(ESD_LABELS), len(vocab)) and w.dtype == torch.float32
    for j, z in enumerate(ESD_LABELS):
        for k, y in enumerate(vocab.labels):
            corresponds = y == "O" if z == "O" else y.startswith(z + "-")
            assert w[j, k].item() == pytest.approx(0.25 if corresponds and z != "O" else float(corresponds))
    assert torch.allclose(w.sum(dim=1), torch.ones(3))


def test_conversion_matrix_for_an_unusual_type_set_and_esd_order():
    vocab = LabelVocab.from_types(["x", "Work-Of-Art", "Q"])
    w = conversion_matrix(vocab, esd_labels=("B", "I", "O"))
    assert w.shape == (3, 7)
    b_cols = [k for k, y in enumerate(vocab.labels) if y.startswith("B-")]
    assert w[0, b_cols].tolist() == pytest.approx([1 / 3] * 3)
    assert w[0].sum().item() == pytest.approx(1.0)
    assert w[2].tolist() == [1.0, 0, 0, 0, 0, 0, 0]
    assert conversion_matrix(LabelVocab.from_types([])).tolist() == [[1.0], [0.0], [0.0]]


def test_conversion_matrix_refuses_unknown_esd_labels():
    with pytest.raises(ValueError, match="ESD"):
        conversion_matrix(LabelVocab.from_types(["PER"]), esd_labels=("O", "B", "E"))
