"""The page's second view: a run's test predictions beside the gold entities.

Read once from the run's ``predictions_test.conll``; entities are read as the scores read them
(seqeval's default scheme, ``umt.pipeline.report.predictions``), with character offsets into the
post's words joined by spaces. A post's image is served only from the image folder the run
knows (``--images``, else ``<data_root>/<dataset>_images`` of its config), by the id its
predictions file names, confined to that folder like every image umt reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from umt.cache.durable import read_regular
from umt.pipeline.data.images import ImagePathError, resolve_image
from umt.pipeline.data.layout import images_dir
from umt.pipeline.report.predictions import Predictions, read_predictions
from umt.pipeline.run_dir import RunConfig, RunDir

FILTERS = ("all", "errors")
#: What the image endpoint answers for each format umt reads (by the file's first bytes).
MEDIA_TYPES = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def _spans(tokens: tuple[str, ...], entities) -> list[dict]:
    starts, cursor = [], 0
    for token in tokens:
        starts.append(cursor)
        cursor += len(token) + 1
    return [
        {
            "entity_group": kind,
            "start": starts[first],
            "end": starts[last] + len(tokens[last]),
            "token_start": first,
            "token_end": last + 1,
        }
        for kind, first, last in sorted(entities, key=lambda e: (e[1], e[2], e[0]))
    ]


@dataclass
class TestPredictions:
    predictions: Predictions
    folder: Path | None  # where the posts' images are, when the run knows

    @classmethod
    def of(cls, run: RunDir, config: RunConfig, images: Path | None) -> TestPredictions | None:
        """The run's test predictions, or None when it has none (an export without them)."""
        path = run.path / run.PREDICTIONS
        if not path.is_file() or path.is_symlink():
            return None
        folder = images
        if folder is None and config.data_root:
            folder = images_dir(Path(config.data_root), config.dataset)
        return cls(read_predictions(path), folder if folder is not None and folder.is_dir() else None)

    def __post_init__(self) -> None:
        p = self.predictions  # its entities read now (seqeval's import included), not on the first request
        self.types = sorted({kind for post in p.gold_entities + p.pred_entities for kind, *_ in post})

    def page(self, which: str, kind: str, offset: int, limit: int) -> dict:
        p = self.predictions
        chosen = []
        for i in range(len(p)):
            gold, pred = p.gold_entities[i], p.pred_entities[i]
            if which == "errors" and gold == pred:
                continue
            if kind and not any(e[0] == kind for e in gold | pred):
                continue
            chosen.append(i)
        posts = []
        for i in chosen[offset : offset + limit]:
            image = p.images[i]
            posts.append(
                {
                    "index": i,
                    "tokens": list(p.words[i]),
                    "text": " ".join(p.words[i]),
                    "gold": _spans(p.words[i], p.gold_entities[i]),
                    "pred": _spans(p.words[i], p.pred_entities[i]),
                    "correct": p.gold_entities[i] == p.pred_entities[i],
                    "image": image if image != "-" else None,
                    "image_url": f"/v1/images/{i}" if self._image_path(i) is not None else None,
                }
            )
        return {"total": len(chosen), "offset": offset, "limit": limit, "types": self.types, "posts": posts}

    def _image_path(self, index: int) -> Path | None:
        """The file of test post ``index``'s image inside the folder, or None."""
        if self.folder is None or not 0 <= index < len(self.predictions):
            return None
        image = self.predictions.images[index]
        if image == "-":
            return None
        try:
            return resolve_image(self.folder, image)
        except ImagePathError:
            return None

    def image(self, index: int, limit: int) -> tuple[bytes, str] | None:
        """The bytes and media type of test post ``index``'s image, or None when there is none to serve."""
        path = self._image_path(index)
        if path is None:
            return None
        try:
            data = read_regular(path, limit, follow_links=True, what="an image")
        except OSError:
            return None
        media = next((m for magic, m in MEDIA_TYPES if data.startswith(magic)), None)
        if media is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            media = "image/webp"
        return (data, media) if media is not None else None
