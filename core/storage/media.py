"""What the bytes alone say about an asset: media type, dimensions, perceptual hashes.

The media type is sniffed from magic numbers, never taken from a file name. Images are
fully decoded once, so that truncated or corrupt files are refused at the door, and the
pixel count is bounded before decoding so that a decompression bomb is refused without
allocating it.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from strata.core.errors import InvalidInput

if TYPE_CHECKING:
    from PIL.ImageFile import ImageFile

SNIFF_BYTES = 64


@dataclass(frozen=True)
class MediaInfo:
    media_type: str
    width: int | None = None
    height: int | None = None
    phash: str | None = None
    dhash: str | None = None


def sniff_media_type(head: bytes) -> str:
    """The media type that the first bytes of a file announce."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"BM"):
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"qt  ",):
            return "video/quicktime"
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head else "video/x-matroska"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.lstrip()[:1] in (b"{", b"["):
        return "application/json"
    return "application/octet-stream"


def is_image(media_type: str) -> bool:
    return media_type.startswith("image/")


def inspect_image(path: Path, media_type: str, max_pixels: int) -> MediaInfo:
    """Decode the image at `path` fully and hash it; refuse bombs and broken files."""
    import imagehash
    from PIL import Image, UnidentifiedImageError

    try:
        image = _open_with_limit(path, max_pixels)
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise _bomb(f"{width}x{height} = {width * height:,} pixels is", max_pixels)
            image.load()  # raises on truncated or corrupt data
            rgb = image.convert("RGB")
    except InvalidInput:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow refuses above twice the limit, before the size reaches this code; its own
        # message names that doubled threshold, so say the user's limit instead.
        raise _bomb("the image has", max_pixels) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"refused a corrupt or truncated {media_type} image: {exc}") from exc
    return MediaInfo(
        media_type=media_type,
        width=width,
        height=height,
        phash=str(imagehash.phash(rgb)),
        dhash=str(imagehash.dhash(rgb)),
    )


# Pillow's limit is one global of the process; it is set only for the moment of opening.
_PILLOW_LIMIT = threading.Lock()


def _open_with_limit(path: Path, max_pixels: int) -> ImageFile:
    """Image.open under our limit: Pillow refuses on its own above twice its global limit,
    before the size is known here, so the limit must be ours while it opens — and only
    then, so that other code in this process keeps Pillow's own default."""
    from PIL import Image

    with _PILLOW_LIMIT, warnings.catch_warnings():
        # Pillow only warns between its limit and twice it; the caller's check refuses.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _bomb(what: str, max_pixels: int) -> InvalidInput:
    return InvalidInput(
        f"refused as a decompression bomb: {what} more than the limit of {max_pixels:,} "
        "pixels (STRATA_MAX_IMAGE_PIXELS)"
    )


def inspect(path: Path, head: bytes, max_pixels: int) -> MediaInfo:
    media_type = sniff_media_type(head)
    if is_image(media_type):
        return inspect_image(path, media_type, max_pixels)
    return MediaInfo(media_type=media_type)
