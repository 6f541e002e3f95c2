"""A case study in the spirit of the paper's Table 4: test posts on which the systems disagree.

One seed per dataset (seed 1 where the reference system has it, else its lowest), the reference
system (bert-crf in Table 2, the full umt in Table 3) and the other systems of the table that
were trained with images. Posts where the reference is wrong and another system right come
first, alternating with posts where the reference is right and another system wrong (the
stories of the paper's Figures 3 and 4); posts where every system is wrong in its own way last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, zip_longest

from umt.pipeline.errors import ConfigError
from umt.pipeline.report.predictions import Entity, Predictions, PredictionStore
from umt.pipeline.report.runs import Group, System

PREFERRED_SEED = 1


def show_entities(entities: frozenset[Entity], words: Sequence[str]) -> str:
    """``"Wolf Hall [MISC], London [LOC]"`` in text order; ``"(none)"`` for no entity."""
    spans = sorted(entities, key=lambda e: (e[1], e[2], e[0]))
    return ", ".join(f"{' '.join(words[start : end + 1])} [{kind}]" for kind, start, end in spans) or "(none)"


@dataclass(frozen=True)
class Case:
    """One test post: its words, gold entities and each system's predicted entities."""

    index: int  # 1-based position in the test file
    image: str
    words: tuple[str, ...]
    gold: frozenset[Entity]
    predicted: Mapping[str, frozenset[Entity]]  # system label -> entities

    def to_dict(self) -> dict:
        return {
            "post": self.index,
            "image": self.image,
            "text": " ".join(self.words),
            "gold": show_entities(self.gold, self.words),
            "predicted": {label: show_entities(e, self.words) for label, e in self.predicted.items()},
        }


@dataclass(frozen=True)
class CaseStudy:
    dataset: str
    seed: int | None
    systems: tuple[str, ...]  # labels, the reference first
    cases: tuple[Case, ...]
    note: str = ""  # systems left out, or why there is no case

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset, "seed": self.seed, "systems": list(self.systems),
            "cases": [case.to_dict() for case in self.cases], "note": self.note,
        }  # fmt: skip


def _ranked(
    gold: Sequence[frozenset[Entity]], predicted: Mapping[str, Sequence[frozenset[Entity]]], base: str
) -> list[int]:
    """Indices of the posts where the systems (label -> entities per post) disagree, most telling
    first (see the module doc)."""
    fixed, broken, rest = [], [], []
    for i, entities in enumerate(gold):
        post = {label: per_post[i] for label, per_post in predicted.items()}
        if len(set(post.values())) == 1:
            continue
        right = {label for label, found in post.items() if found == entities}
        if base in right:
            broken.append(i)
        elif right:
            fixed.append(i)
        else:
            rest.append(i)
    alternating = [i for i in chain.from_iterable(zip_longest(fixed, broken)) if i is not None]
    return alternating + rest


def case_study(
    dataset: str, reference: Group | None, others: Sequence[Group], store: PredictionStore, n: int
) -> CaseStudy:
    """Up to ``n`` posts of ``dataset``'s test set on which ``reference`` and ``others`` disagree."""
    if reference is None:
        return CaseStudy(dataset, None, (), (), "no run of the reference system on this dataset")
    seed = PREFERRED_SEED if PREFERRED_SEED in reference.seeds else reference.seeds[0]
    left_out = []
    try:
        base = store.load(reference.run_for(seed))
    except ConfigError as e:
        return CaseStudy(dataset, seed, (), (), str(e))
    chosen: dict[str, Predictions] = {}
    for group in others:
        run = group.run_for(seed)
        if run is None:
            left_out.append(f"{group.system.label} (no seed {seed})")
            continue
        try:
            predictions = store.load(run)
        except ConfigError as e:
            left_out.append(f"{group.system.label} ({e})")
            continue
        reason = base.difference(predictions)
        if reason is not None:
            left_out.append(f"{group.system.label} (other test posts: {reason})")
            continue
        chosen[group.system.label] = predictions
    note = f"left out: {'; '.join(left_out)}" if left_out else ""
    predicted = {reference.system.label: base.pred_entities, **{k: p.pred_entities for k, p in chosen.items()}}
    if not chosen:
        note = note or "no text+image system to compare with"
        return CaseStudy(dataset, seed, tuple(predicted), (), note)
    cases = tuple(
        Case(i + 1, base.images[i], base.words[i], base.gold_entities[i], {k: e[i] for k, e in predicted.items()})
        for i in _ranked(base.gold_entities, predicted, reference.system.label)[:n]
    )
    return CaseStudy(dataset, seed, tuple(predicted), cases, note)


def case_systems(systems: Sequence[System], reference: System) -> list[System]:
    """The systems a case study sets beside the reference: the table's other text+image rows (in
    Table 2 the text-only baselines would crowd the comparison), those trained without images too."""
    return [s for s in systems if s != reference and s.multimodal]
