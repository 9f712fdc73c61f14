"""What the bytes alone say about an asset: media type, dimensions, perceptual hashes,
and for audio and video their duration, frame rate, frame count, sample rate, channels and
codecs.

The media type is sniffed from magic numbers, never taken from a file name. Images are
fully decoded once, so that truncated or corrupt files are refused at the door, and the
pixel count is bounded before decoding so that a decompression bomb is refused without
allocating it.

Audio and video (WAV, FLAC, MP3, Ogg/Opus, MP4, MOV, WebM, Matroska) are probed with PyAV,
imported only when a file is one of them: the duration, frame size and frame count the
container declares are bounded before anything is decoded (AvLimits), then every frame is
decoded, with the same bounds enforced as it goes (a header can lie), so that a corrupt
file is refused, and a truncated one too: fewer frames or samples than the container
declares, or a WAV whose data chunk runs past the end of the file.
"""

from __future__ import annotations

import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

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
    duration: float | None = None  # seconds, audio and video
    fps: float | None = None
    frames: int | None = None  # video frames decoded
    sample_rate: int | None = None
    channels: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None


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


# What Pillow may read of a PNG's text chunks while Strata inspects it (its own defaults
# refuse a file with 1 MB in one compressed chunk or 64 MB of text in all).
MAX_PNG_TEXT_BYTES = 512 * 1024**2
# Pillow's limits are globals of the process; they are set only for the moment of opening.
_PILLOW_LIMIT = threading.Lock()


def _open_with_limit(path: Path, max_pixels: int) -> ImageFile:
    """Image.open under our limit: Pillow refuses on its own above twice its global limit,
    before the size is known here, so the limit must be ours while it opens — and only
    then, so that other code in this process keeps Pillow's own default."""
    from PIL import Image, PngImagePlugin

    with _PILLOW_LIMIT, warnings.catch_warnings():
        # Pillow only warns between its limit and twice it; the caller's check refuses.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous = (Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK,
                    PngImagePlugin.MAX_TEXT_MEMORY)
        # Large text chunks (a tool's 50 MB workflow) are metadata, not pixels: they must
        # not get the image refused as corrupt. The metadata reader bounds what it keeps.
        Image.MAX_IMAGE_PIXELS = max_pixels
        PngImagePlugin.MAX_TEXT_CHUNK = PngImagePlugin.MAX_TEXT_MEMORY = MAX_PNG_TEXT_BYTES
        try:
            return Image.open(path)
        finally:
            (Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK,
             PngImagePlugin.MAX_TEXT_MEMORY) = previous


def _bomb(what: str, max_pixels: int) -> InvalidInput:
    return InvalidInput(
        f"refused as a decompression bomb: {what} more than the limit of {max_pixels:,} "
        "pixels (STRATA_MAX_IMAGE_PIXELS)"
    )


def is_audio_or_video(media_type: str) -> bool:
    return media_type.startswith(("audio/", "video/"))


# Bounds on what an audio or video file may declare or decode to: past them it is refused
# as a bomb (a small file that would decode to hours, or to frames of billions of pixels).
MAX_MEDIA_SECONDS = 3600.0
MAX_VIDEO_FRAME_PIXELS = 7680 * 4320  # 8K UHD
MAX_VIDEO_FRAMES = 216_000  # an hour at 60 frames per second
# Decoders may drop or pad a little at either end (codec delay, a frame's length).
TRUNCATION_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class AvLimits:
    seconds: float = MAX_MEDIA_SECONDS
    frame_pixels: int = MAX_VIDEO_FRAME_PIXELS
    frames: int = MAX_VIDEO_FRAMES


# A container's type when it holds only audio, or also video, beside the sniffed one.
_AUDIO_ONLY = {"video/mp4": "audio/mp4", "video/quicktime": "audio/mp4",
               "video/webm": "audio/webm", "video/x-matroska": "audio/x-matroska"}
_WITH_VIDEO = {"audio/mp4": "video/mp4", "audio/ogg": "video/ogg"}


def probe_av(source: Path | BinaryIO, media_type: str, limits: AvLimits = AvLimits()
             ) -> MediaInfo:
    """Decode the audio or video in `source` fully and describe it; refuse bombs, corrupt
    and truncated files. `media_type` is the sniffed type; the result names the type the
    streams make it (an MP4 holding only audio is audio/mp4)."""
    import av

    try:
        with av.open(source, metadata_errors="ignore") as container:
            info = _probe_container(container, media_type, limits)
    except InvalidInput:
        raise
    except (av.FFmpegError, OSError, EOFError, ValueError) as exc:
        raise InvalidInput(f"refused a corrupt or truncated {media_type} file: {exc}") from exc
    if info.media_type == "audio/wav":
        _check_wav_length(source)
    return info


def _probe_container(container: Any, media_type: str, limits: AvLimits) -> MediaInfo:
    import av

    videos = [s for s in container.streams.video
              if not s.disposition & av.stream.Disposition.attached_pic]  # cover art
    audios = list(container.streams.audio)
    if not videos and not audios:
        raise InvalidInput(f"refused a corrupt or truncated {media_type} file: "
                           "it holds no audio or video stream")
    video = videos[0] if videos else None
    audio = audios[0] if audios else None
    declared = container.duration / 1_000_000 if container.duration else None
    if declared is not None and declared > limits.seconds:
        raise _av_bomb(f"it lasts {declared:,.1f} s", limits)
    fps = None
    if video is not None:
        width, height = video.codec_context.width, video.codec_context.height
        if width * height > limits.frame_pixels:
            raise _av_bomb(f"its frames are {width}x{height}", limits)
        if video.frames > limits.frames:
            raise _av_bomb(f"it has {video.frames:,} frames", limits)
        rate = video.average_rate or video.guessed_rate
        fps = float(rate) if rate else None
    frames, samples = 0, 0
    for frame in container.decode(*(s for s in (video, audio) if s is not None)):
        if isinstance(frame, av.VideoFrame):
            frames += 1
            if frames > limits.frames:
                raise _av_bomb(f"it decodes to more than {limits.frames:,} frames", limits)
            if frame.width * frame.height > limits.frame_pixels:
                raise _av_bomb(f"a frame is {frame.width}x{frame.height}", limits)
        else:
            samples += frame.samples
            if samples > limits.seconds * frame.sample_rate:
                raise _av_bomb("it decodes to more sound than that", limits)
    lengths = []
    if video is not None:
        if frames == 0:
            raise InvalidInput(f"refused a corrupt or truncated {media_type} file: its "
                               "video stream has no frame that decodes")
        if fps:
            lengths.append(frames / fps)
    if audio is not None and audio.codec_context.sample_rate:
        lengths.append(samples / audio.codec_context.sample_rate)
    decoded = max(lengths, default=None)
    if declared is not None and decoded is not None:
        tolerance = max(TRUNCATION_TOLERANCE_S, 1 / fps if fps else 0)
        if decoded < declared - tolerance:
            raise InvalidInput(
                f"refused a truncated or corrupt {media_type} file: it declares "
                f"{declared:.3f} s but only {decoded:.3f} s decode")
    if video is None:
        media_type = _AUDIO_ONLY.get(media_type, media_type)
    else:
        media_type = _WITH_VIDEO.get(media_type, media_type)
    return MediaInfo(
        media_type=media_type,
        width=video.codec_context.width if video is not None else None,
        height=video.codec_context.height if video is not None else None,
        duration=round(decoded if decoded is not None else declared or 0.0, 6),
        fps=round(fps, 6) if fps else None,
        frames=frames if video is not None else None,
        sample_rate=audio.codec_context.sample_rate if audio is not None else None,
        channels=audio.codec_context.channels if audio is not None else None,
        video_codec=video.codec_context.name if video is not None else None,
        audio_codec=audio.codec_context.name if audio is not None else None,
    )


def _check_wav_length(source: Path | BinaryIO) -> None:
    """FFmpeg reads a WAV whose data chunk runs past the end of the file up to the end, as
    if it were complete; compare the chunk's declared size with what the file holds."""
    if isinstance(source, Path):
        with source.open("rb") as handle:
            _check_wav_chunks(handle)
    else:
        source.seek(0)
        _check_wav_chunks(source)


# A WAV written to a pipe cannot go back to its header: it declares 0 or the largest size.
_STREAMED_WAV_SIZES = (0, 0xFFFFFFFF)


def _check_wav_chunks(handle: BinaryIO) -> None:
    total = handle.seek(0, 2)
    position = 12  # after "RIFF", its size and "WAVE"
    while position + 8 <= total:
        handle.seek(position)
        kind, size = struct.unpack("<4sI", handle.read(8))
        if kind == b"data":
            if size not in _STREAMED_WAV_SIZES and position + 8 + size > total:
                raise InvalidInput(
                    f"refused a truncated audio/wav file: its data chunk declares {size:,} "
                    f"bytes but the file holds {total - position - 8:,}")
            return
        position += 8 + size + (size & 1)  # chunks are padded to an even size


def _av_bomb(what: str, limits: AvLimits) -> InvalidInput:
    return InvalidInput(
        f"refused as a bomb: {what}, beyond the limits of {limits.seconds:,.0f} s, "
        f"{limits.frame_pixels:,} pixels per frame and {limits.frames:,} frames "
        "(strata.core.storage.media.MAX_MEDIA_SECONDS, MAX_VIDEO_FRAME_PIXELS, "
        "MAX_VIDEO_FRAMES)")


def inspect(path: Path, head: bytes, max_pixels: int) -> MediaInfo:
    media_type = sniff_media_type(head)
    if is_image(media_type):
        return inspect_image(path, media_type, max_pixels)
    if is_audio_or_video(media_type):
        return probe_av(path, media_type)
    return MediaInfo(media_type=media_type)
