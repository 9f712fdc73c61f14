"""What the bytes alone say: media types sniffed, images decoded and hashed, bombs refused."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import imagehash
import pytest
from PIL import Image

from strata.core.errors import InvalidInput
from strata.core.storage.media import SNIFF_BYTES, MediaInfo, inspect
from tests.core.storage.samples import bomb_png, corrupt_images, image_bytes, wav_bytes
from tests.helpers import png_bytes

MAX_PIXELS = 178_956_970  # the default STRATA_MAX_IMAGE_PIXELS


def inspect_bytes(tmp_path: Path, data: bytes, max_pixels: int = MAX_PIXELS) -> MediaInfo:
    path = tmp_path / "sample"
    path.write_bytes(data)
    return inspect(path, data[:SNIFF_BYTES], max_pixels)


@pytest.mark.parametrize(("data", "media_type"), [
    (png_bytes(1), "image/png"),
    (image_bytes("JPEG"), "image/jpeg"),
    (image_bytes("GIF", mode="P"), "image/gif"),
    (image_bytes("BMP"), "image/bmp"),
    (image_bytes("TIFF"), "image/tiff"),
    (image_bytes("WEBP"), "image/webp"),
    (wav_bytes(), "audio/wav"),
    (b'  {"prompt": "a cat"}', "application/json"),
    (b"%PDF-1.7\n%...", "application/pdf"),
    (b"just some text, not an image", "application/octet-stream"),
], ids=["png", "jpeg", "gif", "bmp", "tiff", "webp", "wav", "json", "pdf", "text"])
def test_media_type_is_sniffed_from_the_bytes(tmp_path: Path, data: bytes,
                                              media_type: str) -> None:
    assert inspect_bytes(tmp_path, data).media_type == media_type


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_image_dimensions_and_perceptual_hashes_match_imagehash(tmp_path: Path,
                                                                fmt: str) -> None:
    data = image_bytes(fmt, size=(48, 36), seed=9, mode="P" if fmt == "GIF" else "RGB")
    info = inspect_bytes(tmp_path, data)
    assert (info.width, info.height) == (48, 36)
    with Image.open(tmp_path / "sample") as image:
        rgb = image.convert("RGB")
    assert info.phash == str(imagehash.phash(rgb))
    assert info.dhash == str(imagehash.dhash(rgb))
    assert info.phash is not None and info.dhash is not None
    assert len(info.phash) == len(info.dhash) == 16  # 64-bit hashes in hex


@pytest.mark.parametrize(("name", "data", "message"), corrupt_images(),
                         ids=[case[0] for case in corrupt_images()])
def test_broken_images_are_refused_as_corrupt(tmp_path: Path, name: str, data: bytes,
                                              message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        inspect_bytes(tmp_path, data)


# --- decompression bombs ------------------------------------------------------------------


def test_a_bomb_just_over_the_limit_names_its_size_and_the_limit(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        inspect_bytes(tmp_path, image_bytes("PNG", size=(101, 100)), max_pixels=100 * 100)
    assert str(refused.value) == (
        "refused as a decompression bomb: 101x100 = 10,100 pixels is more than the limit of "
        "10,000 pixels (STRATA_MAX_IMAGE_PIXELS)"
    )
    assert inspect_bytes(tmp_path, image_bytes("PNG", size=(100, 100)),
                         max_pixels=100 * 100).width == 100


def test_a_bomb_beyond_twice_the_limit_names_the_configured_limit(tmp_path: Path) -> None:
    # Pillow refuses this one itself, with its own threshold (twice the limit) in its
    # message; the user must see the limit they configured.
    with pytest.raises(InvalidInput) as refused:
        inspect_bytes(tmp_path, bomb_png(300, 300), max_pixels=100 * 100)
    assert str(refused.value) == (
        "refused as a decompression bomb: the image has more than the limit of 10,000 pixels "
        "(STRATA_MAX_IMAGE_PIXELS)"
    )


def test_a_huge_bomb_is_refused_without_decoding_it(tmp_path: Path) -> None:
    data = bomb_png(60_000, 60_000)
    assert len(data) < 1024  # small on disk, 3.6 billion pixels when decoded
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput) as refused:
            inspect_bytes(tmp_path, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024**2
    assert str(refused.value).endswith(
        f"more than the limit of {MAX_PIXELS:,} pixels (STRATA_MAX_IMAGE_PIXELS)")
    assert "corrupt" not in str(refused.value)
