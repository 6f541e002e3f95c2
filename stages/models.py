"""``umt models``: the registered recipes, as the names ``umt train --model`` accepts."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from umt.pipeline.models.registry import get_recipe, model_names


def run(console: Console | None = None) -> None:
    table = Table("name", "images", "text side", "what it is")
    for name in model_names():
        recipe = get_recipe(name)
        kind = recipe.text.rpartition(":")[2] if isinstance(recipe.text, str) else recipe.text.__name__
        table.add_row(name, "yes" if recipe.multimodal else "no", kind, recipe.help)
    (console or Console()).print(table)
