"""Audio and video probed on ingest with PyAV: each container sniffed and described
(duration, frame rate, frame count, sample rate, channels, codecs); corrupt and truncated
files refused like corrupt images, with nothing stored; bombs refused before decoding."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest

from strata.core.errors import InvalidInput
from strata.core.projections import views
from strata.core.service import Strata
from strata.core.storage.media import SNIFF_BYTES, AvLimits, MediaInfo, inspect, probe_av

MAX_PIXELS = 178_956_970


def write_media(path: Path, container_format: str, video_codec: str | None,
                audio_codec: str | None, seconds: float = 1.0, fps: int = 8,
                rate: int = 48_000, size: tuple[int, int] = (64, 64)) -> bytes:
    """A real file written with PyAV: `fps` grey frames rising in brightness and a 440 Hz
    stereo tone, `seconds` long."""
    with av.open(str(path), "w", format=container_format) as container:
        video = audio = None
        if video_codec:
            video = container.add_stream(video_codec, rate=fps)
            video.width, video.height = size
            video.pix_fmt = "yuv420p"
        if audio_codec:
            audio = container.add_stream(audio_codec, rate=rate, layout="stereo")
        if video is not None:
            for index in range(round(seconds * fps)):
                pixels = np.full((size[1], size[0], 3), index * 10 % 256, np.uint8)
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(
                    format="yuv420p")
                frame.pts = index
                container.mux(video.encode(frame))
            container.mux(video.encode(None))
        if audio is not None:
            sample_format = audio.codec_context.codec.audio_formats[0].name
            resampler = av.AudioResampler(format=sample_format, layout="stereo", rate=rate)
            count = round(seconds * rate)
            signal = 0.3 * np.sin(2 * np.pi * 440 * np.arange(count) / rate)
            chunk = audio.codec_context.frame_size or 1024
            for start in range(0, count, chunk):
                part = np.tile(signal[start:start + chunk], (2, 1)).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, start
                for converted in resampler.resample(frame):
                    container.mux(audio.encode(converted))
            container.mux(audio.encode(None))
    return path.read_bytes()


def inspect_file(path: Path) -> MediaInfo:
    return inspect(path, path.read_bytes()[:SNIFF_BYTES], MAX_PIXELS)


# (file name, PyAV container format, video codec, audio codec, the sniffed media type)
FORMATS = [
    ("a.wav", "wav", None, "pcm_s16le", "audio/wav"),
    ("a.flac", "flac", None, "flac", "audio/flac"),
    ("a.mp3", "mp3", None, "libmp3lame", "audio/mpeg"),
    ("a.opus", "ogg", None, "libopus", "audio/ogg"),
    ("v.mp4", "mp4", "libx264", "aac", "video/mp4"),
    ("v.webm", "webm", "libvpx-vp9", "libopus", "video/webm"),
    ("v.mov", "mov", "libx264", None, "video/quicktime"),
]


@pytest.mark.parametrize(("name", "fmt", "vcodec", "acodec", "media_type"), FORMATS,
                         ids=[f[0] for f in FORMATS])
def test_audio_and_video_are_probed(tmp_path: Path, name: str, fmt: str, vcodec: str | None,
                                    acodec: str | None, media_type: str) -> None:
    rate = 44_100 if acodec == "libmp3lame" else 48_000
    write_media(tmp_path / name, fmt, vcodec, acodec, rate=rate)
    info = inspect_file(tmp_path / name)
    assert info.media_type == media_type
    assert info.duration == pytest.approx(1.0, abs=0.01)
    if vcodec:
        assert (info.width, info.height, info.fps, info.frames) == (64, 64, 8.0, 8)
        assert info.video_codec == {"libx264": "h264", "libvpx-vp9": "vp9"}[vcodec]
    else:
        assert info.width is info.fps is info.frames is info.video_codec is None
    if acodec:
        assert (info.sample_rate, info.channels) == (rate, 2)
        assert info.audio_codec in {"pcm_s16le": ["pcm_s16le"], "flac": ["flac"],
                                    "libmp3lame": ["mp3", "mp3float"], "libopus": ["opus"],
                                    "aac": ["aac"]}[acodec]
    else:
        assert info.sample_rate is info.channels is info.audio_codec is None


def test_the_streams_decide_audio_or_video(tmp_path: Path) -> None:
    write_media(tmp_path / "sound.mp4", "mp4", None, "aac")
    assert inspect_file(tmp_path / "sound.mp4").media_type == "audio/mp4"
    write_media(tmp_path / "sound.webm", "webm", None, "libopus")
    assert inspect_file(tmp_path / "sound.webm").media_type == "audio/webm"


def broken(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[:int(len(data) * 0.6)]
    if how == "header only":
        return data[:40]
    middle = len(data) // 2  # "corrupt": a run of zeros in the middle
    return data[:middle] + bytes(200) + data[middle + 200:]


# Which damage each format shows (PCM has no structure to break, VP9 conceals damage).
BROKEN = [(name, how) for name, *_ in FORMATS for how in ("truncated", "header only", "corrupt")
          if (name, how) not in {("a.wav", "corrupt"), ("v.webm", "corrupt")}]


@pytest.mark.parametrize(("name", "how"), BROKEN, ids=[f"{n}-{h}" for n, h in BROKEN])
def test_corrupt_and_truncated_files_are_refused(tmp_path: Path, name: str, how: str) -> None:
    (spec,) = [f for f in FORMATS if f[0] == name]
    data = write_media(tmp_path / name, *spec[1:4],
                       rate=44_100 if spec[3] == "libmp3lame" else 48_000)
    damaged = tmp_path / f"damaged-{name}"
    damaged.write_bytes(broken(data, how))
    with pytest.raises(InvalidInput, match=r"refused a (corrupt or truncated|truncated)"):
        inspect_file(damaged)


def test_a_refused_file_stores_nothing(strata: Strata, tmp_path: Path) -> None:
    data = write_media(tmp_path / "ok.flac", "flac", None, "flac")
    (tmp_path / "cut.flac").write_bytes(data[:len(data) // 2])
    before = strata.ledger.head_position()
    with pytest.raises(InvalidInput, match=r"cut\.flac"):
        strata.add_files([tmp_path / "ok.flac", tmp_path / "cut.flac"])
    assert strata.ledger.head_position() == before
    assert list(strata.blobs.iter_digests()) == []
    assert strata.blobs.stale_temporary_files() == []


@pytest.mark.parametrize(("limits", "message"), [
    (AvLimits(seconds=0.5), "it lasts 1.0 s"),
    (AvLimits(frame_pixels=64 * 63), "its frames are 64x64"),
    (AvLimits(frames=7), "it has 8 frames"),
], ids=["duration", "frame size", "frames"])
def test_bombs_are_refused_before_decoding(tmp_path: Path, limits: AvLimits,
                                           message: str) -> None:
    path = tmp_path / "v.mp4"
    write_media(path, "mp4", "libx264", "aac")
    with pytest.raises(InvalidInput, match=f"refused as a bomb: {message}.*MAX_MEDIA_SECONDS"):
        probe_av(path, "video/mp4", limits)


def test_a_header_that_lies_is_caught_while_decoding(tmp_path: Path) -> None:
    # WebM declares no frame count, so the bound is enforced frame by frame.
    path = tmp_path / "v.webm"
    write_media(path, "webm", "libvpx-vp9", None)
    with pytest.raises(InvalidInput, match="decodes to more than 5 frames"):
        probe_av(path, "video/webm", AvLimits(frames=5))


def test_pyav_is_imported_only_for_audio_and_video(tmp_path: Path) -> None:
    import subprocess

    code = ("import sys; from pathlib import Path; "
            "from strata.core.storage.media import inspect; "
            f"p = Path({str(tmp_path / 'x.png')!r}); "
            "from PIL import Image; Image.new('RGB', (4, 4)).save(p); "
            "inspect(p, p.read_bytes()[:64], 10**6); print('av' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_an_ingested_video_carries_its_probed_facts(strata: Strata, tmp_path: Path) -> None:
    write_media(tmp_path / "v.mp4", "mp4", "libx264", "aac")
    info = strata.blobs.ingest_path(tmp_path / "v.mp4")
    facts = info.model_dump()
    assert facts["duration"] == pytest.approx(1.0, abs=0.01)
    assert (facts["fps"], facts["frames"], facts["sample_rate"], facts["channels"]) == (
        8.0, 8, 48_000, 2)
    assert (facts["video_codec"], facts["audio_codec"]) == ("h264", "aac")
    # The import records them, and the asset record shows them (live and rebuilt).
    strata.add_file(tmp_path / "v.mp4")
    for _ in range(2):
        with strata.view() as conn:
            row = views.asset_details(conn, info.digest).asset
        assert {k: row[k] for k in facts if k != "digest"} == {
            k: v for k, v in facts.items() if k != "digest"}
        strata.rebuild()
