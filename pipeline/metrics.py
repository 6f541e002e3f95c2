"""Entity-level precision, recall and F1, overall (micro) and per type.

Two schemes are reported:

- ``default``: seqeval's default (conlleval-compatible) reading, where an ``I-`` tag that
  follows ``O`` or another type opens an entity. The paper's logs use it, so it is the score
  umt selects models on and prints first.
- ``strict_iob2``: seqeval's strict IOB2 mode, where such ``I-`` tags open nothing.

Scores are over *words*: every word of every post, including words the tokenizer drops or a
long post pushes into another window (``umt.pipeline.inference.windows`` guarantees one tag per word).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

SCHEMES = ("default", "strict_iob2")
PRIMARY = "default"
_AVERAGES = ("micro avg", "macro avg", "weighted avg")


def _report(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], strict: bool) -> dict:
    from seqeval.metrics import classification_report  # imports scikit-learn: a second, on first use
    from seqeval.scheme import IOB2

    kwargs = {"mode": "strict", "scheme": IOB2} if strict else {}
    with warnings.catch_warnings():  # seqeval warns (numpy) on empty averages; we report zeros
        warnings.simplefilter("ignore")
        report = classification_report(
            [list(s) for s in gold], [list(s) for s in pred], output_dict=True, zero_division=0, **kwargs
        )
    micro = report["micro avg"]
    out = {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "support": int(micro["support"]),
        "per_type": {},
    }
    for name, row in sorted(report.items()):
        if name in _AVERAGES:
            continue
        out["per_type"][name] = {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
    return out


def score(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """``{"default": {...}, "strict_iob2": {...}}``, each with P/R/F1/support and ``per_type``."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold posts but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"post {i}: {len(g)} gold tags but {len(p)} predicted")
    return {"default": _report(gold, pred, strict=False), "strict_iob2": _report(gold, pred, strict=True)}


def pct(x: float) -> str:
    """A score stored as a fraction, as people read it: a percentage with two decimals."""
    return f"{100 * x:.2f}"
