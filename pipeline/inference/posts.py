"""A trained run tagging new posts: text or tokens, and an image file, id or nothing.

:class:`PostTagger` is what ``umt predict`` streams an input through, chunk by chunk, and what
``umt.load(run).tag(...)`` uses. Images reach the model one of two ways:

- ``features``: a cache from ``umt extract-images`` whose pinned settings match the run's (the
  post's ``image`` is an id in it);
- otherwise files, featurised on the fly exactly as the run's cache was
  (:class:`umt.pipeline.vision.online.ImageFeaturizer`, cached by content hash).

A model that reads no images (a text-only recipe, or a run trained ``--no-images``) ignores
them; :attr:`PostTagger.ignores_images` says so, and ``umt predict`` tells the user once.

A post's ``image`` comes from an input file, so it names a file inside the image folders it is
looked for in (``images_dir``, then the input's own folder): an absolute path, ``..`` or a link
out of the folder is refused (``umt.pipeline.data.images``), unless ``any_image_path`` says the
input is trusted. Images given to :meth:`PostTagger.tag` from Python with no ``images_dir`` are
the program's own paths and are used as they are. Messages name the options of the front end
the tagger serves (``--images DIR`` on the command line, ``images_dir=`` in Python).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from umt.pipeline.data.images import ImagePathError, candidate_files, is_file, resolve_image
from umt.pipeline.data.new_posts import BadLine, NewPost, from_text
from umt.pipeline.data.types import Post
from umt.pipeline.errors import ConfigError
from umt.pipeline.inference.entities import Tagged
from umt.pipeline.text.tweets import check_style

if TYPE_CHECKING:
    from umt.pipeline.inference.trained import TrainedRun

#: How each front end spells the options a message may point to.
OPTION_NAMES = {
    "python": {
        "images": "images_dir=",
        "image_cache": "image_cache=",
        "weights": "weights=",
        "any_image_path": "any_image_path=True",
    },
    "server": {
        "images": "an uploaded image",
        "image_cache": "--image-cache DIR",
        "weights": "--weights PATH",
        "any_image_path": "an uploaded image",
    },
    "cli": {
        "images": "--images DIR",
        "image_cache": "--image-cache DIR",
        "weights": "--weights PATH",
        "any_image_path": "--any-image-path",
    },
}


@dataclass
class Result:
    post: NewPost
    tagged: Tagged
    image_path: Path | None  # the file the model saw, for --explain

    def to_json(self) -> dict:
        """The output record: line, id, text, tokens, valid BIO tags and the entity dicts."""
        record = {"line": self.post.line}
        if self.post.id is not None:
            record["id"] = self.post.id
        record.update(text=self.post.text, tokens=self.tagged.tokens, tags=self.tagged.tags)
        if self.post.image is not None:
            record["image"] = self.post.image
        record["entities"] = [{k: v for k, v in e.items() if k != "attention"} for e in self.tagged.entities]
        return record


class PostTagger:
    def __init__(
        self,
        run: TrainedRun,
        *,
        style: str | None = None,
        images_dir: Path | None = None,
        features: Path | None = None,
        weights: str | None = None,
        image_cache: Path | None = None,
        batch_size: int | None = None,
        any_image_path: bool = False,
        max_image_bytes: int | None = None,
        max_cache_bytes: int | None = None,
        front_end: str = "python",
    ):
        self.run = run
        self.style = check_style(style or run.config.token_style)
        self.images_dir = Path(images_dir) if images_dir is not None else None
        self.any_image_path = any_image_path
        self.names = OPTION_NAMES[front_end]
        cfg = run.config.train_cfg
        cfg = replace(cfg, eval_batch_size=batch_size or cfg.eval_batch_size, num_workers=0)  # grids are in memory
        self.predictor = replace(run.predictor(), cfg=cfg)
        self.ignores_images = run.ignores_images
        self.cache = None
        self.featurizer = None
        if self.ignores_images:
            return
        if features is not None:
            self.cache = run.features(features)
        else:
            from umt.pipeline.vision.online import ImageFeaturizer

            limits = {"max_image_bytes": max_image_bytes, "max_cache_bytes": max_cache_bytes}
            self.featurizer = ImageFeaturizer(
                run.config.cache or {},
                weights=weights,
                cache_dir=image_cache,
                device=run.device,
                cache_option=self.names["image_cache"],
                weights_option=self.names["weights"],
                **{k: v for k, v in limits.items() if v is not None},
            )

    def _image_keys(
        self, posts: list[NewPost], base: Path | None, uploads: Mapping[str, bytes] | None = None
    ) -> tuple[list[str | None], list[Path | None], dict[int, str]]:
        """Per post: the key its grid is found under, the file it came from, and the problems."""
        keys: list[str | None] = [None] * len(posts)
        paths: list[Path | None] = [None] * len(posts)
        problems: dict[int, str] = {}
        if self.ignores_images:
            return keys, paths, problems
        if uploads is not None:
            keys, problems = self._upload_keys(posts, uploads)
            return keys, paths, problems
        for i, post in enumerate(posts):
            if post.image is None:
                continue
            if self.cache is not None:
                if post.image not in self.cache:
                    problems[i] = f"image id {post.image!r} is not in the feature cache"
                else:
                    keys[i] = post.image
                continue
            paths[i], problem = self._find(post.image, base)
            if problem is not None:
                problems[i] = problem
        if self.featurizer is not None:
            wanted = [i for i, path in enumerate(paths) if path is not None]
            for i, outcome in zip(wanted, self.featurizer.featurize([paths[i] for i in wanted]), strict=True):
                if outcome.key is None:
                    problems[i] = f"unreadable image: {outcome.reason}"
                    paths[i] = None
                else:
                    keys[i] = outcome.key
        return keys, paths, problems

    def _upload_keys(
        self, posts: list[NewPost], uploads: Mapping[str, bytes]
    ) -> tuple[list[str | None], dict[int, str]]:
        """The grid keys of posts whose ``image`` names one of ``uploads``, and the problems."""
        if self.featurizer is None:
            raise ConfigError("uploaded images need the run's image featuriser (not a feature cache)")
        keys: list[str | None] = [None] * len(posts)
        problems = {i: f"no uploaded image {p.image!r}" for i, p in enumerate(posts) if p.image not in (None, *uploads)}
        wanted = [i for i, post in enumerate(posts) if post.image is not None and i not in problems]
        outcomes = self.featurizer.featurize_bytes([(posts[i].image, uploads[posts[i].image]) for i in wanted])
        for i, outcome in zip(wanted, outcomes, strict=True):
            if outcome.key is None:
                problems[i] = f"unreadable image: {outcome.reason}"
            else:
                keys[i] = outcome.key
        return keys, problems

    def _find(self, image: str, base: Path | None) -> tuple[Path | None, str | None]:
        """The file a post's ``image`` names, or why there is none (see the module docstring)."""
        folders = [f for f in (self.images_dir, base) if f is not None]
        hint = "" if self.images_dir is not None else f"; pass {self.names['images']}"
        if self.any_image_path or not folders:
            found = _anywhere(image, folders)
            where = ", ".join(str(f) for f in folders) or "the current folder"
            return found, None if found is not None else f"image {image!r} not found (looked in {where}){hint}"
        for folder in folders:
            try:
                found = resolve_image(folder, image)
            except ImagePathError as e:
                return None, f"{e}; pass {self.names['any_image_path']} to allow any path"
            if found is not None:
                return found, None
        where = " and ".join(str(f) for f in folders)
        return None, f"image {image!r} not found (looked in {where}){hint}"

    def _features(self):
        if self.cache is not None:
            return self.cache
        if self.featurizer is None:
            return None
        grids = self.featurizer.features()
        if self.run.visual_stats is None:
            return grids
        from umt.pipeline.data.visual_stats import StandardizedFeatures

        return StandardizedFeatures(grids, self.run.visual_stats)

    def tag_posts(
        self,
        posts: list[NewPost],
        *,
        base: Path | None = None,
        explain: bool = False,
        uploads: Mapping[str, bytes] | None = None,
    ) -> tuple[list[Result], list[BadLine]]:
        """Tag ``posts`` (one chunk); a post whose image cannot be had is a bad line, not tagged.
        With ``uploads`` (``umt serve``), a post's ``image`` names one of those bytes, never a file."""
        keys, paths, problems = self._image_keys(posts, base, uploads)
        bad = [BadLine(posts[i].line, reason) for i, reason in sorted(problems.items())]
        good = [i for i in range(len(posts)) if i not in problems]
        taggable = [i for i in good if posts[i].tokens]
        tagged: dict[int, Tagged] = {i: Tagged([], []) for i in good if not posts[i].tokens}
        if taggable:
            features = self._features()
            dataset = self.run.dataset(
                [Post(posts[i].tokens, None, keys[i], f"line {posts[i].line}") for i in taggable], features
            )
            results = self.predictor.tag(
                dataset,
                [posts[i].text for i in taggable],
                [posts[i].offsets for i in taggable],
                explain=explain and not self.ignores_images,
            )
            tagged.update(zip(taggable, results, strict=True))
        return [Result(posts[i], tagged[i], paths[i]) for i in good], bad

    def tag(
        self, texts: Sequence[str | Sequence[str]], images: Sequence[str | Path | None] | None = None
    ) -> list[dict]:
        """Entity dicts for each post: a text (tokenised here) or a list of tokens, with its image
        (a path or id, or None) when ``images`` is given. A problem with any image is an error."""
        if images is not None and len(images) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(images)} images")
        from umt.pipeline.data.new_posts import from_tokens

        posts = []
        for i, item in enumerate(texts):
            image = None if images is None or images[i] is None else str(images[i])
            if isinstance(item, str):
                posts.append(from_text(item, self.style, line=i + 1, image=image))
            else:
                posts.append(from_tokens(list(item), line=i + 1, image=image))
        results, bad = self.tag_posts(posts)
        if bad:
            raise ConfigError(f"texts[{bad[0].line - 1}]: {bad[0].reason}")
        return [r.to_json() for r in results]


def _anywhere(image: str, folders: list[Path]) -> Path | None:
    """The file for ``image`` taken as any path: itself when absolute, else under each folder (the
    current one when none), as named or with an image extension; only regular files count."""
    path = Path(image).expanduser()
    bases = [Path()] if path.is_absolute() or not folders else folders
    return next((c for base in bases for c in candidate_files(base, str(path)) if is_file(c)), None)
