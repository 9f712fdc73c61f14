"""Small factories for test data: real images written with Pillow."""

from __future__ import annotations

import io
import random

from PIL import Image


def png_bytes(seed: int, size: tuple[int, int] = (32, 32)) -> bytes:
    """A distinct, valid PNG per seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", size)
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256))
                   for _ in range(size[0] * size[1])])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
