"""Images and image-cache files are untrusted input: they come from users' posts and from folders
others may share. Only the documented formats reach a Pillow parser, nothing that is not a
regular file is opened, oversized files are refused before a byte is hashed, poisoned cache files
are recomputed, the cache is private to its owner and stays under its size cap.

The backbone is the real ResNet-152 with random weights, built once for the module, so image
counts stay tiny.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import encoded, png_claiming_size
from PIL import EpsImagePlugin, Image, UnidentifiedImageError

from umt.pipeline.data.images import IMAGE_EXTENSIONS
from umt.pipeline.errors import ConfigError
from umt.pipeline.vision import decode as decode_module
from umt.pipeline.vision.backbones import get_backbone
from umt.pipeline.vision.decode import MAX_PIXELS, decode, to_rgb
from umt.pipeline.vision.online import ImageFeaturizer
from umt.pipeline.vision.overlay import attention_overlay

pytestmark = pytest.mark.usefixtures("one_thread")

RESNET = get_backbone("resnet152")
RECORDED = {
    "manifest": {
        "backbone": "resnet152",
        "weights": RESNET.weights_identity("random"),
        "preprocessing": RESNET.preprocessing,
        "dtype": "float16",
    }
}
GRID_SHAPE = (7, 7, 2048)
#: np.save of a (7, 7, 2048) float16 array: a 128-byte header and the data.
GRID_FILE_BYTES = 128 + 7 * 7 * 2048 * 2
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nshowpage\n%%EOF\n"
OTHER_UID = 12345
PRIVATE = 0o700


def picture(seed: int, width: int = 40, height: int = 32) -> Image.Image:
    """Random RGB noise, a different image per seed."""
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)  # (H, W, 3)
    return Image.fromarray(pixels)


def npy(array: np.ndarray, **params) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **params)
    return buf.getvalue()


@pytest.fixture(scope="module")
def extractor():
    return RESNET.build("random")


@pytest.fixture
def featurizer(extractor, tmp_path, monkeypatch):
    """A factory of featurizers caching under ``tmp_path / "cache"`` that share the module's backbone."""
    monkeypatch.setattr(type(RESNET), "build", lambda self, spec: extractor)

    def make(**options) -> ImageFeaturizer:
        options.setdefault("cache_dir", tmp_path / "cache")
        return ImageFeaturizer(RECORDED, **options)

    return make


def write_pictures(folder: Path, count: int) -> list[Path]:
    paths = [folder / f"p{n}.png" for n in range(count)]
    for n, path in enumerate(paths):
        picture(n).save(path)
    return paths


def cache_file(root: Path, key: str) -> Path:
    (found,) = root.glob(f"*/{key[:2]}/{key}.npy")
    return found


# ---- formats -------------------------------------------------------------------------------------


def test_the_allow_list_is_the_formats_of_the_image_extensions_and_each_decodes_as_before(tmp_path):
    Image.init()
    by_extension = Image.registered_extensions()
    assert set(decode_module.ALLOWED_FORMATS) == {by_extension[e] for e in IMAGE_EXTENSIONS} | {"MPO"}
    img = picture(1, 60, 44)
    files = {
        "JPEG": encoded(img, "JPEG", quality=90),
        "MPO": encoded(img, "MPO", save_all=True, append_images=[img]),
        "PNG": encoded(img, "PNG"),
        "GIF": encoded(img.convert("P"), "GIF"),
        "BMP": encoded(img, "BMP"),
        "WEBP": encoded(img, "WEBP"),
        "TIFF": encoded(img, "TIFF"),
    }
    for fmt, data in files.items():
        path = tmp_path / f"{fmt}.img"
        path.write_bytes(data)
        with Image.open(path) as unrestricted:  # what decode did before the allow-list
            assert unrestricted.format == fmt
            before = np.array(to_rgb(unrestricted).resize((224, 224), Image.Resampling.BILINEAR))  # (224, 224, 3)
        assert np.array_equal(decode(path, RESNET.resize).pixels, before), fmt


@pytest.fixture
def eps_opened(monkeypatch) -> list[str]:
    """Every call of Pillow's EPS parser (which runs Ghostscript where it is installed)."""
    calls: list[str] = []

    def record(self) -> None:
        calls.append(str(self.fp))
        raise SyntaxError("the EPS parser must not run")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", record)
    return calls


def test_an_eps_file_is_unreadable_and_never_reaches_the_eps_parser(tmp_path, eps_opened, featurizer):
    path = tmp_path / "x.eps"
    path.write_bytes(EPS)
    decoded = decode(path, RESNET.resize)
    assert decoded.status.label == "unreadable"
    assert "JPEG" in decoded.reason and "TIFF" in decoded.reason and "\n" not in decoded.reason
    (outcome,) = featurizer().featurize([path])
    assert outcome.key is None and "x.eps" in outcome.reason and "PNG" in outcome.reason
    with pytest.raises(UnidentifiedImageError):
        attention_overlay(path, np.full(49, 1 / 49), "caption")
    assert eps_opened == []


@pytest.mark.timeout(20)
def test_a_fifo_named_jpg_is_unreadable_without_blocking(tmp_path, featurizer):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    decoded = decode(fifo, RESNET.resize)
    assert decoded.status.label == "unreadable" and "not a regular file" in decoded.reason
    (outcome,) = featurizer().featurize([fifo])
    assert outcome.key is None and "not a regular file" in outcome.reason


# ---- refused before hashing ----------------------------------------------------------------------


@pytest.fixture
def hashed(monkeypatch) -> list[bytes]:
    """Every chunk of bytes given to sha256 from now on, whoever asks for the hash."""
    seen: list[bytes] = []
    real = hashlib.sha256

    class Spy:
        def __init__(self, data: bytes = b"", **options):
            self.inner = real(**options)
            self.update(data)

        def update(self, data: bytes) -> None:
            seen.append(bytes(data))
            self.inner.update(data)

        def hexdigest(self) -> str:
            return self.inner.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", Spy)
    return seen


def _was_hashed(data: bytes, seen: list[bytes]) -> bool:
    return any(chunk and chunk in data for chunk in seen)


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (9000, 9000)])  # over Pillow's guard; ours
def test_a_png_declaring_too_many_pixels_is_refused_before_it_is_hashed(tmp_path, featurizer, hashed, width, height):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size(width, height))
    (outcome,) = featurizer().featurize([path])
    assert outcome.key is None and "bomb.png" in outcome.reason and str(MAX_PIXELS) in outcome.reason
    assert "\n" not in outcome.reason
    assert not _was_hashed(path.read_bytes(), hashed)


def test_a_file_over_max_image_bytes_is_refused_before_it_is_hashed(tmp_path, featurizer, hashed):
    path = tmp_path / "photo.png"
    picture(3, 64, 64).save(path)
    tool = featurizer(max_image_bytes=path.stat().st_size - 1)
    (outcome,) = tool.featurize([path])
    assert outcome.key is None and "photo.png" in outcome.reason and "limit" in outcome.reason
    assert not _was_hashed(path.read_bytes(), hashed)
    assert tool.computed == 0


# ---- the image cache -----------------------------------------------------------------------------

TRIPPED: list[bool] = []


def _tripwire() -> str:
    TRIPPED.append(True)
    return "unpickled"


class Tripwire:
    """Unpickling this runs :func:`_tripwire`: proof that a cache file was unpickled."""

    def __reduce__(self):
        return _tripwire, ()


def pickled_of_size(size: int) -> bytes:
    """An object array saved with pickle, padded to exactly ``size`` bytes: it passes a size check."""
    pad = 0
    for _ in range(8):
        data = npy(np.array([Tripwire(), b"x" * pad], dtype=object), allow_pickle=True)
        if len(data) == size:
            return data
        pad += size - len(data)
    raise AssertionError("could not pad the pickle to the size wanted")


def test_poisoned_cache_files_are_not_used_and_are_recomputed(tmp_path, featurizer):
    paths = write_pictures(tmp_path, 4)
    scratch = featurizer()
    keys = [o.key for o in scratch.featurize(paths)]
    reference = {key: scratch.grids[key].copy() for key in keys}  # computed from scratch
    root = tmp_path / "cache"
    valid = cache_file(root, keys[0]).read_bytes()
    poisons = [
        npy(np.zeros((49, 2048), np.float16)),  # the right size, the wrong shape
        npy(np.zeros(GRID_SHAPE, np.int16)),  # the right size, the wrong dtype
        pickled_of_size(len(valid)),  # an object array: loading it would run pickle
        valid[: len(valid) // 2],  # truncated
    ]
    for key, poison in zip(keys, poisons, strict=True):
        cache_file(root, key).write_bytes(poison)
    again = featurizer()
    outcomes = again.featurize(paths)
    assert [o.key for o in outcomes] == keys and again.computed == len(keys)
    for key in keys:
        assert np.array_equal(again.grids[key], reference[key])
        assert np.array_equal(np.load(cache_file(root, key)), reference[key])  # the poison was replaced
    assert TRIPPED == []


def test_cache_folders_are_private_and_an_open_root_of_ours_is_closed(tmp_path, featurizer):
    root = tmp_path / "cache"
    root.mkdir(mode=0o775)
    root.chmod(0o775)  # group-writable whatever the umask
    tool = featurizer()
    assert stat.S_IMODE(root.stat().st_mode) == PRIVATE
    tool.featurize(write_pictures(tmp_path, 1))
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    assert len(folders) == 3  # root, settings digest, sha[:2]
    assert {stat.S_IMODE(p.stat().st_mode) for p in folders} == {PRIVATE}


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder of another user needs root")
def test_a_cache_root_of_another_user_is_refused(tmp_path, featurizer):
    root = tmp_path / "theirs"
    root.mkdir()
    os.chown(root, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError, match="another user") as refused:
        featurizer(cache_dir=root)
    assert str(root) in str(refused.value) and "--image-cache DIR" in str(refused.value)


def test_a_shared_sticky_cache_root_is_refused_not_closed(tmp_path, featurizer):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: closing it to others would break them
    with pytest.raises(ConfigError, match="sticky"):
        featurizer(cache_dir=shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_a_cache_dir_below_a_regular_file_is_a_config_error_naming_the_option(tmp_path, featurizer):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError) as refused:
        featurizer(cache_dir=blocker / "cache")
    message = str(refused.value)
    assert message.startswith(f"cannot use the image cache folder {blocker / 'cache'}: ")
    assert message.endswith("; pass --image-cache DIR") and "\n" not in message
    with pytest.raises(ConfigError, match="; pass image_cache=$"):
        featurizer(cache_dir=blocker / "cache", cache_option="image_cache=")


def _cache_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.npy"))


def test_the_cache_stays_under_its_cap_and_keeps_the_most_recently_read_grid(tmp_path, featurizer):
    first, second, third = write_pictures(tmp_path, 3)
    root = tmp_path / "cache"
    cap = GRID_FILE_BYTES * 5 // 2  # room for two grids
    tool = featurizer(max_cache_bytes=cap)
    (a,) = tool.featurize([first])
    (b,) = tool.featurize([second])
    assert _cache_bytes(root) <= cap
    now = cache_file(root, a.key).stat().st_mtime
    os.utime(cache_file(root, a.key), (now - 200, now - 200))  # the first grid is the oldest written...
    os.utime(cache_file(root, b.key), (now - 100, now - 100))
    tool.featurize([first])  # ...but the most recently read
    assert tool.computed == 2
    (c,) = tool.featurize([third])
    assert _cache_bytes(root) <= cap and tool.computed == 3
    assert cache_file(root, a.key).is_file() and cache_file(root, c.key).is_file()
    assert not list(root.glob(f"*/{b.key[:2]}/{b.key}.npy"))  # the least recently used went
