"""The paper's own numbers (Yu et al., ACL 2020), transcribed from its Table 2 and Table 3.

Quoted beside ours by ``umt report --paper``. Keyed by our registered model names and our
dataset names; the scores are the paper's percentages as printed (single runs, test set),
turned into fractions by :func:`paper_scores` so that they go through the same formatting as
ours. Table 2 gives per-type F1 and overall P/R/F1; Table 3 (the ablations) overall P/R/F1 only.
Its "w/o ESD module" row is the same model as MT-BERT-CRF in Table 2 (and has the same numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The image backbone of the paper's text+image rows: Yu et al. read ResNet-152 grids (umt's default).
PAPER_BACKBONE = "resnet152"
#: The paper's entity types in its column order (Table 2: PER., LOC., ORG., MISC.).
PAPER_TYPES = ("PER", "LOC", "ORG", "MISC")
DATASETS = ("twitter2015", "twitter2017")


@dataclass(frozen=True)
class PaperScores:
    """One cell block of the paper: fractions in [0, 1]; ``per_type`` is F1 (empty for Table 3)."""

    method: str  # the row name the paper prints
    table: int
    precision: float
    recall: float
    f1: float
    per_type: dict[str, float]


# Table 2: PER LOC ORG MISC (F1 per type), then P R F1 overall; Twitter-2015, then Twitter-2017.
_TABLE2 = {
    "bilstm-crf": ("BiLSTM-CRF",
        (76.77, 72.56, 41.33, 26.80, 68.14, 61.09, 64.42),
        (85.12, 72.68, 72.50, 52.56, 79.42, 73.43, 76.31)),
    "cnn-bilstm-crf": ("CNN-BiLSTM-CRF",
        (80.86, 75.39, 47.77, 32.61, 66.24, 68.09, 67.15),
        (87.99, 77.44, 74.02, 60.82, 80.00, 78.76, 79.37)),
    "hbilstm-crf": ("HBiLSTM-CRF",
        (82.34, 76.83, 51.59, 32.52, 70.32, 68.05, 69.17),
        (87.91, 78.57, 76.67, 59.32, 82.69, 78.16, 80.37)),
    "bert-softmax": ("BERT",
        (84.72, 79.91, 58.26, 38.81, 68.30, 74.61, 71.32),
        (90.88, 84.00, 79.25, 61.63, 82.19, 83.72, 82.95)),
    "bert-crf": ("BERT-CRF",
        (84.74, 80.51, 60.27, 37.29, 69.22, 74.59, 71.81),
        (90.25, 83.05, 81.13, 62.21, 83.32, 83.57, 83.44)),
    "gvatt-hbilstm-crf": ("GVATT-HBiLSTM-CRF",
        (82.66, 77.21, 55.06, 35.25, 73.96, 67.90, 70.80),
        (89.34, 78.53, 79.12, 62.21, 83.41, 80.38, 81.87)),
    "adacan-cnn-bilstm-crf": ("AdaCAN-CNN-BiLSTM-CRF",
        (81.98, 78.95, 53.07, 34.02, 72.75, 68.74, 70.69),
        (89.63, 77.46, 79.24, 62.77, 84.16, 80.24, 82.15)),
    "gvatt-bert-crf": ("GVATT-BERT-CRF",
        (84.43, 80.87, 59.02, 38.14, 69.15, 74.46, 71.70),
        (90.94, 83.52, 81.91, 62.75, 83.64, 84.38, 84.01)),
    "adacan-bert-crf": ("AdaCAN-BERT-CRF",
        (85.28, 80.64, 59.39, 38.88, 69.87, 74.59, 72.15),
        (90.20, 82.97, 82.67, 64.83, 85.13, 83.20, 84.10)),
    "mt": ("MT-BERT-CRF",
        (85.30, 81.21, 61.10, 37.97, 70.48, 74.80, 72.58),
        (91.47, 82.05, 81.84, 65.80, 84.60, 84.16, 84.42)),
    "umt": ("UMT-BERT-CRF",
        (85.24, 81.58, 63.03, 39.45, 71.67, 75.23, 73.41),
        (91.56, 84.73, 82.24, 70.10, 85.28, 85.34, 85.31)),
}  # fmt: skip

# Table 3: P R F1 overall; Twitter-2015, then Twitter-2017.
_TABLE3 = {
    "umt": ("UMT-BERT-CRF", (71.67, 75.23, 73.41), (85.28, 85.34, 85.31)),
    "umt-no-esd": ("w/o ESD Module", (70.48, 74.80, 72.58), (84.60, 84.16, 84.42)),
    "umt-no-conversion": ("w/o Conversion Matrix", (70.43, 74.98, 72.63), (84.72, 84.97, 84.85)),
    "umt-no-image-aware-wr": ("w/o Image-Aware WR", (70.33, 75.44, 72.79), (83.83, 85.94, 84.87)),
    "umt-no-visual-gate": ("w/o Visual Gate", (71.34, 75.15, 73.19), (85.31, 84.68, 84.99)),
}

#: The full model and its ablations, in Table 3's order.
FULL_MODEL = "umt"
ABLATIONS = tuple(name for name in _TABLE3 if name != FULL_MODEL)


def paper_models(table: int) -> tuple[str, ...]:
    """The models the paper's Table ``table`` (2 or 3) has a row for."""
    return tuple({2: _TABLE2, 3: _TABLE3}[table])


def paper_scores(table: int, model: str, dataset: str) -> PaperScores | None:
    """The paper's scores of ``model`` on ``dataset`` in its Table ``table`` (2 or 3), as
    fractions; None where the paper has no such row or dataset."""
    if dataset not in DATASETS:
        return None
    column = DATASETS.index(dataset)
    if table == 2 and model in _TABLE2:
        method, *blocks = _TABLE2[model]
        *types, p, r, f1 = blocks[column]
        per_type = {name: value / 100 for name, value in zip(PAPER_TYPES, types, strict=True)}
        return PaperScores(method, 2, p / 100, r / 100, f1 / 100, per_type)
    if table == 3 and model in _TABLE3:
        method, *blocks = _TABLE3[model]
        p, r, f1 = blocks[column]
        return PaperScores(method, 3, p / 100, r / 100, f1 / 100, {})
    return None
