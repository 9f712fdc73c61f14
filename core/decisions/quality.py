"""Automatic curation for the selection layer: quality scores and near-duplicate grouping.

The documented quality score
----------------------------
Every image is measured the same way, so scores are comparable across a batch and across
batches:

1. The image is converted to 8-bit grayscale (Pillow mode ``"L"``). Luminance ``Y`` below is
   a pixel value in 0..255; ``y = Y / 255`` is the same value in 0..1.
2. If the long side is over 512 px, the image is downscaled with Lanczos so that the long
   side is exactly 512 px (aspect ratio kept). Scoring then costs the same for a 64 px
   thumbnail and a 4096 px upscale, and sharpness is measured at a common scale, so a large
   render is not rewarded merely for having more fine detail per pixel.
3. The three measures:

   - ``sharpness`` = variance of the Laplacian of ``Y`` (float, 0..255 scale), with the
     3x3 kernel ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` applied to interior pixels only (no
     padding, so the image border adds no false edges). Unbounded, >= 0; 0 for images
     smaller than 3x3.
   - ``exposure`` = ``(1 - |mean(y) - 0.5| / 0.5) * (1 - clipped)``, where ``clipped`` is
     the fraction of pixels with ``Y <= 2`` or ``Y >= 253``. It is 1 for a mid-grey mean
     with nothing clipped and falls linearly to 0 as the mean reaches pure black or white.
   - ``contrast`` = ``std(Y) / 128``, clipped to 0..1.

4. The combined score, in 0..1::

       sharp_norm = sharpness / (sharpness + 100.0)      # SHARPNESS_REF = 100.0
       score      = 0.5 * sharp_norm + 0.25 * exposure + 0.25 * contrast

Near duplicates are found from hex-encoded perceptual hashes (``imagehash.phash``, stored
in asset metadata): assets whose hashes differ in at most ``max_distance`` bits are joined,
and joining is transitive (single linkage), so a chain of small edits forms one cluster.
Each cluster is then represented by its best-scoring member.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

SHARPNESS_REF = 100.0
"""Laplacian variance at which ``sharp_norm`` is 0.5: roughly where a photo stops looking soft."""

MAX_SCORING_SIDE = 512
CLIP_LOW = 2
CLIP_HIGH = 253

WEIGHT_SHARPNESS = 0.5
WEIGHT_EXPOSURE = 0.25
WEIGHT_CONTRAST = 0.25


@dataclass(frozen=True)
class QualityScore:
    """The measures behind one image's score; see the module docstring for the formula."""

    sharpness: float
    exposure: float
    contrast: float
    score: float


def score_image(image: Image.Image) -> QualityScore:
    """Score one image with the documented formula (grayscale, long side at most 512 px)."""
    gray = image.convert("L")
    long_side = max(gray.size)
    if long_side > MAX_SCORING_SIDE:
        ratio = MAX_SCORING_SIDE / long_side
        # max(1, ...) keeps extreme panoramas from collapsing to a zero-pixel side.
        size = (max(1, round(gray.width * ratio)), max(1, round(gray.height * ratio)))
        gray = gray.resize(size, Image.Resampling.LANCZOS)
    luma = np.asarray(gray, dtype=np.float64)

    sharpness = _laplacian_variance(luma)
    exposure = _exposure(luma)
    contrast = float(np.clip(luma.std() / 128.0, 0.0, 1.0))
    sharp_norm = sharpness / (sharpness + SHARPNESS_REF)
    score = WEIGHT_SHARPNESS * sharp_norm + WEIGHT_EXPOSURE * exposure + WEIGHT_CONTRAST * contrast
    # The weights sum to 1 and every term is in 0..1; the clip only absorbs rounding.
    score = float(np.clip(score, 0.0, 1.0))
    return QualityScore(sharpness=sharpness, exposure=exposure, contrast=contrast, score=score)


def _laplacian_variance(luma: np.ndarray) -> float:
    height, width = luma.shape
    if height < 3 or width < 3:
        return 0.0
    # Kernel [[0,1,0],[1,-4,1],[0,1,0]] as shifted slices: exact, and no scipy dependency.
    centre = luma[1:-1, 1:-1]
    laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * centre
    return float(laplacian.var())


def _exposure(luma: np.ndarray) -> float:
    if luma.size == 0:
        return 0.0
    mean = float(luma.mean()) / 255.0
    balance = max(0.0, 1.0 - abs(mean - 0.5) / 0.5)
    clipped = float(np.count_nonzero((luma <= CLIP_LOW) | (luma >= CLIP_HIGH))) / luma.size
    return balance * (1.0 - clipped)


def hamming(a_hex: str, b_hex: str) -> int:
    """Number of differing bits between two hex-encoded perceptual hashes of equal length."""
    if len(a_hex) != len(b_hex):
        raise ValueError(
            f"perceptual hashes differ in length ({len(a_hex)} vs {len(b_hex)} hex digits): "
            f"{a_hex!r} and {b_hex!r} were made with different hash sizes and cannot be compared"
        )
    return (_parse_hex(a_hex) ^ _parse_hex(b_hex)).bit_count()


def _parse_hex(value: str) -> int:
    try:
        return int(value, 16)
    except ValueError:
        raise ValueError(f"not a hex-encoded perceptual hash: {value!r}") from None


def cluster_near_duplicates(hashes: Mapping[str, str], max_distance: int) -> list[list[str]]:
    """Group asset ids whose hashes are within ``max_distance`` bits, transitively.

    Every asset appears in exactly one cluster (singletons included). Each cluster is
    sorted, and clusters are sorted by their first member, so the result does not depend
    on the order of ``hashes``.
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    ids = sorted(hashes)
    parsed = {asset_id: _parse_hex(hashes[asset_id]) for asset_id in ids}
    lengths = {len(hashes[asset_id]) for asset_id in ids}
    if len(lengths) > 1:
        raise ValueError(
            f"perceptual hashes of mixed lengths {sorted(lengths)} hex digits cannot be "
            "compared; hash every asset with the same hash size"
        )

    parent = {asset_id: asset_id for asset_id in ids}

    def find(asset_id: str) -> str:
        root = asset_id
        while parent[root] != root:
            root = parent[root]
        # Path compression keeps later finds near O(1) on long near-duplicate chains.
        while parent[asset_id] != root:
            parent[asset_id], asset_id = root, parent[asset_id]
        return root

    # All pairs: batches are hundreds of images, and a BK-tree would not change the answer.
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            if (parsed[a] ^ parsed[b]).bit_count() <= max_distance:
                root_a, root_b = find(a), find(b)
                if root_a != root_b:
                    # The smaller id as root keeps the union independent of visiting order.
                    parent[max(root_a, root_b)] = min(root_a, root_b)

    clusters: dict[str, list[str]] = {}
    for asset_id in ids:
        clusters.setdefault(find(asset_id), []).append(asset_id)
    return sorted(clusters.values(), key=lambda members: members[0])


def choose_representatives(
    clusters: list[list[str]], scores: Mapping[str, float], top: int | None = None
) -> list[str]:
    """Best-scoring member of each cluster, ranked by score descending, at most ``top``.

    Ties are broken by asset id (smallest first), both within a cluster and in the ranking,
    so equal scores still give one answer.
    """
    if top is not None and top < 0:
        raise ValueError(f"top must be >= 0 or None, got {top}")
    missing = sorted({a for members in clusters for a in members if a not in scores})
    if missing:
        raise ValueError(f"no quality score for asset(s): {', '.join(missing)}")

    def rank(asset_id: str) -> tuple[float, str]:
        return (-scores[asset_id], asset_id)

    representatives = [min(members, key=rank) for members in clusters if members]
    representatives.sort(key=rank)
    return representatives if top is None else representatives[:top]
