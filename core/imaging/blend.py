"""Compositing with separable blend modes, as the W3C specifies them.

Reference: W3C "Compositing and Blending Level 1" (https://www.w3.org/TR/compositing-1/),
section 5.8 (blending) and 9.1.4 (source-over). Colours are non-premultiplied floats in
[0, 1]; Cb, ab are the backdrop's colour and alpha, Cs, as the layer's, where `as`
already includes the layer's opacity and mask (as = alpha * opacity * mask / 255). For
each pixel and each colour channel:

    Cs' = (1 - ab) * Cs + ab * B(Cb, Cs)     the layer's colour mixed with the blend result
    co  = as * Cs' + (1 - as) * ab * Cb      source-over, premultiplied
    ao  = as + (1 - as) * ab
    Co  = co / ao  (0 where ao = 0)

with the blend functions B:

    normal      Cs
    multiply    Cb * Cs
    screen      Cb + Cs - Cb * Cs
    overlay     hard-light(Cs, Cb): 2 * Cb * Cs if Cb <= 0.5, else screen(Cs, 2 * Cb - 1)
    soft-light  Cb - (1 - 2 * Cs) * Cb * (1 - Cb)         if Cs <= 0.5
                Cb + (2 * Cs - 1) * (D(Cb) - Cb)          otherwise, where
                D(Cb) = ((16 * Cb - 12) * Cb + 4) * Cb if Cb <= 0.25, else sqrt(Cb)
    add         min(1, Cb + Cs)   (linear dodge; not in the W3C list, which has the
                                   plus-lighter operator instead: here it is a blend
                                   function in the same formula, so alpha works alike)
    difference  |Cb - Cs|

The canvas stays in float64 from layer to layer and is rounded once, at the end, to
8 bits: round-half-up of Co * 255 (and ao * 255). numpy's float64 arithmetic is the same
on every machine, so the same layers give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Array = NDArray[np.float64]


def _soft_light(cb: Array, cs: Array) -> Array:
    d = np.where(cb <= 0.25, ((16 * cb - 12) * cb + 4) * cb, np.sqrt(cb))
    return np.where(cs <= 0.5, cb - (1 - 2 * cs) * cb * (1 - cb), cb + (2 * cs - 1) * (d - cb))


def _overlay(cb: Array, cs: Array) -> Array:
    return np.where(cb <= 0.5, 2 * cb * cs, _screen(cs, 2 * cb - 1))


def _screen(cb: Array, cs: Array) -> Array:
    return cb + cs - cb * cs


BLEND_FUNCTIONS: dict[str, Callable[[Array, Array], Array]] = {
    "normal": lambda _cb, cs: cs,
    "multiply": lambda cb, cs: cb * cs,
    "screen": _screen,
    "overlay": _overlay,
    "soft-light": _soft_light,
    "add": lambda cb, cs: np.minimum(1.0, cb + cs),
    "difference": lambda cb, cs: np.abs(cb - cs),
}


@dataclass
class Canvas:
    """A float RGBA picture: colour (h, w, 3) and alpha (h, w), non-premultiplied."""

    color: Array
    alpha: Array

    @classmethod
    def filled(cls, width: int, height: int, rgba: tuple[int, int, int, int]) -> Canvas:
        color = np.empty((height, width, 3), dtype=np.float64)
        color[...] = np.asarray(rgba[:3], dtype=np.float64) / 255
        return cls(color, np.full((height, width), rgba[3] / 255, dtype=np.float64))

    @classmethod
    def of(cls, image: Image.Image) -> Canvas:
        pixels = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255
        return cls(pixels[..., :3].copy(), pixels[..., 3].copy())

    def place(self, layer: Canvas, x: int, y: int, mode: str) -> None:
        """Composite `layer` with its top-left corner at (x, y); what falls outside the
        canvas is cut off."""
        height, width = self.alpha.shape
        top, left = max(y, 0), max(x, 0)
        bottom = min(y + layer.alpha.shape[0], height)
        right = min(x + layer.alpha.shape[1], width)
        if top >= bottom or left >= right:
            return
        region = (slice(top, bottom), slice(left, right))
        part = (slice(top - y, bottom - y), slice(left - x, right - x))
        color, alpha = blend(self.color[region], self.alpha[region], layer.color[part],
                             layer.alpha[part], mode)
        self.color[region] = color
        self.alpha[region] = alpha

    def to_image(self) -> Image.Image:
        pixels = np.concatenate([self.color, self.alpha[..., None]], axis=2)
        quantized = np.floor(np.clip(pixels, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        return Image.fromarray(quantized, "RGBA")


def blend(cb: Array, ab: Array, cs: Array, as_: Array, mode: str) -> tuple[Array, Array]:
    """Backdrop (cb, ab) and source (cs, as_) → the composite's (colour, alpha)."""
    ab3, as3 = ab[..., None], as_[..., None]
    mixed = (1 - ab3) * cs + ab3 * BLEND_FUNCTIONS[mode](cb, cs)
    premultiplied = as3 * mixed + (1 - as3) * ab3 * cb
    alpha = as_ + (1 - as_) * ab
    safe = np.where(alpha > 0, alpha, 1.0)[..., None]
    color = np.where(alpha[..., None] > 0, premultiplied / safe, 0.0)
    return color, alpha
