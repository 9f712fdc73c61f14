"""Tests for the selection layer's quality scores and near-duplicate clustering."""

from __future__ import annotations

import io
import itertools

import imagehash
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from strata.core.decisions.quality import (
    QualityScore,
    choose_representatives,
    cluster_near_duplicates,
    hamming,
    score_image,
)
from strata.core.layers import build_executors
from strata.core.layers.selection import SelectionRequested
from strata.core.ledger.event_types import AssetImported
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata, asset_stream


def checkerboard(size: int = 128, cell: int = 8) -> Image.Image:
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    for y in range(0, size, cell):
        for x in range(0, size, cell):
            if (x // cell + y // cell) % 2 == 0:
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=255)
    return image


def scene() -> Image.Image:
    image = Image.new("RGB", (128, 128), (40, 60, 90))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, 80, 80), fill=(220, 180, 40))
    draw.rectangle((70, 60, 120, 120), fill=(30, 160, 70))
    return image


def unrelated_scene() -> Image.Image:
    image = Image.new("RGB", (128, 128), (200, 200, 210))
    draw = ImageDraw.Draw(image)
    for i in range(0, 128, 16):
        draw.line((0, i, 128, 128 - i), fill=(20, 20, 20), width=4)
    return image


def test_sharp_checkerboard_is_sharper_than_its_blurred_copy() -> None:
    sharp = checkerboard()
    blurred = sharp.filter(ImageFilter.GaussianBlur(radius=3))
    assert score_image(sharp).sharpness > score_image(blurred).sharpness


def test_black_and_white_are_badly_exposed_and_mid_grey_is_well_exposed() -> None:
    assert score_image(Image.new("L", (64, 64), 0)).exposure == pytest.approx(0.0, abs=0.01)
    assert score_image(Image.new("L", (64, 64), 255)).exposure == pytest.approx(0.0, abs=0.01)
    assert score_image(Image.new("L", (64, 64), 128)).exposure == pytest.approx(1.0, abs=0.01)


def test_clipping_lowers_exposure_even_at_a_mid_grey_mean() -> None:
    # Half black, half white: the mean is mid-grey, but every pixel is clipped.
    assert score_image(checkerboard()).exposure == pytest.approx(0.0, abs=0.01)


def test_flat_image_has_no_contrast_and_no_sharpness() -> None:
    result = score_image(Image.new("RGB", (64, 48), (90, 120, 150)))
    assert result.contrast == 0.0
    assert result.sharpness == 0.0


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (32, 32), 0),
        Image.new("L", (32, 32), 128),
        checkerboard(),
        checkerboard().filter(ImageFilter.GaussianBlur(radius=2)),
        scene(),
        Image.new("L", (2, 2), 60),
    ],
)
def test_score_is_within_unit_interval(image: Image.Image) -> None:
    result = score_image(image)
    assert isinstance(result, QualityScore)
    assert 0.0 <= result.score <= 1.0
    assert 0.0 <= result.exposure <= 1.0
    assert 0.0 <= result.contrast <= 1.0
    assert result.sharpness >= 0.0


def test_score_follows_the_documented_formula() -> None:
    result = score_image(scene())
    sharp_norm = result.sharpness / (result.sharpness + 100.0)
    expected = 0.5 * sharp_norm + 0.25 * result.exposure + 0.25 * result.contrast
    assert result.score == pytest.approx(expected)


def test_large_images_are_scored_at_512_px_on_the_long_side() -> None:
    large = scene().resize((2048, 1024), Image.Resampling.BICUBIC)
    downscaled = large.convert("L").resize((512, 256), Image.Resampling.LANCZOS)
    assert score_image(large) == score_image(downscaled)
    # At or below the limit the image is measured as it is.
    assert score_image(downscaled) != score_image(downscaled.resize((256, 128)))


def test_hamming_on_known_values() -> None:
    assert hamming("0000", "0000") == 0
    assert hamming("0000", "ffff") == 16
    assert hamming("ff00", "0f00") == 4
    assert hamming("85cc3e36c0f17987", "85cc3e36c0f17986") == 1
    assert hamming("ABCD", "abcd") == 0


def test_hamming_refuses_unequal_lengths_and_non_hex() -> None:
    with pytest.raises(ValueError, match="length"):
        hamming("ff", "fff")
    with pytest.raises(ValueError, match="not a hex"):
        hamming("zz", "00")


def test_real_phash_clusters_near_duplicate_and_separates_unrelated() -> None:
    original = scene()
    brightened = ImageEnhance.Brightness(original).enhance(1.1)
    hashes = {
        "original": str(imagehash.phash(original)),
        "brightened": str(imagehash.phash(brightened)),
        "unrelated": str(imagehash.phash(unrelated_scene())),
    }
    assert cluster_near_duplicates(hashes, max_distance=6) == [
        ["brightened", "original"],
        ["unrelated"],
    ]


def test_clustering_is_transitive_and_keeps_singletons() -> None:
    # a-b and b-c are 1 bit apart, a-c is 2: single linkage joins all three at distance 1.
    hashes = {"c": "03", "a": "00", "b": "01", "z": "f0"}
    assert cluster_near_duplicates(hashes, max_distance=1) == [["a", "b", "c"], ["z"]]
    assert cluster_near_duplicates(hashes, max_distance=0) == [["a"], ["b"], ["c"], ["z"]]
    assert cluster_near_duplicates({}, max_distance=3) == []


HASHES = {
    "a1": "00ff00ff00ff00ff",
    "a2": "00ff00ff00ff00fe",
    "a3": "00ff00ff00ff00f0",
    "b1": "ff00ff00ff00ff00",
    "b2": "ff00ff00ff00ff01",
    "c1": "0f0f0f0f0f0f0f0f",
    "d1": "123456789abcdef0",
}


@given(st.permutations(sorted(HASHES)), st.integers(min_value=0, max_value=64))
def test_clustering_is_order_independent(order: list[str], max_distance: int) -> None:
    shuffled = {asset_id: HASHES[asset_id] for asset_id in order}
    assert cluster_near_duplicates(shuffled, max_distance) == cluster_near_duplicates(
        HASHES, max_distance
    )


def test_clustering_refuses_mixed_hash_lengths() -> None:
    with pytest.raises(ValueError, match="mixed lengths"):
        cluster_near_duplicates({"a": "00", "b": "0000"}, max_distance=4)


def test_choose_representatives_picks_top_scorer_per_cluster_and_ranks() -> None:
    clusters = [["a1", "a2", "a3"], ["b1", "b2"], ["c1"]]
    scores = {"a1": 0.2, "a2": 0.9, "a3": 0.5, "b1": 0.4, "b2": 0.3, "c1": 0.95}
    assert choose_representatives(clusters, scores, None) == ["c1", "a2", "b1"]
    assert choose_representatives(clusters, scores, 2) == ["c1", "a2"]
    assert choose_representatives(clusters, scores, 0) == []
    assert choose_representatives(clusters, scores, 10) == ["c1", "a2", "b1"]


def test_choose_representatives_breaks_ties_by_id() -> None:
    clusters = [["x2", "x1"], ["y1"]]
    scores = {"x1": 0.5, "x2": 0.5, "y1": 0.5}
    assert choose_representatives(clusters, scores, None) == ["x1", "y1"]


def test_choose_representatives_names_assets_without_a_score() -> None:
    with pytest.raises(ValueError, match="b1"):
        choose_representatives([["a1"], ["b1"]], {"a1": 0.5}, None)


def test_clustering_joins_two_hashes_exactly_at_the_distance() -> None:
    hashes = {"x": "00000000000000ff", "y": "000000000000000f"}  # 4 bits apart
    assert cluster_near_duplicates(hashes, max_distance=4) == [["x", "y"]]
    assert cluster_near_duplicates(hashes, max_distance=3) == [["x"], ["y"]]


# --- the selection layer end to end: real images, a worker, the recorded decision ---------


def stripes() -> Image.Image:
    image = Image.new("RGB", (64, 64), (200, 200, 210))
    draw = ImageDraw.Draw(image)
    for i in range(0, 64, 16):
        draw.line((0, i, 64, 64 - i), fill=(20, 20, 20), width=3)
    return image


def gradient() -> Image.Image:
    image = Image.new("RGB", (64, 64))
    image.putdata([(4 * x, 4 * y, 128) for y in range(64) for x in range(64)])
    return image


def small_scene() -> Image.Image:
    image = Image.new("RGB", (64, 64), (40, 60, 90))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 40, 40), fill=(220, 180, 40))
    draw.rectangle((34, 30, 60, 60), fill=(30, 160, 70))
    return image


def one_pixel_changed() -> Image.Image:
    # A white pixel at this spot moves the perceptual hash by a couple of bits: a near
    # duplicate that only a distance above 0 joins to its original.
    image = small_scene()
    image.putpixel((0, 8), (255, 255, 255))
    return image


CANDIDATES = {"scene": small_scene, "near": one_pixel_changed, "checker": checkerboard,
              "stripes": stripes, "gradient": gradient}


@pytest.fixture
def candidates(strata: Strata) -> dict[str, str]:
    """Name → digest of each candidate, imported as PNG (lossless: the pixels above)."""
    digests = {}
    for name, make in CANDIDATES.items():
        buffer = io.BytesIO()
        make().convert("RGB").save(buffer, format="PNG")
        info = strata.blobs.ingest_bytes(buffer.getvalue())
        strata.record(asset_stream(info.digest), [AssetImported(asset=info)])
        digests[name] = info.digest
    return digests


def select(strata: Strata, candidates: dict[str, str], dedupe_distance: int) -> dict:
    request = SelectionRequested(job_id=jobs.new_job_id(), candidates=list(candidates.values()),
                                 dedupe_distance=dedupe_distance)
    jobs.request(strata, request)
    row = Worker(strata, build_executors(("selection",))).wait_for(request.job_id)
    assert row["status"] == "completed", row
    return strata.ledger.read_stream(jobs.stream(request.job_id))[-1].data


def named(candidates: dict[str, str], digests: list[str]) -> list[str]:
    names = {digest: name for name, digest in candidates.items()}
    return [names[digest] for digest in digests]


@pytest.mark.parametrize(("distance", "merged"), [(0, []), (10, [["near", "scene"]])])
def test_selection_merges_near_duplicates_only_within_the_requested_distance(
    strata: Strata, candidates: dict[str, str], distance: int, merged: list[list[str]]
) -> None:
    phash = {name: str(imagehash.phash(make().convert("RGB")))
             for name, make in CANDIDATES.items()}
    # The premise: one near pair a few bits apart, everything else far from everything.
    assert 1 <= hamming(phash["near"], phash["scene"]) <= 6
    others = [pair for pair in itertools.combinations(CANDIDATES, 2)
              if set(pair) != {"near", "scene"}]
    assert all(hamming(phash[a], phash[b]) > 10 for a, b in others)

    data = select(strata, candidates, distance)
    assert data["dedupe_distance"] == distance
    groups = sorted(sorted(named(candidates, cluster)) for cluster in data["clusters"])
    joined = [name for group in merged for name in group]
    singletons = [[name] for name in CANDIDATES if name not in joined]
    assert groups == sorted(merged + singletons)
    # Ranked by the documented score: stripes 0.81, checker 0.75, near 0.742, scene 0.741,
    # gradient 0.35; of a merged pair only its best member is chosen.
    ranking = ["stripes", "checker", "near", "scene", "gradient"]
    assert named(candidates, data["chosen"]) == [n for n in ranking if n != "scene" or not merged]
    representative = "near" if merged else "scene"
    assert data["scored"][candidates["scene"]]["cluster"] == candidates[representative]
