"""Motion end to end: Ken Burns and sequences to H.264 MP4 (decoded back with PyAV), GIF
and WebP (read back with Pillow); the same request gives the same bytes; bad requests are
refused with nothing appended."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from strata.core.errors import InvalidInput
from strata.core.layers import build_executors
from strata.core.layers.motion import build_request
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata


def add_image(strata: Strata, folder: Path, name: str, image: Image.Image) -> str:
    path = folder / name
    image.save(path, format="PNG")
    return strata.add_files([path])[0].data["asset"]["digest"]


def gradient(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """Red grows left to right, green top to bottom: every window of it looks different."""
    width, height = size
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 96)], axis=2).astype(np.uint8))


def run(strata: Strata, request: Any) -> dict[str, Any]:
    jobs.request(strata, request)
    row = Worker(strata, build_executors(("motion",))).wait_for(request.job_id)
    assert row["status"] == "completed", row
    return row


def completion(strata: Strata, job_id: str) -> dict[str, Any]:
    return strata.ledger.read_stream(jobs.stream(job_id))[-1].data


def decoded_frames(data: bytes) -> tuple[Any, list[np.ndarray]]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        facts = {"streams": [s.type for s in container.streams],
                 "codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                 "size": (stream.codec_context.width, stream.codec_context.height),
                 "duration": float(stream.duration * stream.time_base),
                 "frames": stream.frames, "fps": stream.average_rate}
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(stream)]
    return facts, frames


def test_kenburns_mp4_moves_as_computed_and_records_how(strata: Strata, tmp_path: Path
                                                       ) -> None:
    source = add_image(strata, tmp_path, "g.png", gradient())
    request = build_request(strata, [source[:12]], duration=1.0, fps=8, zoom=2.0,
                            pan=(0.25, 0.0))
    row = run(strata, request)
    (output,) = row["outputs"]
    facts, frames = decoded_frames(strata.blobs.read_bytes(output))
    assert facts == {"streams": ["video"], "codec": "h264", "pix_fmt": "yuv420p",
                     "size": (64, 64), "duration": 1.0, "frames": 8, "fps": 8}
    assert len(frames) == 8
    # First frame: the whole image. Last: zoom 2 → a 32x32 window whose centre moved from
    # (32, 32) by 0.25 of the width to (48, 32): the box (32, 16, 64, 48), scaled up.
    first = np.asarray(gradient()).astype(int)
    last = np.asarray(gradient().resize((64, 64), Image.Resampling.BICUBIC,
                                        box=(32, 16, 64, 48))).astype(int)
    assert np.abs(frames[0] - first).mean() < 3
    assert np.abs(frames[-1] - last).mean() < 3
    assert np.abs(frames[-1] - first).mean() > 30  # the move is visible
    data = completion(strata, request.job_id)
    assert data["frames"] == 8 and data["fps"] == 8 and data["duration"] == 1.0
    assert data["encoder"]["x264_threads"] == 1 and data["encoder"]["pix_fmt"] == "yuv420p"
    assert {"pyav", "libavcodec", "pillow", "numpy"} <= set(data["versions"])
    assert data["outputs"][0]["inputs"] == [{"digest": source, "role": "source"}]
    assert data["outputs"][0]["asset"]["media_type"] == "video/mp4"


@pytest.mark.parametrize("fmt", ["mp4", "gif", "webp"])
def test_the_same_request_gives_the_same_bytes(strata: Strata, tmp_path: Path,
                                               fmt: str) -> None:
    a = add_image(strata, tmp_path, "a.png", gradient())
    b = add_image(strata, tmp_path, "b.png", gradient().rotate(90))
    made = set()
    for _ in range(2):
        kenburns = build_request(strata, [a], duration=0.5, fps=8, zoom=1.5, pan=(0, 0.1),
                                 fmt=fmt)
        sequence = build_request(strata, [a, b], operation="sequence", fps=8, hold=0.25,
                                 crossfade=0.25, fmt=fmt)
        made.add((run(strata, kenburns)["outputs"][0], run(strata, sequence)["outputs"][0]))
    assert len(made) == 1


def test_sequence_holds_and_dissolves(strata: Strata, tmp_path: Path) -> None:
    red = add_image(strata, tmp_path, "r.png", Image.new("RGB", (64, 64), (220, 20, 20)))
    blue = add_image(strata, tmp_path, "b.png", Image.new("RGB", (64, 64), (20, 20, 220)))
    request = build_request(strata, [red, blue], operation="sequence", fps=8, hold=0.5,
                            crossfade=0.25)
    (output,) = run(strata, request)["outputs"]
    facts, frames = decoded_frames(strata.blobs.read_bytes(output))
    assert facts["frames"] == len(frames) == 4 + 2 + 4 and facts["duration"] == 1.25
    means = [frame.reshape(-1, 3).mean(axis=0) for frame in frames]
    expected = [(220, 20, 20)] * 4 + [(220 - 200 / 3, 20, 20 + 200 / 3),
                                      (220 - 400 / 3, 20, 20 + 400 / 3)] + [(20, 20, 220)] * 4
    assert np.abs(np.array(means) - np.array(expected)).max() < 4


@pytest.mark.parametrize(("fmt", "media_type", "frame_ms"), [
    ("gif", "image/gif", 120), ("webp", "image/webp", 125)])
def test_gif_and_webp_through_pillow(strata: Strata, tmp_path: Path, fmt: str,
                                     media_type: str, frame_ms: int) -> None:
    source = add_image(strata, tmp_path, "g.png", gradient())
    request = build_request(strata, [source], duration=1.0, fps=8, zoom=1.5, fmt=fmt)
    (output,) = run(strata, request)["outputs"]
    data = completion(strata, request.job_id)
    assert data["outputs"][0]["asset"]["media_type"] == media_type
    assert data["encoder"]["frame_ms"] == frame_ms  # GIF counts hundredths of a second
    with Image.open(io.BytesIO(strata.blobs.read_bytes(output))) as image:
        assert image.n_frames == 8 and image.size == (64, 64)
        image.seek(1)
        image.load()  # WebP says a frame's duration once it is read
        assert image.info["duration"] == frame_ms


def test_bad_requests_are_refused_with_nothing_appended(strata: Strata, tmp_path: Path
                                                         ) -> None:
    from strata.core.av import wav_bytes

    image = add_image(strata, tmp_path, "g.png", gradient())
    other = add_image(strata, tmp_path, "o.png", gradient((32, 64)))
    odd = add_image(strata, tmp_path, "odd.png", gradient((63, 64)))
    (tmp_path / "s.wav").write_bytes(wav_bytes(np.zeros((2, 4800))))
    sound = strata.add_files([tmp_path / "s.wav"])[0].data["asset"]["digest"]
    before = strata.ledger.head_position()
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: build_request(strata, [sound], duration=1, fps=8), "not an image"),
        (lambda: build_request(strata, [image, other], operation="sequence"), "one size"),
        (lambda: build_request(strata, [image], duration=-1, fps=8), "duration"),
        (lambda: build_request(strata, [image], duration=1e6, fps=8), "duration"),
        (lambda: build_request(strata, [image], duration=float("nan"), fps=8), "duration"),
        (lambda: build_request(strata, [image], duration=1, fps=0), "fps"),
        (lambda: build_request(strata, [image], duration=1, zoom=0.5), "zoom"),
        (lambda: build_request(strata, [image], duration=1, pan=(2, 0)), "pan"),
        (lambda: build_request(strata, [odd], duration=1, fps=8), "even sides"),
        (lambda: build_request(strata, [image, image], duration=1), "exactly one image"),
        (lambda: build_request(strata, [image, image], operation="sequence", hold=0.5,
                               crossfade=1), "longer than hold"),
        (lambda: build_request(strata, [image], duration=1, fmt="avi"), "--format"),
    ]
    for attempt, message in cases:
        with pytest.raises(InvalidInput, match=message):
            attempt()
    assert strata.ledger.head_position() == before
    # An odd size is fine for an animation, which has no chroma subsampling.
    assert build_request(strata, [odd], duration=1, fps=8, fmt="gif").width == 63
