"""A trained run tagging new posts: text or tokens, and an image file, id or nothing.

:class:`PostTagger` is what ``umt predict`` streams an input through, chunk by chunk, and what
``umt.load(run).tag(...)`` uses. Images reach the model one of two ways:

- ``features``: a cache from ``umt extract-images`` whose pinned settings match the run's (the
  post's ``image`` is an id in it);
- otherwise files, featurised on the fly exactly as the run's cache was
  (:class:`umt.pipeline.vision.online.ImageFeaturizer`, cached by content hash).

A model that reads no images (a text-only recipe, or a run trained ``--no-images``) ignores
them; :attr:`PostTagger.ignores_images` says so, and ``umt predict`` tells the user once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from umt.pipeline.data.images import resolve_image
from umt.pipeline.data.new_posts import BadLine, NewPost, from_text
from umt.pipeline.data.types import Post
from umt.pipeline.errors import ConfigError
from umt.pipeline.run_dir import TrainedRun
from umt.pipeline.tagging import Tagged
from umt.pipeline.text.tweets import check_style


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
    ):
        self.run = run
        self.style = check_style(style or run.config.token_style)
        self.images_dir = images_dir
        cfg = run.config.train_cfg
        cfg = replace(cfg, eval_batch_size=batch_size or cfg.eval_batch_size, num_workers=0)  # grids are in memory
        self.predictor = replace(run.predictor(), cfg=cfg)
        self.ignores_images = not run.multimodal or run.config.no_images
        self.stats = None if self.ignores_images else run.run.visual_stats()  # read once, not per chunk
        self.cache = None
        self.featurizer = None
        if self.ignores_images:
            return
        if features is not None:
            self.cache = run.features(features)
        else:
            from umt.pipeline.vision.online import ImageFeaturizer

            self.featurizer = ImageFeaturizer(
                run.config.features or {}, weights=weights, cache_dir=image_cache, device=run.device
            )

    def _image_keys(
        self, posts: list[NewPost], base: Path | None
    ) -> tuple[list[str | None], list[Path | None], dict[int, str]]:
        """Per post: the key its grid is found under, the file it came from, and the problems."""
        keys: list[str | None] = [None] * len(posts)
        paths: list[Path | None] = [None] * len(posts)
        problems: dict[int, str] = {}
        if self.ignores_images:
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
            path = resolve_image(self.images_dir, post.image)
            if path is None and base is not None:
                path = resolve_image(base, post.image)
            if path is None:
                where = f" (looked in {self.images_dir})" if self.images_dir is not None else " (use --images DIR)"
                problems[i] = f"image {post.image!r} not found{where}"
            else:
                paths[i] = path
        if self.featurizer is not None:
            wanted = [i for i, path in enumerate(paths) if path is not None]
            for i, outcome in zip(wanted, self.featurizer.featurize([paths[i] for i in wanted]), strict=True):
                if outcome.key is None:
                    problems[i] = f"unreadable image: {outcome.reason}"
                    paths[i] = None
                else:
                    keys[i] = outcome.key
        return keys, paths, problems

    def _features(self):
        if self.cache is not None:
            return self.cache
        if self.featurizer is None:
            return None
        grids = self.featurizer.features()
        if self.stats is None:
            return grids
        from umt.pipeline.data.visual_stats import StandardizedFeatures

        return StandardizedFeatures(grids, self.stats)

    def tag_posts(
        self, posts: list[NewPost], *, base: Path | None = None, explain: bool = False
    ) -> tuple[list[Result], list[BadLine]]:
        """Tag ``posts`` (one chunk); a post whose image cannot be had is a bad line, not tagged."""
        keys, paths, problems = self._image_keys(posts, base)
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
                dataset, [posts[i].text for i in taggable], [posts[i].offsets for i in taggable],
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
            raise ConfigError(f"post {bad[0].line - 1}: {bad[0].reason}")
        return [r.to_json() for r in results]
