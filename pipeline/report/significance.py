"""Is one system's test F1 really better than another's? Paired approximate randomisation.

The test (Noreen, 1989; the usual one for NER and parsing scores, e.g. Riezler and Maxwell,
2005): under the null hypothesis the two systems are exchangeable, so each test post's pair of
predictions may be swapped between them with probability 1/2. The statistic is the absolute
difference of micro F1 (seqeval's default scheme, entity level); after ``R`` random swap
patterns, ``p = (hits + 1) / (R + 1)`` where a hit is a pattern whose statistic reaches the
observed one (two-sided). Micro F1 is not a mean over posts, so the test works on each post's
(true positives, predicted, gold) counts, which add up to seqeval's score; the random patterns
are drawn from a fixed seed, so a report is reproducible.

Seeds: run ``s`` of system A is paired with run ``s`` of system B (same seed number), and the
(post, seed) pairs of every seed both have are pooled into one test: the statistic is the
difference of the F1 over all pooled predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from umt.pipeline.errors import ConfigError
from umt.pipeline.report.predictions import PredictionStore
from umt.pipeline.report.runs import Group, System

ALPHA = 0.05
DEFAULT_RESAMPLES = 10_000
RNG_SEED = 0
#: Upper bound on the swap patterns x posts held in memory at once.
_CHUNK_CELLS = 4_000_000


def micro_f1(counts: np.ndarray) -> np.ndarray | float:
    """F1 from summed (tp, predicted, gold) counts in the last axis: 2 tp / (predicted + gold), 0 if
    there is nothing to score (seqeval's zero_division=0)."""
    counts = np.asarray(counts, dtype=np.float64)
    tp, total = counts[..., 0], counts[..., 1] + counts[..., 2]
    f1 = np.divide(2 * tp, total, out=np.zeros_like(tp), where=total > 0)
    return float(f1) if f1.ndim == 0 else f1


def approximate_randomization(
    a: np.ndarray, b: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = RNG_SEED
) -> float:
    """Two-sided p-value that the micro F1 of ``a`` and ``b`` (per-post count arrays (posts, 3) of
    the same posts, in the same order) differ by chance."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"expected two count arrays of one shape (posts, 3), got {a.shape} and {b.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    observed = abs(micro_f1(a.sum(0)) - micro_f1(b.sum(0)))
    moved = b - a
    moved = moved[np.any(moved != 0, axis=1)]  # a swap of equal counts changes nothing
    total_a, total_b = a.sum(0), b.sum(0)
    rng = np.random.default_rng(seed)
    tolerance = 1e-12 * max(1.0, observed)  # an F1 equal to the observed one in exact arithmetic is a hit
    hits = 0
    chunk = max(1, _CHUNK_CELLS // max(1, len(moved)))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        swaps = rng.random((size, len(moved))) < 0.5
        shift = swaps.astype(np.float64) @ moved  # what the swapped posts move from B to A
        statistic = np.abs(micro_f1(total_a + shift) - micro_f1(total_b - shift))
        hits += int(np.count_nonzero(statistic >= observed - tolerance))
    return (hits + 1) / (resamples + 1)


@dataclass(frozen=True)
class Comparison:
    """System ``a`` against system ``b`` on one dataset's test set. ``p`` is None when the two
    could not be compared (``note`` says why: no common seed, other test posts, a missing file)."""

    dataset: str
    a: System
    b: System
    seeds: tuple[int, ...] = ()
    f1_a: float | None = None  # micro F1 over the pooled (post, seed) pairs
    f1_b: float | None = None
    p: float | None = None
    resamples: int = 0
    note: str = ""

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < ALPHA

    @property
    def verdict(self) -> str:
        """``"better"`` or ``"worse"`` (a than b, significantly), ``"n.s."``, or ``"not compared"``."""
        if self.p is None:
            return "not compared"
        if not self.significant:
            return "n.s."
        return "better" if self.f1_a > self.f1_b else "worse"

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset, "a": self.a.label, "b": self.b.label, "seeds": list(self.seeds),
            "f1_a": self.f1_a, "f1_b": self.f1_b, "p": self.p, "resamples": self.resamples,
            "verdict": self.verdict, "note": self.note,
        }  # fmt: skip


def paired_counts(a: Group, b: Group, store: PredictionStore) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """The seeds both groups have and the per-(post, seed) counts of each, pooled in one order.

    A ConfigError when there is no common seed, a predictions file cannot be read, or two runs
    were not scored on the same test posts (words and gold tags): such runs are not comparable.
    """
    seeds = tuple(sorted(set(a.seeds) & set(b.seeds)))
    if not seeds:
        raise ConfigError(f"no seed in common (seeds {list(a.seeds)} and {list(b.seeds)})")
    reference = store.load(a.run_for(seeds[0]))
    counts_a, counts_b = [], []
    for seed in seeds:
        pred_a, pred_b = store.load(a.run_for(seed)), store.load(b.run_for(seed))
        for other in (pred_a, pred_b):
            reason = reference.difference(other)
            if reason is not None:
                raise ConfigError(f"the test posts differ: {reason}")
        counts_a.append(pred_a.counts())
        counts_b.append(pred_b.counts())
    return seeds, np.concatenate(counts_a), np.concatenate(counts_b)


def compare(
    a: Group, b: Group, store: PredictionStore, resamples: int = DEFAULT_RESAMPLES, seed: int = RNG_SEED
) -> Comparison:
    """A against B on their paired seeds; a Comparison with ``p`` None (and why) if not comparable."""
    if a.dataset != b.dataset:
        raise ValueError(f"cannot compare runs of {a.dataset} with runs of {b.dataset}")
    try:
        seeds, counts_a, counts_b = paired_counts(a, b, store)
    except ConfigError as e:
        return Comparison(a.dataset, a.system, b.system, note=str(e))
    return Comparison(
        a.dataset, a.system, b.system, seeds,
        micro_f1(counts_a.sum(0)), micro_f1(counts_b.sum(0)),
        approximate_randomization(counts_a, counts_b, resamples, seed), resamples,
    )  # fmt: skip
