"""Tagging new posts: valid BIO tags, entities with character offsets and span probabilities.

What ``umt predict`` and ``TrainedRun.tag`` return for each post, in the shape of Hugging
Face's token-classification pipeline (``aggregation_strategy="simple"``)::

    {"entity_group": "PER", "word": "Kevin Durant", "start": 0, "end": 12, "score": 0.98,
     "token_start": 0, "token_end": 2}

- ``start``/``end`` are character offsets into the post's text (``text[start:end] == word``);
  ``token_start``/``token_end`` index its tokens.
- ``tags`` are always a valid BIO2 sequence: an ``I-X`` that follows ``O`` or another type is
  read as opening an entity (the conlleval / seqeval-default reading the scores use) and
  written ``B-X``, so the entities are exactly those ``umt eval`` would count.
- ``score`` is the model's probability of the entity: that the tags, read as the scores read
  them, hold exactly this entity (its first word opens it, its other words continue it, the
  next word does not), summed over all tag sequences by the CRF's forward-backward
  (``CRFHead.entity_probabilities``); for a softmax head, the same event with independent
  words. It is read in the window that owns the entity's first word.
- With ``explain``, each entity also gets ``attention``: the mean over its words of their
  attention over the visual grid (7x7 for ResNet-152) (what ``--explain`` draws).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from umt.pipeline.batch import Batch, WindowRef
from umt.pipeline.heads.crf import Entity
from umt.pipeline.inference.windows import WindowMerge, tagging_mode
from umt.pipeline.labels import BEGIN, INSIDE, PREFIX_SEPARATOR, LabelVocab, bio_to_spans, spans_to_bio


@dataclass
class _Window:
    ref: WindowRef
    emissions: torch.Tensor  # (n, K) float32, the window's real words
    attention: torch.Tensor | None  # (n, grid) with explain


@dataclass
class Tagged:
    """One post's result: its tokens, valid BIO2 tags and entities (plain dicts, JSON-ready)."""

    tokens: list[str]
    tags: list[str]
    entities: list[dict] = field(default_factory=list)


def entity_dicts(
    tags: Sequence[str], text: str, offsets: Sequence[tuple[int, int]]
) -> list[tuple[str, int, int, dict]]:
    """(type, first token, end token, dict without score) for each entity of valid ``tags``."""
    out = []
    for entity_type, i, j in bio_to_spans(tags):
        start, end = offsets[i][0], offsets[j - 1][1]
        out.append(
            (
                entity_type,
                i,
                j,
                {
                    "entity_group": entity_type,
                    "word": text[start:end],
                    "start": start,
                    "end": end,
                    "token_start": i,
                    "token_end": j,
                },
            )
        )
    return out


@torch.inference_mode()
def tag_batches(
    model: torch.nn.Module,
    batches: Iterable[Batch],
    lengths: Sequence[int],
    texts: Sequence[str],
    offsets: Sequence[Sequence[tuple[int, int]]],
    tokens: Sequence[Sequence[str]],
    vocab: LabelVocab,
    device: torch.device,
    explain: bool = False,
) -> list[Tagged]:
    """Tag every post whose windows ``batches`` hold (post ``i`` has ``lengths[i]`` words)."""
    windows: list[list[_Window]] = [[] for _ in lengths]
    merge = WindowMerge(lengths)
    with tagging_mode(model, device), model.explaining() if explain else nullcontext():
        for batch in batches:
            batch = batch.to(device)
            emissions, _ = model.emissions(batch)  # (B, W, K)
            decoded = model.head.decode(emissions, batch.word_mask)
            attention = model.word_attention if explain else None  # (B, W, grid)
            for row, (ref, ids) in enumerate(zip(batch.refs, decoded, strict=True)):
                n = len(ids)
                windows[ref.post].append(
                    _Window(
                        ref, emissions[row, :n].float().cpu(), attention[row, :n].float().cpu() if explain else None
                    )
                )
                merge.add(ref, vocab.decode(ids))
    results = []
    for post, row in enumerate(merge.result()):
        tags = spans_to_bio(bio_to_spans(row), len(row))
        found = entity_dicts(tags, texts[post], offsets[post])
        by_window: dict[int, list[int]] = {}  # window -> its entities: one forward-backward per window
        for k, (_, i, _, _) in enumerate(found):
            by_window.setdefault(_owner(windows[post], i), []).append(k)
        for w, ks in by_window.items():
            window = windows[post][w]
            local = [_local(window, *found[k][:3], vocab) for k in ks]
            scores = model.head.entity_probabilities(window.emissions, local)
            for k, entity, score in zip(ks, local, scores, strict=True):
                found[k][3]["score"] = score
                if window.attention is not None:  # (grid,) the mean over the entity's words
                    words = window.attention[entity.start : entity.end]
                    found[k][3]["attention"] = words.mean(dim=0).numpy().astype(np.float32)
        results.append(Tagged(list(tokens[post]), tags, [entity for *_, entity in found]))
    return results


def _owner(windows: list[_Window], word: int) -> int:
    """The index of the window whose kept range holds ``word`` of the post."""
    for index, window in enumerate(windows):
        if word in window.ref.place.owned:
            return index
    raise RuntimeError(f"no window owns word {word}")


def _local(window: _Window, entity_type: str, i: int, j: int, vocab: LabelVocab) -> Entity:
    """Post words ``i:j`` of ``entity_type`` as an :class:`Entity` of ``window`` (clipped to its end)."""
    n = window.emissions.shape[0]
    begin, inside = (vocab.index(f"{prefix}{PREFIX_SEPARATOR}{entity_type}") for prefix in (BEGIN, INSIDE))
    offset = window.ref.place.offset
    return Entity(i - offset, min(j - offset, n), begin, inside)
