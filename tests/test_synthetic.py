"""The synthetic sample: deterministic, readable, with varied image files and a visible cue."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from umt.pipeline.data.images import resolve_image
from umt.pipeline.data.layout import SPLITS, images_dir, load_dataset
from umt.pipeline.data.synthetic import (
    AMBIGUOUS_NAMES,
    DEFAULT_SIZES,
    MISSING_PER_SPLIT,
    NEUTRAL_CUE,
    SIZE_RANGE,
    TYPE_CUES,
    ZERO_WIDTH_SPACE,
    draw_image,
    generate_synthetic,
    sample_words,
)
from umt.pipeline.labels import bio_to_spans

NAME = "synth"
SMALL = {"n_train": 30, "n_valid": 10, "n_test": 10}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_sample(tmp_path):
    first = tree(generate_synthetic(tmp_path / "a", seed=3, **SMALL).parent)
    second = tree(generate_synthetic(tmp_path / "b", seed=3, **SMALL).parent)
    other = tree(generate_synthetic(tmp_path / "c", seed=4, **SMALL).parent)
    assert first == second
    assert first[f"{NAME}/train.txt"] != other[f"{NAME}/train.txt"]
    assert sum(name.startswith(f"{NAME}_images/") for name in first) == sum(SMALL.values()) - 3 * MISSING_PER_SPLIT


def test_sample_reads_back_with_its_types_and_kinds_of_post(synthetic_root):
    data = load_dataset(synthetic_root, NAME)
    assert {split: len(posts) for split, posts in data.items()} == DEFAULT_SIZES
    posts = [post for split in SPLITS for post in data[split]]
    spans = [bio_to_spans(post.labels) for post in posts]
    assert {t for post_spans in spans for t, _, _ in post_spans} == set(TYPE_CUES)
    assert sum(len(s) >= 2 for s in spans) > len(posts) / 5  # posts naming several entities
    assert sum(not s for s in spans) > len(posts) / 10  # posts without entities
    assert any(ZERO_WIDTH_SPACE in post.tokens for post in posts)
    vocabulary = sample_words(data)
    assert len(vocabulary) == len(set(vocabulary)) and {t for p in posts for t in p.tokens} == set(vocabulary)


def test_text_never_decides_the_type_of_an_ambiguous_name(synthetic_root):
    """Every ambiguous name occurs with several types; no other entity is spelled like one."""
    data = load_dataset(synthetic_root, NAME)
    types_of = defaultdict(set)
    for post in (p for split in SPLITS for p in data[split]):
        for entity_type, start, end in bio_to_spans(post.labels):
            types_of[" ".join(post.tokens[start:end])].add(entity_type)
    for name in AMBIGUOUS_NAMES:
        assert len(types_of[name]) >= 2, name
    typed = {name for name, types in types_of.items() if name not in AMBIGUOUS_NAMES}
    assert all(len(types_of[name]) == 1 for name in typed)


def test_image_files_mix_formats_modes_and_sizes(synthetic_root):
    modes, formats, png_named_jpg = set(), set(), 0
    for path in images_dir(synthetic_root, NAME).iterdir():
        with Image.open(path) as image:
            image.load()
            modes.add(image.mode)
            formats.add(image.format)
            png_named_jpg += image.format == "PNG" and path.suffix == ".jpg"
            assert all(SIZE_RANGE[0] <= side <= SIZE_RANGE[1] for side in image.size)
    assert {"RGB", "RGBA", "P", "L", "CMYK"} <= modes
    assert formats == {"PNG", "JPEG"}
    assert png_named_jpg > 0


def test_one_image_per_split_is_missing(synthetic_root):
    data = load_dataset(synthetic_root, NAME)
    folder = images_dir(synthetic_root, NAME)
    for split in SPLITS:
        missing = [post.image for post in data[split] if resolve_image(folder, post.image) is None]
        assert len(missing) == MISSING_PER_SPLIT


def test_each_type_owns_the_colour_of_the_frame():
    """The mean colour of an image is nearest to its own cue's colour, for every image drawn."""
    rng = random.Random(0)
    cues = {**TYPE_CUES, "none": NEUTRAL_CUE}
    for name, cue in cues.items():
        for _ in range(20):
            mean = ImageStat.Stat(draw_image(cue, rng)).mean
            nearest = min(cues, key=lambda c: sum((a - b) ** 2 for a, b in zip(mean, cues[c].colour, strict=True)))
            assert nearest == name


@pytest.mark.slow
def test_cue_survives_a_random_weight_resnet152():
    """Nearest-centroid on mean-pooled features of an untrained ResNet-152 recovers the type.

    Slow (a ResNet-152 forward pass over 80 images on CPU); the demo relies on this property.
    """
    import torch
    import torchvision

    rng = random.Random(1)
    cues = [*TYPE_CUES.values(), NEUTRAL_CUE]
    per_class = 16
    labels = torch.arange(len(cues)).repeat(per_class)
    normalise = torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    pixels = torch.stack(
        [
            normalise(torchvision.transforms.functional.to_tensor(draw_image(cues[k], rng).resize((224, 224))))
            for k in labels.tolist()
        ]
    )
    torch.manual_seed(0)
    resnet = torchvision.models.resnet152(weights=None).eval()
    body = torch.nn.Sequential(*list(resnet.children())[:-2])
    with torch.no_grad():
        features = torch.cat([body(chunk).mean(dim=(2, 3)) for chunk in pixels.split(16)])  # (N, 2048)
    train, test = slice(0, len(labels) // 2), slice(len(labels) // 2, None)
    mean, std = features[train].mean(0), features[train].std(0) + 1e-12
    z = (features - mean) / std
    centroids = torch.stack([z[train][labels[train] == k].mean(0) for k in range(len(cues))])
    predicted = torch.cdist(z[test], centroids).argmin(1)
    accuracy = (predicted == labels[test]).float().mean().item()
    assert accuracy >= 0.8, accuracy
