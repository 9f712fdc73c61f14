"""What the image layers (compositing, enhancement) share: blend mode names, the image
checks every request makes, opening an asset's pixels and the versions to record.

`blend` (compositing with the W3C blend modes) and `enhance` (the enhancement operations)
are pure numpy/Pillow arithmetic and import numpy at module level, so layer modules import
them inside their executors: `strata log` loads every layer and must stay light. This
module imports Pillow and numpy only inside its functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from strata.core.errors import InvalidInput
from strata.core.ledger.event_types import short

if TYPE_CHECKING:
    from PIL import Image

    from strata.core.service import Strata
    from strata.core.storage.blobs import BlobStore

BlendMode = Literal["normal", "multiply", "screen", "overlay", "soft-light", "add",
                    "difference"]
BLEND_MODES: tuple[str, ...] = get_args(BlendMode)


def image_asset(strata: Strata, reference: str, what: str) -> tuple[str, int, int]:
    """The digest, width and height of the image asset `reference` names; InvalidInput
    for an asset that is not an image (audio, video, a text file)."""
    from strata.core.projections import views

    digest = strata.resolve_asset(reference)
    with strata.view() as conn:
        row = views.asset_row(conn, digest)
    if row is None or not str(row["media_type"]).startswith("image/") or not row["width"]:
        kind = row["media_type"] if row else "not in the log"
        raise InvalidInput(f"{what} {short(digest)} is {kind}, not an image")
    return digest, int(row["width"]), int(row["height"])


def check_pixels(width: int, height: int, limit: int, what: str) -> None:
    """Refuse a picture larger than the store's max_image_pixels before making it."""
    if width * height > limit:
        raise InvalidInput(f"the {what} would be {width}x{height} = {width * height:,} "
                           f"pixels, more than the store's limit of {limit:,} "
                           "(STRATA_MAX_IMAGE_PIXELS)")


def open_image(blobs: BlobStore, digest: str) -> Image.Image:
    """An asset's image, fully loaded (the blob was inspected as an image on ingest)."""
    from PIL import Image

    with blobs.open(digest) as handle, Image.open(handle) as image:
        image.load()
        return image.copy()


def imaging_versions() -> dict[str, str]:
    """The versions of what does the pixel work of the image layers."""
    import platform

    import numpy
    import PIL

    from strata.core.config import strata_version

    return {"pillow": PIL.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "strata": strata_version()}
