"""Thumbnails: derived from an asset's bytes on first request, cached on disk under the
store (`<home>/thumbnails/`), never recorded as events (they are not part of the record,
and deleting the folder loses nothing).

Images are scaled with Pillow; videos show their first frame (decoded with PyAV); audio
has no thumbnail (404), the web page shows a player instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from strata.core.errors import InvalidInput, NotFound
from strata.core.service import Strata

SIZES = range(16, 1025)


class NoThumbnail(NotFound):
    pass


def thumbnail(strata: Strata, asset: dict[str, Any], size: int) -> tuple[Path, str]:
    """The cached thumbnail of `asset` (its projection row) fitting in size x size: (file,
    media type), made now if it is not cached yet."""
    if size not in SIZES:
        raise InvalidInput(f"a thumbnail size is {SIZES.start} to {SIZES.stop - 1} pixels, "
                           f"not {size}")
    media_type: str = asset["media_type"]
    if not media_type.startswith(("image/", "video/")):
        raise NoThumbnail(f"{asset['digest'][:19]}… is {media_type}: only images and videos "
                          "have thumbnails")
    folder = strata.store.settings.resolved_home / "thumbnails"
    hex_digest = asset["digest"].removeprefix("sha256:")
    for suffix, kind in ((".png", "image/png"), (".jpg", "image/jpeg")):
        cached = folder / hex_digest[:2] / f"{hex_digest[2:]}-{size}{suffix}"
        if cached.is_file():
            return cached, kind
    picture = _first_frame(strata, asset["digest"]) if media_type.startswith("video/") else (
        _image(strata, asset["digest"]))
    picture.thumbnail((size, size))
    # Transparency needs PNG; everything else is smaller as JPEG.
    alpha = picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
    suffix, kind, fmt = (".png", "image/png", "PNG") if alpha else (".jpg", "image/jpeg", "JPEG")
    cached = folder / hex_digest[:2] / f"{hex_digest[2:]}-{size}{suffix}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a reader never sees half a thumbnail.
    descriptor, name = tempfile.mkstemp(dir=cached.parent, suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as out:
            picture.convert("RGBA" if alpha else "RGB").save(out, format=fmt)
        os.replace(name, cached)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return cached, kind


def _image(strata: Strata, digest: str) -> Any:
    from PIL import Image

    with strata.blobs.open_seekable(digest) as handle:
        picture = Image.open(handle)
        picture.load()
    return picture


def _first_frame(strata: Strata, digest: str) -> Any:
    import av

    with strata.blobs.open_seekable(digest) as handle, av.open(handle) as container:
        for frame in container.decode(video=0):
            return frame.to_image()
    raise NoThumbnail(f"{digest[:19]}… has no video frame to show")
