"""The model card ``umt export`` writes: a ``README.md`` with the Hugging Face card metadata header.

The header (YAML between ``---`` lines) is what the hub indexes: ``library_name``,
``pipeline_tag: token-classification``, tags, the dataset, the encoder it started from
(``base_model``, only when that is a hub id rather than a local folder) and a ``model-index``
with the test scores, so the hub shows them. The body says what the model is, how it was
trained, its dev and test scores per type, what it is for and not for, and how to load it.
Every value comes from the run's own files: nothing is invented or left to fill in.
"""

from __future__ import annotations

import json
from typing import Any

from umt.pipeline.metrics import PRIMARY, pct
from umt.pipeline.run_dir import RunConfig

PAPER = (
    "Yu et al., ACL 2020: Improving Multimodal Named Entity Recognition via Entity Span Detection "
    "with Unified Multimodal Transformer"
)
CITATION = """@inproceedings{yu-etal-2020-improving,
    title = "Improving Multimodal Named Entity Recognition via Entity Span Detection with Unified
             Multimodal Transformer",
    author = "Yu, Jianfei and Jiang, Jing and Yang, Li and Xia, Rui",
    booktitle = "Proceedings of the 58th Annual Meeting of the Association for Computational Linguistics",
    year = "2020",
    pages = "3342--3352",
}"""
KNOWN_DATASETS = {
    "twitter2015": "Twitter-2015 (Zhang et al., AAAI 2018), as released with the UMT paper",
    "twitter2017": "Twitter-2017 (Lu et al., ACL 2018), as released with the UMT paper",
}
#: The training settings the card lists (TrainConfig / ModelConfig field names).
CARD_SETTINGS = ("epochs", "batch_size", "lr", "head_lr", "warmup", "weight_decay", "seed", "dropout", "max_length")
TYPE_ORDER = ("PER", "LOC", "ORG", "MISC", "OTHER")


def _yaml(value: Any) -> str:
    """A scalar as YAML: JSON's spelling of strings and numbers is valid YAML."""
    return json.dumps(value, ensure_ascii=False)


def _types(scores: dict) -> list[str]:
    names = list(scores.get("per_type", {}))
    return sorted(names, key=lambda t: (TYPE_ORDER.index(t) if t in TYPE_ORDER else len(TYPE_ORDER), t))


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


def _header(config: RunConfig, metrics: dict, name: str, recipe_help: str) -> list[str]:
    test = metrics.get("test", {}).get(PRIMARY, {})
    lines = [
        "---",
        "library_name: umt",
        "pipeline_tag: token-classification",
        "language:",
        "- en",
        "license: other",
        "tags:",
        *(f"- {tag}" for tag in ("named-entity-recognition", "multimodal", "mner", "twitter", "umt", config.model)),
        "datasets:",
        f"- {_yaml(config.dataset)}",
    ]
    encoder = config.model_cfg.encoder
    if config.text.get("kind") == "hf-subword" and _looks_like_hub_id(encoder):
        lines.append(f"base_model: {_yaml(encoder)}")
    if test:
        lines += [
            "model-index:",
            f"- name: {_yaml(name)}",
            "  results:",
            "  - task:",
            "      type: token-classification",
            "      name: Multimodal named entity recognition",
            "    dataset:",
            f"      name: {_yaml(config.dataset)}",
            f"      type: {_yaml(config.dataset)}",
            "      split: test",
            "    metrics:",
        ]
        for key in ("f1", "precision", "recall"):
            lines += [
                f"    - type: {key}",
                f"      value: {pct(test[key])}",
                f"      name: Test {key} (entity-level, micro, seqeval default scheme)",
            ]
    lines += [f"description: {_yaml(recipe_help)}", "---"]
    return lines


def _score_table(metrics: dict) -> list[str]:
    splits = [(label, metrics.get(key, {}).get(PRIMARY)) for key, label in (("valid", "dev"), ("test", "test"))]
    splits = [(label, scores) for label, scores in splits if scores]
    if not splits:
        return ["No scores were recorded for this run."]
    rows = ["| split | type | precision | recall | F1 | entities |", "|---|---|---|---|---|---|"]
    for label, scores in splits:
        for kind in [*_types(scores), "all"]:
            row = scores if kind == "all" else scores["per_type"][kind]
            shown = "**all (micro)**" if kind == "all" else kind
            rows.append(
                f"| {label} | {shown} | {pct(row['precision'])} | {pct(row['recall'])} | {pct(row['f1'])} "
                f"| {row['support']} |"
            )
    return rows


def model_card(config: RunConfig, metrics: dict, name: str, recipe_help: str, reads_images: bool) -> str:
    """The ``README.md`` of an exported model (module docstring)."""
    dataset = KNOWN_DATASETS.get(config.dataset, f"the dataset `{config.dataset}`")
    train, model = config.train_cfg, config.model_cfg
    settings = {**model.to_dict(), **train.to_dict()}
    images = (
        "It reads the post's image as a grid of ResNet-152 features "
        f"(`{json.dumps((config.cache or {}).get('manifest', {}).get('weights', {}), sort_keys=True)}`)."
        if reads_images
        else "It reads text only" + (" (trained with every image absent, `--no-images`)." if config.no_images else ".")
    )
    encoder = model.encoder if config.text.get("kind") == "hf-subword" else config.text.get("kind", "")
    types = ", ".join(_types(metrics.get("test", {}).get(PRIMARY, {}))) or "the dataset's types"
    body = [
        f"# {name}",
        "",
        f"A **{config.model}** multimodal named entity recognition model trained with "
        f"umt (an implementation of {PAPER}). {recipe_help}.",
        "",
        f"Given a social-media post (and its image), it finds the named entities and their types ({types}). " + images,
        "",
        "## Training",
        "",
        f"- data: {dataset}; model selected on the development split's F1, test scored once "
        f"(best epoch {metrics.get('best_epoch', '?')}, {metrics.get('train_seconds', '?')} s of training)",
        f"- text encoder: `{encoder}`; tweets split in the `{config.token_style}` style",
        *(f"- `{key}`: {settings[key]}" for key in CARD_SETTINGS if key in settings),
        "",
        "## Scores",
        "",
        "Entity-level precision, recall and F1 (%), seqeval's default (conlleval) scheme:",
        "",
        *_score_table(metrics),
        "",
        "## Intended use and limitations",
        "",
        "- For English social-media posts like the training data: short, informal, with @mentions, "
        "#hashtags and emoji. Scores on other text (news, long documents, other languages) will be lower "
        "and are not measured here.",
        "- The types are the dataset's; entities of other kinds are either missed or forced into one of them.",
        "- Each entity comes with the model's probability of it (`score`); treat low scores as uncertain.",
        "- Do not use it to identify, profile or track individuals: the training posts are public tweets "
        "about people, and the model's errors fall unevenly on names it has seen rarely.",
        "",
        "## How to use",
        "",
        "```bash",
        "# with umt installed (its README)",
        f'echo \'{{"text": "Kevin Durant enters Oracle Arena"}}\' | umt predict {name}',
        f"umt serve {name}        # a server and a page at http://127.0.0.1:8000",
        "```",
        "",
        "```python",
        "import umt",
        f'model = umt.load("{name}")   # a hub id, or this folder',
        'model.tag(["Kevin Durant enters Oracle Arena"])',
        "```",
        "",
        "The folder holds `config.json` (the run's settings), `labels.json`, `model.safetensors` "
        "(weights only: loading runs no code), `text/` (the tokenizer or vocabulary), `metrics.json` and "
        "`predictions_test.conll`.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(_header(config, metrics, name, recipe_help) + [""] + body)
