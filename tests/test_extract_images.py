"""Stage one on damaged and unusual images, shapes and dtypes, weights errors and the CLI.

One extraction over a folder holding every kind of awkward file is shared by the module. The
backbone is the real ResNet-152 with random weights, so image counts stay small.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from urllib.error import URLError

import h5py
import numpy as np
import pytest
import torch
from conftest import encoded, png_claiming_size
from PIL import Image
from rich.console import Console

from umt.cache import FeatureCache
from umt.pipeline.data.types import Post
from umt.pipeline.errors import CacheError, ConfigError, UmtError
from umt.pipeline.vision.decode import MAX_PIXELS, Resize, decode, to_rgb
from umt.pipeline.vision.sources import resolve_source
from umt.stages.extract_images import run
from umt.stages.requests import ExtractRequest, Shard

RNG = np.random.default_rng(7)


def photo(width: int = 96, height: int = 72) -> Image.Image:
    """A smooth colour gradient plus noise: compresses like a photo, differs per call."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], axis=-1)
    noise = RNG.integers(0, 40, size=(height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def sixteen_bit_png() -> bytes:
    values = np.linspace(0, 65535, 64 * 48, dtype=np.uint16).reshape(48, 64)
    return encoded(Image.fromarray(values), "PNG")


#: file name -> bytes, and the status each must get.
def awkward_files() -> dict[str, tuple[bytes, str]]:
    rgba = photo().convert("RGBA")
    rgba.putalpha(128)
    jpeg = encoded(photo(160, 120), "JPEG", quality=90)
    return {
        "rgb.jpg": (jpeg, "ok"),
        "png-named.jpg": (encoded(photo(), "PNG"), "ok"),
        "rgba.png": (encoded(rgba, "PNG"), "ok"),
        "palette.gif": (encoded(photo().convert("P"), "GIF"), "ok"),
        "grey.png": (encoded(photo().convert("L"), "PNG"), "ok"),
        "grey-alpha.png": (encoded(photo().convert("LA"), "PNG"), "ok"),
        "cmyk.jpg": (encoded(photo().convert("CMYK"), "JPEG"), "ok"),
        "sixteen.png": (sixteen_bit_png(), "ok"),
        "empty.jpg": (b"", "unreadable"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "unreadable"),
        "text.jpg": (b"this is not an image, just some words\n", "unreadable"),
        "bomb.png": (png_claiming_size(100_000, 100_000), "unreadable"),
        "large.png": (png_claiming_size(9000, 9000), "unreadable"),  # over our limit, under Pillow's
    }


MISSING_ID = "not-there.jpg"


@pytest.fixture(scope="module")
def extraction(tmp_path_factory) -> tuple[Path, dict[str, str], ExtractRequest]:
    root = tmp_path_factory.mktemp("awkward")
    images = root / "images"
    images.mkdir()
    expected = {}
    for name, (data, status) in awkward_files().items():
        (images / name).write_bytes(data)
        expected[name] = status
    expected[MISSING_ID] = "missing"
    ids_file = root / "ids.txt"
    ids_file.write_text("\n".join([*expected, "", "rgb.jpg"]) + "\n")  # blank line and a duplicate
    config = ExtractRequest(
        images=images, ids_from=ids_file, out=root / "feats.h5", weights="random", batch_size=4, num_workers=1
    )
    out = run(config, console=Console(file=io.StringIO())).path
    return out, expected, config


def test_every_awkward_image_gets_the_right_status(extraction):
    out, expected, _ = extraction
    with FeatureCache(out) as cache:
        assert cache.ids == sorted(expected)
        assert {i: cache.status(i) for i in cache.ids} == expected
        assert "0 bytes" in cache.reason("empty.jpg")
        assert "truncated" in cache.reason("truncated.jpg")
        assert "not an image format" in cache.reason("text.jpg")
        assert "decompression" in cache.reason("bomb.png") and "decompression" in cache.reason("large.png")
        assert "no file for this id" in cache.reason(MISSING_ID)
        assert cache.counts() == {"ok": 8, "missing": 1, "unreadable": 5}


def test_features_shape_dtype_and_zeros_for_failures(extraction):
    out, expected, _ = extraction
    with h5py.File(out, "r") as f:
        features = f["features"][:]
    assert features.shape == (len(expected), 7, 7, 2048) and features.dtype == np.float16
    assert np.isfinite(features).all()
    with FeatureCache(out) as cache:
        for row, image_id in enumerate(cache.ids):
            grid, present = cache.get(image_id)
            assert present == (expected[image_id] == "ok")
            assert bool(features[row].any()) == present  # real grids are not all zero, failures are
            assert grid.shape == (49, 2048) and grid.dtype == torch.float32


def test_manifest_records_backbone_weights_preprocessing(extraction):
    with FeatureCache(extraction[0]) as cache:
        m = cache.manifest
    assert (m["backbone"], m["layer"], m["grid"], m["channels"], m["dtype"]) == (
        "resnet152",
        "layer4",
        [7, 7],
        2048,
        "float16",
    )
    assert m["weights"] == {"source": "random", "seed": 0, "init": "torchvision default, zero_init_residual"}
    assert m["preprocessing"]["resize"] == [224, 224] and m["preprocessing"]["crop"] is None
    assert m["compute"] == {"device": "cpu", "autocast": None, "batchnorm": "folded into the preceding convolution"}
    assert m["counts"]["total"] == 14 and m["plan"]["chunk_size"] == 4
    assert "shard" not in m and m["versions"]["torch"]


def test_same_command_again_is_up_to_date_and_strict_fails(extraction):
    out, _, config = extraction
    before = out.stat().st_mtime_ns
    shown = io.StringIO()
    run(config, console=Console(file=shown, width=200))
    assert "up to date" in shown.getvalue() and "not-there.jpg" in shown.getvalue()
    assert out.stat().st_mtime_ns == before
    config_strict = ExtractRequest(**{**vars(config), "strict": True})
    with pytest.raises(UmtError, match="6 of 14 images have no features"):
        run(config_strict, console=Console(file=io.StringIO()))


def test_existing_cache_with_other_settings_is_refused(extraction):
    out, _, config = extraction
    with pytest.raises(CacheError, match="dtype: expected 'float32', found 'float16'.*--overwrite"):
        run(ExtractRequest(**{**vars(config), "dtype": "float32"}), console=Console(file=io.StringIO()))


def test_float32_storage(tmp_path: Path):
    images = tmp_path / "img"
    images.mkdir()
    photo().save(images / "a.jpg")
    out = run(
        ExtractRequest(images=images, out=tmp_path / "f32.h5", weights="random", dtype="float32", num_workers=0),
        console=Console(file=io.StringIO()),
    ).path
    with h5py.File(out, "r") as f:
        assert f["features"].dtype == np.float32 and f["features"].shape == (1, 7, 7, 2048)
    with FeatureCache(out) as cache:
        assert cache.manifest["dtype"] == "float32" and cache.get("a.jpg")[1]


def test_dataset_mode_uses_the_distinct_ids_of_all_splits(tmp_path: Path, monkeypatch):
    from umt.pipeline.data import layout as datasets

    posts = {
        "train": [Post(["x"], ["O"], "b"), Post(["y"], ["O"], None)],
        "valid": [Post(["z"], ["O"], "a")],
        "test": [Post(["w"], ["O"], "b")],
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda root, name: posts)
    images = datasets.images_dir(tmp_path, "tiny")
    images.mkdir()
    photo().save(images / "a.jpg")  # "b" has no file
    out = run(
        ExtractRequest(dataset="tiny", data_root=tmp_path, weights="random", num_workers=0),
        console=Console(file=io.StringIO()),
    ).path
    assert out == tmp_path / "tiny_resnet152.h5"
    with FeatureCache(out) as cache:
        assert cache.ids == ["a", "b"] and cache.status("a") == "ok" and cache.status("b") == "missing"
        assert cache.manifest["source"]["dataset"] == "tiny"


def test_decode_to_rgb_rules():
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # invisible red: must become the white background
    assert np.asarray(to_rgb(clear))[0, 0].tolist() == [255, 255, 255]
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert np.asarray(to_rgb(half))[0, 0].tolist() == [127, 127, 127]
    sixteen = Image.fromarray(np.array([[0, 257, 32768, 65535]], dtype=np.uint16))
    assert np.asarray(to_rgb(sixteen))[0, :, 0].tolist() == [0, 1, 128, 255]
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] * 256)
    palette.info["transparency"] = 0
    assert np.asarray(to_rgb(palette))[0, 0].tolist() == [255, 255, 255]


def test_decode_is_deterministic_and_sized(tmp_path: Path):
    path = tmp_path / "p.jpg"
    photo(500, 375).save(path, quality=85)
    first, second = decode(path, Resize()), decode(path, Resize())
    assert first.status.label == "ok" and first.pixels.shape == (224, 224, 3) and first.pixels.dtype == np.uint8
    assert np.array_equal(first.pixels, second.pixels)
    assert MAX_PIXELS == 8192 * 8192


def test_weights_file_errors_are_clear(tmp_path: Path):
    images = tmp_path / "img"
    images.mkdir()
    photo().save(images / "a.jpg")
    base = ExtractRequest(images=images, out=tmp_path / "w.h5", num_workers=0)
    quiet = Console(file=io.StringIO())
    with pytest.raises(ConfigError, match="no such file; use 'imagenet', 'random'"):
        run(ExtractRequest(**{**vars(base), "weights": str(tmp_path / "absent.pth")}), console=quiet)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a PyTorch state_dict file"):
        run(ExtractRequest(**{**vars(base), "weights": str(junk)}), console=quiet)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ConfigError, match="does not fit torchvision's resnet152"):
        run(ExtractRequest(**{**vars(base), "weights": str(wrong)}), console=quiet)
    assert not (tmp_path / "w.h5.partial").exists() and not (tmp_path / "w.h5").exists()


def test_weights_file_is_loaded_folded_and_hashed(tmp_path: Path):
    """A state_dict from a file drives the grid: compare with torchvision's own unfolded network."""
    import torchvision

    from umt.pipeline.vision.backbones import get_backbone

    resnet152 = get_backbone("resnet152")

    torch.manual_seed(1)
    resnet = torchvision.models.resnet152(weights=None).eval()
    for module in resnet.modules():  # non-trivial BatchNorm statistics, so folding is exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "resnet.pth"
    torch.save({k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}, path)
    extractor = resnet152.build(str(path))
    pixels = torch.randint(0, 256, (1, 224, 224, 3), dtype=torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    trunk = torch.nn.Sequential(*list(resnet.children())[:-2])
    with torch.inference_mode():
        expected = trunk((pixels.permute(0, 3, 1, 2).float() / 255 - mean) / std)  # (1, 2048, 7, 7)
        got = extractor(pixels)  # (1, 7, 7, 2048)
    torch.testing.assert_close(got, expected.permute(0, 2, 3, 1), rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    identity = resnet152.weights_identity(str(path))
    assert identity["source"] == "file" and len(identity["sha256"]) == 64
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    assert resnet152.weights_identity(str(path))["sha256"] != identity["sha256"]


def test_offline_imagenet_is_one_clear_error(tmp_path: Path, monkeypatch, capsys):
    import torchvision.models._api as tv_api

    def offline(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    images = tmp_path / "img"
    images.mkdir()
    photo().save(images / "a.jpg")
    monkeypatch.setattr(
        sys, "argv", ["umt", "extract-images", "--images", str(images), "--out", str(tmp_path / "i.h5")]
    )
    import umt.cli as cli

    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "could not get the ImageNet weights" in err and "--weights PATH" in err
    assert "Traceback" not in err


def test_option_errors(tmp_path: Path):
    quiet = Console(file=io.StringIO())
    with pytest.raises(ConfigError, match="--out FILE is required"):
        run(ExtractRequest(images=tmp_path), console=quiet)
    with pytest.raises(ConfigError, match="say which images"):
        run(ExtractRequest(), console=quiet)
    with pytest.raises(ConfigError, match="does not exist"):
        run(ExtractRequest(images=tmp_path / "nope", out=tmp_path / "x.h5"), console=quiet)
    with pytest.raises(ConfigError, match="no image ids"):
        run(ExtractRequest(images=tmp_path, out=tmp_path / "x.h5"), console=quiet)
    with pytest.raises(ConfigError, match="--dtype"):
        run(ExtractRequest(images=tmp_path, out=tmp_path / "x.h5", dtype="int8"), console=quiet)
    for bad in ("3/2", "0/2", "1-2", "a/b"):
        with pytest.raises(CacheError, match="--shard"):
            Shard.parse(bad)
    assert Shard.parse("2/4").path_for(Path("d/feats.h5")) == Path("d/feats.shard-2-of-4.h5")


def test_cli_cache_info(extraction, capsys, monkeypatch):
    import umt.cli as cli

    monkeypatch.setattr(sys, "argv", ["umt", "cache", "info", str(extraction[0])])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code in (0, None)
    shown = capsys.readouterr().out
    assert "resnet152" in shown and "unreadable" in shown and "truncated.jpg" in shown


def test_folder_mode_lists_image_files_and_broken_links(tmp_path: Path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.PNG", "c.tiff", "notes.txt", ".hidden.jpg"):
        (images / name).write_bytes(b"x")
    (images / "folder.jpg").mkdir()
    (images / "gone.jpg").symlink_to(images / "deleted.jpg")
    source = resolve_source(images=images, out=tmp_path / "f.h5", backbone="resnet152")
    assert source.ids == ["a.jpg", "b.PNG", "c.tiff", "gone.jpg"]
