"""The enhancement operations, each a pure function of an RGB image (8 bits a channel).

    upscale        Pillow's Lanczos filter to factor x width and height.
    auto-contrast  each channel stretched linearly so that its darkest value becomes 0 and
                   its lightest 255: out = (in - low) * 255 / (high - low); a channel of
                   one value throughout is left alone.
    white-balance  grey world: each channel is multiplied by (mean of the three channel
                   means) / (its own mean), so the picture's average becomes neutral grey;
                   a channel that is black throughout is left alone.
    saturation F   Pillow's ImageEnhance.Color: 0 grey, 1 unchanged, 2 twice as vivid.
    gamma G        out = 255 * (in / 255) ** (1 / G): above 1 brightens the mid-tones,
                   below 1 darkens them (a 256-entry table, rounded half up).
    sharpen R,A,T  Pillow's unsharp mask: radius R pixels, amount A percent, threshold T.
    denoise S      a 3x3 median filter mixed in at strength S (0 to 1):
                   out = (1 - S) * image + S * median.

Each is deterministic: Pillow's fixed-point filters, or float64 numpy arithmetic rounded
half up to 8 bits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageEnhance, ImageFilter


def upscale(image: Image.Image, factor: int) -> Image.Image:
    return image.resize((image.width * factor, image.height * factor),
                        Image.Resampling.LANCZOS)


def auto_contrast(image: Image.Image) -> Image.Image:
    # Not Pillow's ImageOps.autocontrast: its table truncates, so a channel's lightest
    # value can come out as 254.
    pixels = np.asarray(image, dtype=np.float64)
    low, high = pixels.min(axis=(0, 1)), pixels.max(axis=(0, 1))
    spread = high > low
    stretched = np.where(spread, (pixels - low) * 255 / np.where(spread, high - low, 1.0),
                         pixels)
    return _rgb(stretched)


def white_balance(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64)
    means = pixels.reshape(-1, 3).mean(axis=0)
    gains = np.where(means > 0, means.mean() / np.where(means > 0, means, 1.0), 1.0)
    return _rgb(pixels * gains)


def _rgb(pixels: NDArray[np.float64]) -> Image.Image:
    """Float channel values → an 8-bit RGB image, rounded half up."""
    return Image.fromarray(np.floor(np.clip(pixels, 0, 255) + 0.5).astype(np.uint8), "RGB")


def saturation(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Color(image).enhance(factor)


def gamma(image: Image.Image, value: float) -> Image.Image:
    table = [int(np.floor(255 * (i / 255) ** (1 / value) + 0.5)) for i in range(256)]
    return image.point(table * 3)


def sharpen(image: Image.Image, radius: float, amount: int, threshold: int) -> Image.Image:
    return image.filter(ImageFilter.UnsharpMask(radius=radius, percent=amount,
                                                threshold=threshold))


def denoise(image: Image.Image, strength: float) -> Image.Image:
    return Image.blend(image, image.filter(ImageFilter.MedianFilter(3)), strength)
