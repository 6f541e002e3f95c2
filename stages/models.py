"""``umt models``: the registered recipes, as the names ``umt train --model`` accepts."""

from __future__ import annotations

from rich.console import Console
from rich.table import Column, Table

from umt.pipeline.models.catalog import get_recipe, model_names
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.models.registry import SETTINGS, Recipe
from umt.pipeline.train_config import TrainConfig

_CHARACTERS = {"cnn": " + char CNN", "lstm": " + char BiLSTM", "none": ""}


def text_label(recipe: Recipe) -> str:
    """What reads the text, in words (without importing the text side)."""
    name = recipe.text.rpartition(":")[2] if isinstance(recipe.text, str) else recipe.text.__name__
    if name == "SubwordTextSide":
        return "BERT (sub-words)"
    if name == "WordTextSide":
        return f"words{_CHARACTERS[recipe.fixes.get('char_encoder', 'none')]} -> BiLSTM"
    return name


def fusion_label(recipe: Recipe) -> str:
    return recipe.fixes.get("fusion", "mmi").upper() if recipe.multimodal else "-"


def run(console: Console | None = None, defaults: bool = False) -> None:
    console = console or Console()
    table = Table("images", "text side", "fusion", "paper row: test F1 Twitter-2015 / 2017")
    table.columns.insert(0, Column("name", no_wrap=True))
    for name in model_names():
        recipe = get_recipe(name)
        table.add_row(
            name, "yes" if recipe.multimodal else "no", text_label(recipe), fusion_label(recipe), recipe.paper or "-"
        )
    console.print(table)
    if defaults:
        table = Table(
            Column("name", no_wrap=True),
            "what it is",
            "defaults (override with --set KEY=VALUE)",
            "--recipe paper: where it differs (Twitter-2017)",
        )
        for name in model_names():
            recipe = get_recipe(name)
            shown = ", ".join(f"{k}={v}" for k, v in recipe.defaults.items()) or "the general defaults"
            table.add_row(name, recipe.help, shown, _paper_differences(recipe))
        console.print(table)


def _paper_differences(recipe: Recipe) -> str:
    """The settings ``--recipe paper`` changes against ``--recipe default`` for ``recipe``."""
    if not recipe.paper_settings:
        return "-"
    resolved = {}
    for which in SETTINGS:
        model_cfg, train_cfg = recipe.defaulted(ModelConfig(), TrainConfig(), frozenset(), which, "twitter2017")
        resolved[which] = {**model_cfg.to_dict(), **train_cfg.to_dict()}
    changed = {k: v for k, v in resolved["paper"].items() if resolved["default"][k] != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "none"
