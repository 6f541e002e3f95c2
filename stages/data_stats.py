"""``umt data stats``: what a dataset holds, split by split.

Entities are counted the way they are scored (seqeval's default, see
:func:`pipeline.labels.bio_to_spans`), so the test column is the support of the reported F1.
Image files are looked up the way ``umt extract-images`` looks them up
(:func:`pipeline.data.images.resolve_image`), so "missing" here means missing there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from umt.pipeline.data.images import ImagePathError, resolve_image
from umt.pipeline.data.layout import default_data_root, images_dir, load_dataset
from umt.pipeline.data.types import Post
from umt.pipeline.errors import UmtError
from umt.pipeline.labels import INSIDE, bio_to_spans, split_label
from umt.stages.requests import DataStatsRequest

ALL = "all"


@dataclass(frozen=True)
class SplitStats:
    """Counts for one split (or for all of them together)."""

    split: str
    posts: int
    tokens: int
    unlabelled: int  # posts without labels (prediction input)
    entities: Counter[str]  # per type, seqeval way
    i_openers: int  # entities opened by an I- tag (after O or another type)
    image_ids: frozenset[str]
    no_image: int  # posts without an image reference
    missing_images: int | None  # distinct ids without a file; None when no image folder


def _has_file(images: Path, image: str) -> bool:
    """Whether the id has a usable file (one linking out of the folder is not: extraction refuses it)."""
    try:
        return resolve_image(images, image) is not None
    except ImagePathError:
        return False


def split_stats(split: str, posts: Sequence[Post], images: Path | None) -> SplitStats:
    entities: Counter[str] = Counter()
    i_openers = 0
    for post in posts:
        if post.labels is None:
            continue
        for entity_type, start, _ in bio_to_spans(post.labels):
            entities[entity_type] += 1
            i_openers += split_label(post.labels[start])[0] == INSIDE
    image_ids = frozenset(post.image for post in posts if post.image is not None)
    missing = None if images is None else sum(not _has_file(images, i) for i in image_ids)
    return SplitStats(
        split=split,
        posts=len(posts),
        tokens=sum(len(post) for post in posts),
        unlabelled=sum(post.labels is None for post in posts),
        entities=entities,
        i_openers=i_openers,
        image_ids=image_ids,
        no_image=sum(post.image is None for post in posts),
        missing_images=missing,
    )


def dataset_stats(data: dict[str, list[Post]], images: Path | None) -> list[SplitStats]:
    """One :class:`SplitStats` per split, then one for all splits together."""
    every = [post for posts in data.values() for post in posts]
    return [split_stats(split, posts, images) for split, posts in data.items()] + [split_stats(ALL, every, images)]


def stats_table(title: str, stats: Sequence[SplitStats]) -> Table:
    table = Table(title=title)
    table.add_column("")
    for s in stats:
        table.add_column(s.split, justify="right")

    def row(name: str, values: Sequence[object], style: str | None = None) -> None:
        table.add_row(Text(name), *(f"{v:,}" if isinstance(v, int) else Text(str(v)) for v in values), style=style)

    row("tweets", [s.posts for s in stats], style="bold")
    row("tokens", [s.tokens for s in stats])
    if any(s.unlabelled for s in stats):
        row("unlabelled tweets", [s.unlabelled for s in stats])
    types = sorted(set().union(*(s.entities for s in stats)))
    for entity_type in types:
        row(f"entities {entity_type}", [s.entities[entity_type] for s in stats])
    row("entities (all types)", [sum(s.entities.values()) for s in stats], style="bold")
    row("  opened by an I- tag", [s.i_openers for s in stats])
    row("distinct image ids", [len(s.image_ids) for s in stats])
    if any(s.no_image for s in stats):
        row("tweets without an image", [s.no_image for s in stats])
    if stats and stats[0].missing_images is not None:
        row("missing image files", [s.missing_images for s in stats])
    return table


def run(request: DataStatsRequest, console: Console | None = None) -> list[SplitStats]:
    """Load every split of the dataset and print its table and notes; return the numbers."""
    console = console or Console()
    dataset, data_root, images = request.dataset, request.data_root, request.images
    root = data_root if data_root is not None else default_data_root()
    if images is not None and not images.is_dir():
        raise UmtError(f"image folder {images} does not exist")
    folder = images if images is not None else images_dir(root, dataset)
    found = folder if folder.is_dir() else None
    stats = dataset_stats(load_dataset(root, dataset), found)
    console.print(stats_table(escape(f"{dataset} ({root})"), stats))
    total = stats[-1]
    if found is None:
        console.print(f"No image folder at {escape(str(folder))}: missing image files not counted (see --images).")
    if total.i_openers:
        console.print(
            f"{total.i_openers:,} I- tags open an entity (after O or another type): counted as entities, as "
            f"seqeval and conlleval score them; counting B- tags only would give "
            f"{sum(total.entities.values()) - total.i_openers:,} entities."
        )
    return stats
