"""A small deterministic multimodal NER sample in which the image matters.

``generate_synthetic(root)`` writes ``<root>/synth/{train,valid,test}.txt`` in the Twitter
format and ``<root>/synth_images/`` with one drawn image per post. Same seed, same bytes.

What the sample contains (types PER, LOC, ORG, MISC):

- **image-decided posts** (~35%): an ambiguous name (``Jordan``, ``Sydney``, ``Atlas Quinn``...)
  in a type-neutral sentence (``Great to see Jordan today``). The name's type is drawn
  uniformly at random and shown only by the image, so text alone cannot beat chance on them.
  Ambiguous names appear nowhere else, so the entities spelled as one of
  :data:`AMBIGUOUS_NAMES` are exactly the image-decided ones (the demo scores them apart);
- **several entities, one shown** (~25%): an image-decided name plus a second entity whose type
  the text makes plain (``... live from Oslo``, ``... working at Globex``); the image shows
  only the first one's type, which may differ from the second's. A model that trusts the
  image for every entity gets the second one wrong: the bias the paper's ESD module targets;
- **text-decided posts** (~20%): entities whose name and context give the type;
  half of them with an image showing the first entity's type, half with a neutral image;
- **plain posts** (~20%): ordinary sentences without entities, with a neutral image.

Posts also carry mentions, hashtags, links and now and then a zero-width space token (a word
that yields no sub-word piece), all labelled O. One post per split points at an image file
that is not written, to exercise the "missing" path.

The image cue. Stage one runs a ResNet-152, and the demo has no pretrained weights, so the cue
must survive a randomly initialised network, which tells small shapes apart poorly but keeps
the overall colour of the frame. Each type therefore owns a full-frame background colour and,
as a second cue, a large shape of a slightly darker shade of it (PER circle, LOC triangle,
ORG square, MISC diamond); neutral images are grey with a grey shape. Colours, sizes, aspect
ratios, shape positions and a faint mark vary from image to image; sharp marks in random
colours drown the cue, so there is at most one and it is faint.

Why these colours (:data:`TYPE_CUES`): a fresh ResNet in eval mode has no bias anywhere
(convolutions without bias, batch norm with zero running mean and unit variance), so its
features scale with the input and, for a flat image, depend on the direction of the
ImageNet-normalised colour; a random ReLU network also confuses opposite directions. Saturated
red and green (nearly opposite) were confused a quarter of the time; with the colours chosen
so that no two are near-opposite, nearest centroid on standardised mean-pooled features of
100 saved-and-reloaded images (4 types plus neutral, half held out, 10 splits) recovers the
class 97% of the time and logistic regression 100% (``torch.manual_seed(0)``; the slow test in
``tests/test_synthetic.py`` keeps a check on it). The raw features are ~3e7 in magnitude.

Files are mixed: mostly JPEG, some PNG, some PNG content under a ``.jpg`` name, and a few
RGBA, palette (P) and CMYK-JPEG files; some neutral images are grey-scale (L), no type image
is, so the colour cue is never lost.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from umt.pipeline.data.layout import SPLITS, dataset_dir, images_dir
from umt.pipeline.data.twitter import IMAGE_PREFIX, SEPARATOR
from umt.pipeline.data.types import Post
from umt.pipeline.labels import BEGIN, INSIDE, OUTSIDE, PREFIX_SEPARATOR

PLACEHOLDER = "{}"
ZERO_WIDTH_SPACE = "\u200b"

# ---- the text world ----------------------------------------------------------------------

#: Names whose type no text context reveals: the image decides.
AMBIGUOUS_NAMES = (
    "Jordan", "Morgan", "Phoenix", "Sydney", "Austin", "Chelsea", "Madison", "Florence",
    "Victoria", "Georgia", "Dakota", "Savannah", "Lincoln", "Aurora", "Atlas Quinn", "Nova Kestrel",
)  # fmt: skip
NEUTRAL_TEMPLATES = (
    "Great to see {} today", "Can't stop thinking about {}", "{} is trending again",
    "Everyone loves {} right now", "What a day for {} !", "Still talking about {} .",
    "Throwback to {} #tbt", "Thank you {} !", "{} , you made my week", "All eyes on {} tonight",
)  # fmt: skip
#: Names that belong to one type, and contexts that make the type plain.
TYPED_NAMES = {
    "PER": ("Maria Lopez", "Kofi Mensah", "Aiko Tanaka", "John Smith", "Priya Patel", "Lars Berg"),
    "LOC": ("Lisbon", "Nairobi", "Oslo", "Lima", "Kyoto", "Quebec City"),
    "ORG": ("Globex", "Initech", "Acme Corp", "Stark Industries", "Umbrella Labs"),
    "MISC": ("Eurovision", "Olympics", "Ramadan", "Oscars", "World Cup"),
}
TYPED_CONTEXTS = {
    "PER": ("congrats to {} on the new album", "interview with {} tonight", "happy birthday {} !",
            "{} said she is retiring"),
    "LOC": ("live from {}", "flying to {} tomorrow", "the weather in {} is perfect", "streets of {}"),
    "ORG": ("working at {} now", "{} shares rose again", "{} announced new jobs", "a statement from {}"),
    "MISC": ("watching the {} tonight", "{} starts next week", "ready for the {} #excited",
             "tickets for the {}"),
}  # fmt: skip
#: In text-decided posts: how often a second entity follows, how often the image shows the first.
SECOND_ENTITY_RATE = 0.5
SHOWN_RATE = 0.5
PLAIN_SENTENCES = (
    "just had the best coffee ever", "can't believe it is monday again", "so tired but happy",
    "new blog post is up", "who else is watching this", "rain all day , staying in",
    "this song is stuck in my head", "finally finished the book", "good morning everyone",
    "what are you doing this weekend ?",
)  # fmt: skip
CONNECTORS = ("and", ",", "-", "while")
#: Extra O tokens appended to posts, for realistic noise; the zero-width space has no pieces.
NOISE_TOKENS = ("#nofilter", "lol", "!!", ":)", "#news", "RT")
NOISE_RATE = 0.3
ZERO_WIDTH_RATE = 0.03
LINK_RATE = 0.2
MENTION_RATE = 0.2

# ---- the image world ---------------------------------------------------------------------


@dataclass(frozen=True)
class Cue:
    colour: tuple[int, int, int]
    shape: str


#: Colours chosen by probing an untrained ResNet-152 (see the module docstring for why).
TYPE_CUES = {
    "PER": Cue((220, 40, 120), "circle"),
    "LOC": Cue((15, 70, 25), "triangle"),
    "ORG": Cue((120, 180, 255), "square"),
    "MISC": Cue((250, 230, 90), "diamond"),
}
NEUTRAL_CUE = Cue((128, 128, 128), "")
NEUTRAL_SHAPES = ("circle", "triangle", "square", "diamond")
SIZE_RANGE = (64, 128)  # pixels, width and height drawn separately
COLOUR_JITTER = 15  # per channel
SHAPE_SHADE = 0.9  # the shape is this fraction of the background's brightness
SHAPE_RADIUS = (0.3, 0.42)  # fraction of the shorter side
SHAPE_SHIFT = 0.1  # centre moves up to this fraction of the frame
MARKS = (0, 1)  # faint marks per image
MARK_RADIUS = (3, 8)
MARK_CONTRAST = 30
JPEG_QUALITY = 90
PALETTE_COLOURS = 64
#: (weight, PIL format, mode, extension); the first row is the default.
TYPE_FILE_KINDS = (
    (60, "JPEG", "RGB", ".jpg"),
    (15, "PNG", "RGB", ".png"),
    (10, "PNG", "RGB", ".jpg"),  # PNG content under a .jpg name, as in the real image sets
    (5, "PNG", "RGBA", ".jpg"),
    (5, "PNG", "P", ".png"),
    (5, "JPEG", "CMYK", ".jpg"),
)
NEUTRAL_FILE_KINDS = (*TYPE_FILE_KINDS, (15, "PNG", "L", ".png"), (10, "JPEG", "L", ".jpg"))
MISSING_PER_SPLIT = 1

DEFAULT_SIZES = {"train": 300, "valid": 100, "test": 100}

# ---- posts -------------------------------------------------------------------------------


@dataclass
class _Draft:
    tokens: list[str]
    labels: list[str]
    shown: str | None  # the type the image shows, None for a neutral image


def _words(text: str) -> list[str]:
    return text.split(" ")


def _fill(template: str, name: str, entity_type: str) -> tuple[list[str], list[str]]:
    """Tokens and labels of a template with ``name`` (of ``entity_type``) in its slot."""
    tokens: list[str] = []
    labels: list[str] = []
    for word in _words(template):
        if word == PLACEHOLDER:
            parts = _words(name)
            tokens += parts
            labels += [f"{BEGIN if i == 0 else INSIDE}{PREFIX_SEPARATOR}{entity_type}" for i in range(len(parts))]
        else:
            tokens.append(word)
            labels.append(OUTSIDE)
    return tokens, labels


def _image_decided(rng: random.Random) -> _Draft:
    entity_type = rng.choice(sorted(TYPE_CUES))
    tokens, labels = _fill(rng.choice(NEUTRAL_TEMPLATES), rng.choice(AMBIGUOUS_NAMES), entity_type)
    return _Draft(tokens, labels, entity_type)


def _text_decided_clause(rng: random.Random) -> tuple[list[str], list[str], str]:
    entity_type = rng.choice(sorted(TYPED_CONTEXTS))
    name = rng.choice(TYPED_NAMES[entity_type])
    tokens, labels = _fill(rng.choice(TYPED_CONTEXTS[entity_type]), name, entity_type)
    return tokens, labels, entity_type


def _several_one_shown(rng: random.Random) -> _Draft:
    draft = _image_decided(rng)
    tokens, labels, _ = _text_decided_clause(rng)
    draft.tokens += [rng.choice(CONNECTORS), *tokens]
    draft.labels += [OUTSIDE, *labels]
    return draft


def _text_decided(rng: random.Random) -> _Draft:
    tokens, labels, first_type = _text_decided_clause(rng)
    if rng.random() < SECOND_ENTITY_RATE:
        more, more_labels, _ = _text_decided_clause(rng)
        tokens += [rng.choice(CONNECTORS), *more]
        labels += [OUTSIDE, *more_labels]
    return _Draft(tokens, labels, first_type if rng.random() < SHOWN_RATE else None)


def _plain(rng: random.Random) -> _Draft:
    tokens = _words(rng.choice(PLAIN_SENTENCES))
    return _Draft(tokens, [OUTSIDE] * len(tokens), None)


#: (share of posts, builder)
POST_KINDS: tuple[tuple[float, Callable[[random.Random], _Draft]], ...] = (
    (0.35, _image_decided),
    (0.25, _several_one_shown),
    (0.20, _text_decided),
    (0.20, _plain),
)


def _add_noise(draft: _Draft, rng: random.Random) -> None:
    """Mentions, links, hashtags and zero-width spaces, all O, at random places."""
    extras = []
    if rng.random() < MENTION_RATE:
        draft.tokens.insert(0, f"@user{rng.randrange(1000)}")
        draft.labels.insert(0, OUTSIDE)
    if rng.random() < NOISE_RATE:
        extras.append(rng.choice(NOISE_TOKENS))
    if rng.random() < ZERO_WIDTH_RATE:
        extras.append(ZERO_WIDTH_SPACE)
    if rng.random() < LINK_RATE:
        extras.append(f"http://t.co/{rng.getrandbits(40):010x}")
    draft.tokens += extras
    draft.labels += [OUTSIDE] * len(extras)


def _draft(rng: random.Random) -> _Draft:
    weights, builders = zip(*POST_KINDS, strict=True)
    draft = rng.choices(builders, weights=weights)[0](rng)
    _add_noise(draft, rng)
    return draft


# ---- images ------------------------------------------------------------------------------


def _jitter(colour: Sequence[int], rng: random.Random, amount: int) -> tuple[int, ...]:
    return tuple(min(255, max(0, c + rng.randint(-amount, amount))) for c in colour)


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    return [(cx - r, cy - r), (cx + r, cy + r)]  # bounding box of a circle or square


def draw_image(cue: Cue, rng: random.Random) -> Image.Image:
    """An RGB image whose background colour and large shape carry ``cue``."""
    width, height = rng.randint(*SIZE_RANGE), rng.randint(*SIZE_RANGE)
    background = _jitter(cue.colour, rng, COLOUR_JITTER)
    image = Image.new("RGB", (width, height), background)
    pen = ImageDraw.Draw(image)
    shape = cue.shape or rng.choice(NEUTRAL_SHAPES)
    fill = tuple(round(c * SHAPE_SHADE) for c in background)
    side = min(width, height)
    cx = width / 2 + rng.uniform(-SHAPE_SHIFT, SHAPE_SHIFT) * width
    cy = height / 2 + rng.uniform(-SHAPE_SHIFT, SHAPE_SHIFT) * height
    points = _shape_points(shape, cx, cy, side * rng.uniform(*SHAPE_RADIUS))
    if shape == "circle":
        pen.ellipse(points, fill=fill)
    elif shape == "square":
        pen.rectangle(points, fill=fill)
    else:
        pen.polygon(points, fill=fill)
    for _ in range(rng.randint(*MARKS)):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randint(*MARK_RADIUS)
        pen.ellipse([x - r, y - r, x + r, y + r], fill=_jitter(background, rng, MARK_CONTRAST))
    return image


def _save(image: Image.Image, folder: Path, image_id: str, kinds: Sequence[tuple], rng: random.Random) -> None:
    weights = [kind[0] for kind in kinds]
    _, image_format, mode, extension = rng.choices(kinds, weights=weights)[0]
    if mode == "P":
        image = image.quantize(PALETTE_COLOURS)
    else:
        image = image.convert(mode)
    options = {"quality": JPEG_QUALITY} if image_format == "JPEG" else {}
    image.save(folder / f"{image_id}{extension}", format=image_format, **options)


# ---- the dataset -------------------------------------------------------------------------


def _write_split(path: Path, drafts: Sequence[_Draft], ids: Sequence[str]) -> None:
    blocks = []
    for draft, image_id in zip(drafts, ids, strict=True):
        lines = [f"{IMAGE_PREFIX}{image_id}"]
        lines += [f"{token}{SEPARATOR}{label}" for token, label in zip(draft.tokens, draft.labels, strict=True)]
        blocks.append("\n".join(lines) + "\n")
    path.write_text("\n".join(blocks), encoding="utf-8", newline="\n")


def generate_synthetic(
    root: Path,
    name: str = "synth",
    seed: int = 0,
    n_train: int = DEFAULT_SIZES["train"],
    n_valid: int = DEFAULT_SIZES["valid"],
    n_test: int = DEFAULT_SIZES["test"],
) -> Path:
    """Write the sample under ``root`` (see the module docstring) and return its dataset folder."""
    rng = random.Random(seed)
    sizes = dict(zip(SPLITS, (n_train, n_valid, n_test), strict=True))
    out, pictures = dataset_dir(root, name), images_dir(root, name)
    out.mkdir(parents=True, exist_ok=True)
    pictures.mkdir(parents=True, exist_ok=True)
    ids = iter(str(i) for i in rng.sample(range(10**6, 10**7), sum(sizes.values())))
    for split, size in sizes.items():
        drafts = [_draft(rng) for _ in range(size)]
        split_ids = [next(ids) for _ in drafts]
        missing = set(rng.sample(range(size), min(MISSING_PER_SPLIT, size)))
        for index, (draft, image_id) in enumerate(zip(drafts, split_ids, strict=True)):
            if index in missing:
                continue
            cue = TYPE_CUES[draft.shown] if draft.shown else NEUTRAL_CUE
            kinds = TYPE_FILE_KINDS if draft.shown else NEUTRAL_FILE_KINDS
            _save(draw_image(cue, rng), pictures, image_id, kinds, rng)
        _write_split(out / f"{split}.txt", drafts, split_ids)
    return out


def sample_words(data: Mapping[str, Sequence[Post]]) -> list[str]:
    """The distinct words of a loaded sample, in order of first use: a tiny encoder's vocabulary."""
    return list(dict.fromkeys(token for posts in data.values() for post in posts for token in post.tokens))
